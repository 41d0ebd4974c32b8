"""A new file whose first upload fails, through a real kernel mount and the fault proxy.

``close()`` reports the failure (EIO) and the upload is parked for a retry; from then on
the file must not vanish from the mount: ``ls``, ``stat`` and ``cat`` show it (its content
is in the mount's spool) until the retry lands and the server has it. Removing it drops
the retry (nothing reaches the server); renaming it sends the retry to the new name.
"""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest

from tests.faults.conftest import (
    RETRY_BUDGET,
    SLACK,
    Metrics,
    Rig,
    new_dir,
    probe,
    run_tool,
    wait_until,
)
from tests.faults.probe import pattern

pytestmark = pytest.mark.timeout(90)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parked_new_file(rig: Rig, local: Path, remote: str, seed: int, size: int, metrics: Metrics):
    """Create ``local`` (a new file) and write ``pattern(seed, size)`` to it while the
    server answers its upload with 503: close() fails with EIO and the upload is parked.
    Returns (data, the 503 rule)."""
    data = pattern(seed, size)
    block = rig.proxy.fail(503, "PUT", "/files", path=remote)
    result = probe("write", str(local), str(size), str(seed), timeout=60)
    assert (result["ok"], result["step"], result["errno"]) == (False, "close", "EIO"), result
    assert result["close_elapsed"] <= RETRY_BUDGET + SLACK, result
    metrics.blocked("close() of a new file with 503 on upload", result["close_elapsed"])
    wait_until(
        lambda: rig.mount.stats()["parked_uploads"] == 1,
        timeout=15,
        message="the failed upload to be parked",
    )
    assert not rig.http.exists(remote)
    return data, block


def test_a_parked_new_file_is_listed_and_readable_until_its_retry_lands(
    rig: Rig, metrics: Metrics
) -> None:
    remote, local = new_dir(rig)
    path = f"{remote}/new.bin"
    data, block = _parked_new_file(rig, local / "new.bin", path, 91, 120_000, metrics)

    status, listing, _ = run_tool(["ls", "-l", str(local)])
    assert status == 0, listing
    assert "new.bin" in listing and f" {len(data)} " in listing, listing
    assert (local / "new.bin").stat().st_size == len(data)
    status, out, _ = run_tool(["sha256sum", str(local / "new.bin")])
    assert status == 0 and out.split()[0] == _sha(data), out

    rig.proxy.remove(block)  # the server takes uploads again: the retry lands
    wait_until(
        lambda: rig.http.exists(f"{remote}/new.bin")
        and rig.http.sha256(f"{remote}/new.bin") == _sha(data),
        timeout=60,
        message="the parked upload of the new file to reach the server",
    )
    wait_until(lambda: rig.mount.stats()["parked_uploads"] == 0, timeout=15)
    assert sorted(p.name for p in local.iterdir()) == ["new.bin"]
    assert (local / "new.bin").read_bytes() == data
    metrics.verified(len(data))


def test_rm_of_a_parked_new_file_drops_its_retry(rig: Rig, metrics: Metrics) -> None:
    remote, local = new_dir(rig)
    _, block = _parked_new_file(rig, local / "tmp.bin", f"{remote}/tmp.bin", 92, 50_000, metrics)
    status, out, _ = run_tool(["rm", str(local / "tmp.bin")])
    assert status == 0, out
    # Dropped by the unlink itself (at the end of its try, if a retry was in flight).
    wait_until(lambda: rig.mount.stats()["parked_uploads"] == 0, timeout=15)
    assert list(local.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        (local / "tmp.bin").stat()
    rig.proxy.remove(block)
    sent = rig.proxy.watch("PUT", "/files", path=f"{remote}/tmp.bin")
    # A later write to the directory proves the mount answers; its upload is not the old one.
    (local / "other").write_bytes(b"x")
    assert rig.http.read(f"{remote}/other") == b"x"
    assert sent.hits == 0
    assert not rig.http.exists(f"{remote}/tmp.bin")


def test_mv_of_a_parked_new_file_sends_its_retry_to_the_new_name(
    rig: Rig, metrics: Metrics
) -> None:
    remote, local = new_dir(rig)
    data, block = _parked_new_file(rig, local / "draft", f"{remote}/draft", 93, 70_000, metrics)
    status, out, _ = run_tool(["mv", str(local / "draft"), str(local / "final")])
    assert status == 0, out
    assert sorted(p.name for p in local.iterdir()) == ["final"]
    assert (local / "final").stat().st_size == len(data)
    with pytest.raises(OSError) as gone:
        (local / "draft").stat()
    assert gone.value.errno == errno.ENOENT
    rig.proxy.remove(block)
    wait_until(
        lambda: rig.http.exists(f"{remote}/final")
        and rig.http.sha256(f"{remote}/final") == _sha(data),
        timeout=60,
        message="the parked upload to reach the server under the new name",
    )
    assert not rig.http.exists(f"{remote}/draft")
    metrics.verified(len(data))


def test_appending_to_a_parked_new_file_adds_to_what_the_retry_uploads(
    rig: Rig, metrics: Metrics
) -> None:
    """An open for writing takes the upload back from the retries: the append goes to the
    spool, its close fails again while the server refuses (EIO, parked again), and once
    the server takes it the parked content and the append land together."""
    remote, local = new_dir(rig)
    data, block = _parked_new_file(rig, local / "log", f"{remote}/log", 94, 30_000, metrics)
    refused = probe("append", str(local / "log"), "more\n", timeout=60)
    assert (refused["ok"], refused["errno"]) == (False, "EIO"), refused
    assert (local / "log").stat().st_size == len(data) + 5  # parked again, still shown
    rig.proxy.remove(block)
    wait_until(
        lambda: rig.http.exists(f"{remote}/log")
        and rig.http.sha256(f"{remote}/log") == _sha(data + b"more\n"),
        timeout=60,
        message="the parked content and the append to reach the server",
    )
    wait_until(lambda: rig.mount.stats()["parked_uploads"] == 0, timeout=15)
    metrics.verified(len(data) + 5)
