"""No data loss: every close() either succeeded and the server has exactly the bytes, or
failed with an error the program saw while the spool stays on disk and is uploaded once
the server is back.

- the server (localfs, which keeps its data) is killed for real in the middle of uploads by
  several writers, restarted on the same port, several rounds;
- fsync() reports a failed upload, and the close() after it uploads once the server answers;
- a parked upload is dropped when a newer version of the file was uploaded meanwhile, and
  uploaded with a warning when someone else changed the file on the server meanwhile;
- SIGTERM waits for parked uploads when the server is back; with the server still down it
  exits within its grace period, leaves the spool and its sidecar on disk, and the next
  mount of the same URL on the same mountpoint reports it; so does a crash (SIGKILL).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import (
    DEADLINE,
    METRICS,
    PROBE,
    RETRY_BUDGET,
    SLACK,
    Metrics,
    Rig,
    full_log,
    new_dir,
    probe,
    wait_until,
)
from tests.faults.probe import pattern
from tests.support.faultproxy import Request
from tests.support.mount import is_mounted

ROUNDS = 3
WRITERS = 3
FILES_PER_WRITER = 2
SIZES = (256 << 10, 1 << 20, 3 << 20, 6 << 20)
#: A close() whose upload fails returns within the deadline plus the retry budget.
CLOSE_BOUND = DEADLINE + RETRY_BUDGET + SLACK
#: The mount's bounded wait for pending uploads at SIGTERM (agfs_fuse.mount).
SHUTDOWN_GRACE = 60.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Writer:
    """A ``probe.py write-many`` process; its JSON lines arrive on a queue as they come."""

    def __init__(self, specs: list[list[Any]]) -> None:
        self.specs = specs
        self.proc = subprocess.Popen(
            [sys.executable, PROBE, "write-many", json.dumps(specs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.done: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                event = json.loads(line)
                self.events.put(event)
                if event.get("event") == "done":
                    self.done.append(event)

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"a writer hung for {timeout:g}s: {self.specs}", pytrace=False)
        self._reader.join(10)
        err = self.proc.stderr.read() if self.proc.stderr else ""
        assert self.proc.returncode == 0, err
        assert len(self.done) == len(self.specs), (self.done, err)
        return self.done


def _wait_close_of_largest(writers: list[_Writer], timeout: float = 60) -> None:
    """Until a writer is about to close() one of the round's largest files: its upload is
    the longest to hit (a 6 MiB upload takes a few tens of ms on loopback)."""
    largest = max(size for writer in writers for _, size, _ in writer.specs)
    paths = {path for writer in writers for path, size, _ in writer.specs if size == largest}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for writer in writers:
            try:
                event = writer.events.get_nowait()
            except queue.Empty:
                continue
            if event.get("event") == "closing" and event.get("path") in paths:
                return
        time.sleep(0.001)
    pytest.fail("no writer reached close() of a largest file", pytrace=False)


def _spools_for(rig: Rig, remote: str) -> list[Path]:
    return [data for data, meta in rig.spools() if meta and meta.get("remote_path") == remote]


@pytest.mark.timeout(150)
def test_kill_server_during_uploads_loses_nothing(rig: Rig, metrics: Metrics) -> None:
    rng = random.Random(5)
    mount = rig.new_mount(direct=True, mountpoint=rig.base / "mnt-direct")
    rig.http.mkdir("/local/loss")
    local = mount.path / "local" / "loss"
    outcomes: Counter[str] = Counter()
    seed = 1000
    for rnd in range(ROUNDS):
        writers = []
        for w in range(WRITERS):
            specs = []
            for k in range(FILES_PER_WRITER):
                seed += 1
                specs.append([str(local / f"r{rnd}-w{w}-{k}"), rng.choice(SIZES), seed])
            writers.append(_Writer(specs))
        _wait_close_of_largest(writers)
        time.sleep(rng.uniform(0.0, 0.01))  # within the upload: it takes tens of ms
        rig.kill_server()

        uploaded: dict[str, bytes] = {}  # close() succeeded: on the server now
        kept: dict[str, bytes] = {}  # close() failed: in a spool, uploaded later
        for writer in writers:
            for result in writer.finish(timeout=120):
                remote = "/local/loss/" + Path(result["path"]).name
                data = pattern(result["seed"], result["size"])
                if result["ok"]:
                    outcomes["close ok"] += 1
                    uploaded[remote] = data
                    continue
                assert result["errno"] in ("EIO", "ETIMEDOUT"), result
                if result["step"] == "close":
                    outcomes["close failed"] += 1
                    assert result["close_elapsed"] <= CLOSE_BOUND, result
                    metrics.blocked("close() with the server killed", result["close_elapsed"])
                    kept[remote] = data
                else:  # nothing was accepted: the program knows its file is not there
                    assert result["step"] == "open", result
                    outcomes["open failed"] += 1

        # the server is still down: every failed close() left its content in a spool
        for remote, data in kept.items():
            spools = wait_until(
                lambda r=remote: _spools_for(rig, r),
                timeout=15,
                message=f"a spool for {remote}",
            )
            assert len(spools) == 1, spools
            assert _file_sha(spools[0]) == _sha(data), f"spool of {remote} is not the data"
            assert spools[0].with_name(spools[0].name + ".json").exists()
            assert str(spools[0]) in full_log(mount), f"spool path of {remote} not logged"
            metrics.verified(len(data))
        if kept:
            parked = len(kept)
            stats = wait_until(
                lambda n=parked: (s := mount.stats())["parked_uploads"] == n and s,
                timeout=15,
                message=f"{len(kept)} parked uploads in /.agfs-stats",
            )
            assert stats["pending_uploads"] >= len(kept), stats

        rig.start_server()
        for remote, data in uploaded.items():
            assert rig.http.sha256(remote) == _sha(data), f"{remote}: close() said ok"
            metrics.verified(len(data))
        for remote, data in kept.items():
            wait_until(
                lambda r=remote, d=data: rig.http.exists(r) and rig.http.sha256(r) == _sha(d),
                timeout=60,
                message=f"the parked upload of {remote} to reach the server",
            )
            metrics.verified(len(data))
            wait_until(lambda r=remote: not _spools_for(rig, r), timeout=15)
        METRICS.kill_rounds += 1
    assert outcomes["close failed"] >= 1, f"the kills never hit an upload: {outcomes}"
    assert outcomes["close ok"] >= 1, outcomes
    assert mount.alive()
    assert "Traceback" not in full_log(mount)


# -- parked uploads -------------------------------------------------------------------------


def _body_is(data: bytes) -> Callable[[Request], bool]:
    head = data[:64]
    return lambda req: req.body[:64] == head


def _park(rig: Rig, local: Path, remote: str, seed: int, size: int, metrics: Metrics):
    """Write ``pattern(seed, size)`` to ``remote`` while its upload gets 503: close() fails,
    the upload is parked. Returns (data, the 503 rule)."""
    data = pattern(seed, size)
    block = rig.proxy.fail(503, "PUT", "/files", path=remote, when=_body_is(data))
    result = probe("write", str(local), str(size), str(seed), timeout=60)
    assert not result["ok"], result
    assert (result["step"], result["errno"]) == ("close", "EIO"), result
    assert result["close_elapsed"] <= RETRY_BUDGET + SLACK, result
    metrics.blocked("close() with 503 on upload", result["close_elapsed"])
    wait_until(
        lambda: rig.mount.stats()["parked_uploads"] == 1,
        timeout=15,
        message="the failed upload to be parked",
    )
    return data, block


@pytest.mark.timeout(60)
def test_fsync_reports_the_failed_upload_and_close_uploads(rig: Rig, metrics: Metrics) -> None:
    remote, local = new_dir(rig)
    data = pattern(31, 200_000)
    rule = rig.proxy.fail(503, "PUT", "/files", path=f"{remote}/f")
    fd = os.open(local / "f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, data) == len(data)
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            os.fsync(fd)
        elapsed = time.monotonic() - started
        assert info.value.errno == errno.EIO, info.value
        assert elapsed <= RETRY_BUDGET + SLACK, elapsed
        metrics.blocked("fsync() with 503 on upload", elapsed)
        assert rule.hits >= 2, "a 503 on a whole-file upload was not retried"
        rig.proxy.remove(rule)
    finally:
        os.close(fd)  # uploads now: must not raise
    assert rig.http.sha256(f"{remote}/f") == _sha(data)
    metrics.verified(len(data))


@pytest.mark.timeout(90)
def test_parked_upload_superseded_by_a_newer_write_is_dropped(rig: Rig, metrics: Metrics) -> None:
    remote, local = new_dir(rig)
    old, block = _park(rig, local / "f", f"{remote}/f", 41, 150_000, metrics)
    new = pattern(42, 60_000)
    newer = probe("write", str(local / "f"), str(len(new)), "42")
    assert newer["ok"], newer
    assert rig.http.sha256(f"{remote}/f") == _sha(new)
    # from now on the old version could reach the server: it must not
    rig.proxy.remove(block)
    old_passed = rig.proxy.watch("PUT", "/files", path=f"{remote}/f", when=_body_is(old))
    wait_until(
        lambda: (
            f"dropped the parked upload of {remote}/f" in full_log(rig.mount)
            and rig.mount.stats()["parked_uploads"] == 0
        ),
        timeout=60,
        message="the superseded parked upload to be dropped",
    )
    assert old_passed.hits == 0, "the old version was uploaded over the newer one"
    assert rig.http.sha256(f"{remote}/f") == _sha(new)
    assert not _spools_for(rig, f"{remote}/f")
    metrics.verified(len(new))


@pytest.mark.timeout(90)
def test_parked_upload_over_a_file_changed_on_the_server_warns(rig: Rig, metrics: Metrics) -> None:
    remote, local = new_dir(rig)
    rig.http.write(f"{remote}/f", b"original")
    assert (local / "f").read_bytes() == b"original"
    data, block = _park(rig, local / "f", f"{remote}/f", 51, 90_000, metrics)
    rig.http.write(f"{remote}/f", b"someone else's version")  # another client
    rig.proxy.remove(block)
    wait_until(
        lambda: rig.http.sha256(f"{remote}/f") == _sha(data),
        timeout=60,
        message="the parked upload to reach the server (last writer wins)",
    )
    log = full_log(rig.mount)
    assert f"{remote}/f changed on the server since it was opened here" in log, log[-3000:]
    metrics.verified(len(data))


@pytest.mark.timeout(90)
def test_sigterm_uploads_a_parked_upload_when_the_server_is_back(
    rig: Rig, metrics: Metrics
) -> None:
    remote, local = new_dir(rig)
    data, block = _park(rig, local / "f", f"{remote}/f", 61, 500_000, metrics)
    # let one background retry fail, so the next one is seconds away: SIGTERM does it
    hits = block.hits
    wait_until(lambda: block.hits > hits, timeout=20, message="a background retry")
    rig.proxy.remove(block)
    mount = rig.mount
    started = time.monotonic()
    mount.signal(signal.SIGTERM)
    code = mount.wait(timeout=SHUTDOWN_GRACE + 30)
    elapsed = time.monotonic() - started
    metrics.blocked("SIGTERM exit, parked upload, server back", elapsed)
    assert code == 0, mount.describe()
    assert elapsed <= 2 * RETRY_BUDGET + SLACK, elapsed
    assert rig.http.sha256(f"{remote}/f") == _sha(data), mount.describe()
    assert not _spools_for(rig, f"{remote}/f")
    assert not is_mounted(mount.path)
    metrics.verified(len(data))


@pytest.mark.timeout(120)
def test_sigterm_with_the_server_down_keeps_the_spool_for_the_next_mount(
    rig: Rig, metrics: Metrics
) -> None:
    remote, local = new_dir(rig)
    data, _ = _park(rig, local / "f", f"{remote}/f", 71, 300_000, metrics)
    rig.proxy.refuse()
    mount = rig.mount
    started = time.monotonic()
    mount.signal(signal.SIGTERM)
    try:
        mount.wait(timeout=SHUTDOWN_GRACE + 30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the mount did not exit within {SHUTDOWN_GRACE + 30:g}s of SIGTERM")
    elapsed = time.monotonic() - started
    metrics.blocked("SIGTERM exit, server down", elapsed)
    assert elapsed <= SHUTDOWN_GRACE + SLACK, elapsed
    assert not is_mounted(mount.path), "still mounted after SIGTERM"

    spools = _spools_for(rig, f"{remote}/f")
    assert len(spools) == 1, rig.spools()
    spool = spools[0]
    assert _file_sha(spool) == _sha(data)
    sidecar = json.loads(spool.with_name(spool.name + ".json").read_text())
    assert sidecar["remote_path"] == f"{remote}/f"
    assert sidecar["server_url"] == rig.proxy.url
    assert str(spool) in full_log(mount), mount.describe()
    metrics.verified(len(data))

    rig.proxy.accept()
    again = rig.new_mount(mountpoint=mount.path)
    wait_until(
        lambda: (
            f"an earlier upload of {remote}/f" in full_log(again) and str(spool) in full_log(again)
        ),
        timeout=15,
        message="the next mount to report the leftover spool",
    )
    assert spool.exists(), "the leftover spool was removed without being uploaded"


@pytest.mark.timeout(90)
def test_crashed_mount_leaves_the_spool_for_the_next_mount(rig: Rig, metrics: Metrics) -> None:
    remote, local = new_dir(rig)
    data, block = _park(rig, local / "f", f"{remote}/f", 81, 100_000, metrics)
    mount = rig.mount
    mount.kill()  # SIGKILL: a crash, the mount is left stale
    spools = _spools_for(rig, f"{remote}/f")
    assert len(spools) == 1, rig.spools()
    assert _file_sha(spools[0]) == _sha(data)
    assert spools[0].with_name(spools[0].name + ".json").exists()
    rig.proxy.remove(block)
    again = rig.new_mount(mountpoint=mount.path)  # clears the stale mount
    wait_until(
        lambda: f"an earlier upload of {remote}/f" in full_log(again),
        timeout=15,
        message="the next mount to report the spool the crash left",
    )
    assert str(spools[0]) in full_log(again)
    assert spools[0].exists()
