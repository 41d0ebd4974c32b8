"""Automatic recovery: when the server comes back, the same mount serves again, without a
remount and without ``/reload``.

- the server process is killed and restarted on the same port (a real restart: localfs
  keeps its data), a few times: in between every call fails fast with EIO, afterwards the
  first calls (including ones that must not be repeated: mkdir, create, rename) succeed;
- the proxy refuses connections, then accepts again;
- every kept-alive connection is reset under the mount (a load balancer restart): the
  next requests, idempotent or not, go through.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.faults.conftest import (
    RETRY_BUDGET,
    Metrics,
    Rig,
    finish_probe,
    full_log,
    new_dir,
    probe,
    start_probe,
)
from tests.faults.probe import pattern

FAST_FAIL = 2 * RETRY_BUDGET + 2.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _all_fail_fast(paths: dict[str, tuple[str, ...]], metrics: Metrics, fault: str) -> None:
    procs = {what: start_probe(*args) for what, args in paths.items()}
    for what, proc in procs.items():
        result = finish_probe(proc, timeout=60)
        assert not result["ok"], f"{what} succeeded with the server away: {result}"
        assert result["errno"] == "EIO", (what, result)
        assert result["elapsed"] <= FAST_FAIL, (what, result)
        metrics.blocked(fault, result["elapsed"])


@pytest.mark.timeout(90)
def test_server_restarted_on_same_port_mount_serves_again(rig: Rig, metrics: Metrics) -> None:
    # names stay known to the kernel, so the calls below run in parallel (one directory
    # each: lookups in one directory are serialised by the kernel); attributes and
    # missing names are asked for every time
    mount = rig.new_mount(
        direct=True, mountpoint=rig.base / "mnt-direct", options=("entry_timeout=60",)
    )
    root = mount.path / "local"
    data = pattern(11, 400_000)
    for cycle in range(3):
        work = root / f"c{cycle}"
        work.mkdir()
        for sub in ("a", "b", "c"):
            (work / sub).mkdir()
        (work / "a" / "f").write_bytes(data)
        assert rig.http.sha256(f"/local/c{cycle}/a/f") == _sha(data)
        rig.kill_server()
        _all_fail_fast(
            {
                "stat": ("stat", str(work / "a" / "f")),
                "read": ("read", str(work / "a" / "f")),
                "listdir": ("listdir", str(work / "b")),
                "mkdir": ("mkdir", str(work / "c" / "new")),
            },
            metrics,
            "server killed (refused)",
        )
        assert mount.proc is not None and mount.proc.poll() is None, mount.describe()
        rig.start_server()
        # the first requests after the restart are ones that must not be sent twice
        assert probe("mkdir", str(work / "c" / "new"))["ok"]
        assert probe("create-excl", str(work / "c" / "created"))["ok"]
        assert probe("rename", str(work / "a" / "f"), str(work / "b" / "g"))["ok"]
        read = probe("read", str(work / "b" / "g"))
        assert read["ok"] and read["extra"][0]["sha256"] == _sha(data), read
        metrics.verified(len(data))
        assert set(os.listdir(work / "c")) == {"new", "created"}
        assert rig.http.names(f"/local/c{cycle}/c") == {"new", "created"}
    log = full_log(mount)
    assert "reloaded" not in log, "the mount reloaded by itself instead of recovering"
    assert "Traceback" not in log, log


@pytest.mark.timeout(60)
def test_proxy_refuses_then_accepts_mount_serves_again(rig: Rig, metrics: Metrics) -> None:
    remote, _ = new_dir(rig)
    for sub in ("a", "b"):
        rig.http.mkdir(f"{remote}/{sub}")
    rig.http.write(f"{remote}/a/f", b"before")
    mount = rig.new_mount(mountpoint=rig.base / "mnt-names", options=("entry_timeout=60",))
    local = mount.path / remote.lstrip("/")
    assert (local / "a" / "f").read_bytes() == b"before"
    assert os.listdir(local / "b") == []
    rig.proxy.refuse()
    _all_fail_fast(
        {
            "stat": ("stat", str(local / "a" / "f")),
            "listdir": ("listdir", str(local / "b")),
        },
        metrics,
        "refused connection",
    )
    rig.proxy.accept()
    assert probe("stat", str(local / "a" / "f"))["ok"]
    assert probe("listdir", str(local / "b"))["ok"]
    written = probe("write", str(local / "b" / "new"), "70000", "4")
    assert written["ok"], written
    assert rig.http.sha256(f"{remote}/b/new") == _sha(pattern(4, 70_000))


@pytest.mark.timeout(60)
def test_reset_keepalive_connections_do_not_fail_the_next_requests(srig: Rig) -> None:
    """A proxy or load balancer in front of the server restarts and resets every kept-alive
    connection: the next requests, even those never retried (mkdir, create, rename,
    unlink), must not fail because they picked a dead pooled connection."""
    remote, local = new_dir(srig)
    for round_ in range(3):
        # fill the mount's connection pool with several idle connections
        procs = [start_probe("listdir", str(local)) for _ in range(4)]
        for proc in procs:
            assert finish_probe(proc, timeout=30)["ok"]
        assert srig.proxy.reset_connections() >= 1
        steps = [
            ("mkdir", str(local / f"d{round_}")),
            ("create-excl", str(local / f"f{round_}")),
            ("rename", str(local / f"f{round_}"), str(local / f"g{round_}")),
            ("unlink", str(local / f"g{round_}")),
        ]
        for step in steps:
            result = probe(*step)
            assert result["ok"], f"{step} failed after the connections were reset: {result}"
    assert srig.http.names(remote) == {"d0", "d1", "d2"}
