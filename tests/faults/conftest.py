"""Fixtures for the fault tests: a reference server, the fault proxy in front of it, and a
real kernel mount through the proxy, all fresh for each test and always torn down.

- ``rig``: server (memfs at /memfs, localfs at /local over a temporary directory) + proxy +
  mount of ``proxy.url`` with ``-o timeout=3`` and no attribute caching (every operation
  asks the server, so a fault is always seen). ``rig.restart_server()`` kills and restarts
  the server on the same port (localfs keeps its data); ``rig.new_mount()`` makes more.
- ``probe(op, *args, timeout=...)`` runs ``probe.py`` (one timed file operation in a child
  process) and returns its JSON result; the child is bounded by a timeout, and a child that
  does not exit in time fails the test as a hang.
- ``metrics``: numbers for the closing note (faults injected, bytes verified, server kills,
  longest blocking time per fault type), printed in the terminal summary.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.support.faultproxy import FaultProxy
from tests.support.mount import Mount, force_unmount, mounts_under, wait_until
from tests.support.server import ServerProcess, plugins_config, start_server

PROBE = str(Path(__file__).with_name("probe.py"))
#: The mounts' request deadline (``-o timeout``); bounds below are derived from it.
DEADLINE = 3.0
#: The client's retry budget for refused connections and 502/503/504 (agfs_fuse.retry).
RETRY_BUDGET = 2.0
#: Slack for a noisy CI machine on top of any bound.
SLACK = 3.0
FAST_OPTIONS = ("attr_timeout=0", "entry_timeout=0", "negative_timeout=0")

_counter = itertools.count()


# -- numbers for the closing note ---------------------------------------------------------


@dataclass
class Metrics:
    faults: int = 0
    server_kills: int = 0
    kill_rounds: int = 0
    bytes_verified: int = 0
    longest: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, fault: str, seconds: float | None) -> None:
        """Record how long a program blocked on ``fault`` (keeps the longest)."""
        if seconds is None:
            return
        with self.lock:
            self.longest[fault] = max(self.longest.get(fault, 0.0), seconds)

    def verified(self, n: int) -> None:
        with self.lock:
            self.bytes_verified += n


METRICS = Metrics()


@pytest.fixture
def metrics() -> Metrics:
    return METRICS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    m = METRICS
    if not (m.faults or m.longest or m.bytes_verified):
        return
    tr = terminalreporter
    tr.section("fault injection numbers")
    tr.write_line(f"faults injected (proxy + server kills): {m.faults + m.server_kills}")
    tr.write_line(f"server kills: {m.server_kills} (data-loss rounds: {m.kill_rounds})")
    tr.write_line(f"bytes verified against the server: {m.bytes_verified}")
    for fault, seconds in sorted(m.longest.items()):
        tr.write_line(f"longest blocking time, {fault}: {seconds:.2f} s")
    out = os.environ.get("AGFS_FAULT_METRICS")
    if out:
        Path(out).write_text(
            json.dumps(
                {
                    "faults": m.faults + m.server_kills,
                    "server_kills": m.server_kills,
                    "kill_rounds": m.kill_rounds,
                    "bytes_verified": m.bytes_verified,
                    "longest_blocking_s": m.longest,
                },
                indent=2,
            )
        )


# -- running programs ---------------------------------------------------------------------


def probe(*args: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run one probe operation; returns its (last) JSON result. Fails on a hang."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, PROBE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"probe {args!r} hung: still running after {timeout:g}s "
            f"({time.monotonic() - started:.1f}s)",
            pytrace=False,
        )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"probe {args!r} exited {proc.returncode}: {proc.stderr}", pytrace=False)
    result = next(line for line in lines if "ok" in line)
    extra = [line for line in lines if "ok" not in line]
    if extra:
        result["extra"] = extra
    return result


def start_probe(*args: str) -> subprocess.Popen[str]:
    """Start a probe without waiting (for concurrent probes); see :func:`finish_probe`."""
    return subprocess.Popen(
        [sys.executable, PROBE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_probe(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"probe {proc.args!r} hung: still running after {timeout:g}s", pytrace=False)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"probe {proc.args!r} exited {proc.returncode}: {err}", pytrace=False)
    return next(line for line in lines if "ok" in line)


def spawn_tool(cmd: list[str], timeout: float = 30.0) -> subprocess.Popen[str]:
    """Start a program bounded by ``timeout -s KILL`` (see :func:`finish_tool`)."""
    env = dict(os.environ, LC_ALL="C.UTF-8")
    proc = subprocess.Popen(
        ["timeout", "-s", "KILL", str(timeout), *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    proc.started = time.monotonic()  # type: ignore[attr-defined]
    return proc


def finish_tool(proc: subprocess.Popen[str]) -> tuple[int, str, float]:
    """Wait for a :func:`spawn_tool` program: (status, output, seconds). Fails on a hang."""
    out, _ = proc.communicate(timeout=120)
    elapsed = time.monotonic() - proc.started  # type: ignore[attr-defined]
    assert proc.returncode != 137, f"{proc.args} hung (killed by its timeout guard)"
    return proc.returncode, out, elapsed


def run_tool(cmd: list[str], timeout: float = 30.0) -> tuple[int, str, float]:
    """Run a program bounded by ``timeout -s KILL``; returns (status, stderr+stdout, secs).

    Exit status 137 means the program had to be killed: a hang.
    """
    env = dict(os.environ, LC_ALL="C.UTF-8")
    started = time.monotonic()
    proc = subprocess.run(
        ["timeout", "-s", "KILL", str(timeout), *cmd],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout + 15,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode != 137, f"{cmd} hung (killed after {timeout}s)"
    return proc.returncode, proc.stderr + proc.stdout, elapsed


# -- the rig ------------------------------------------------------------------------------


class Rig:
    """Server, proxy and mounts of one test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.local_dir = base / "local-data"
        self.local_dir.mkdir(parents=True)
        self.server_dir = base / "server"
        self.cache_dir = base / "cache"
        self.server: ServerProcess = start_server(
            self.server_dir, config=plugins_config(self.local_dir, queuefs=False)
        )
        self.port = self.server.port
        self.http = AgfsHttp(self.server.url, timeout=10.0)
        self.proxy = FaultProxy(self.server.url).start()
        self.mounts: list[Mount] = []
        self.mount: Mount | None = None

    def new_mount(
        self,
        *,
        direct: bool = False,
        options: tuple[str, ...] = (),
        timeout: float = DEADLINE,
        mountpoint: Path | None = None,
        cache_dir: Path | None = None,
        start: bool = True,
    ) -> Mount:
        """A mount of the proxy (or of the server itself with ``direct``)."""
        n = len(self.mounts)
        work = self.base / f"m{n}"
        work.mkdir(parents=True, exist_ok=True)
        opts = [
            f"timeout={timeout:g}",
            f"cache_dir={cache_dir or self.cache_dir}",
            *FAST_OPTIONS,
            *options,
        ]
        url = self.server_url if direct else self.proxy.url
        mount = Mount(url, mountpoint or self.base / "mnt", workdir=work, options=opts, name="m")
        self.mounts.append(mount)
        if start:
            mount.start()
        return mount

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def kill_server(self) -> None:
        self.server.kill()
        METRICS.server_kills += 1

    def start_server(self) -> None:
        """(Re)start the server on the same port; localfs still has its data."""
        deadline = time.monotonic() + 15
        while True:
            try:
                self.server = start_server(
                    self.server_dir,
                    config=plugins_config(self.local_dir, queuefs=False),
                    port=self.port,
                )
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def restart_server(self) -> None:
        self.kill_server()
        self.start_server()

    def spools(self) -> list[tuple[Path, dict[str, Any] | None]]:
        """Spool files under the cache dir, with their sidecars (None when missing)."""
        found = []
        root = self.cache_dir / "spool"
        if not root.exists():
            return found
        for data in sorted(root.glob("*/*")):
            if data.name.endswith((".json", ".tmp")) or data.is_dir():
                continue  # a sidecar, or the rename journal's directory
            sidecar = data.with_name(data.name + ".json")
            meta = None
            with contextlib.suppress(OSError, ValueError):
                meta = json.loads(sidecar.read_text())
            found.append((data, meta))
        return found

    def heal(self) -> None:
        """No more faults: rules removed, proxy listening, server running."""
        self.proxy.clear()
        with contextlib.suppress(OSError):
            self.proxy.accept()
        if self.server.returncode is not None:
            with contextlib.suppress(Exception):
                self.start_server()

    def close(self) -> None:
        self.heal()  # let the mounts reach the server while they unmount
        for mount in reversed(self.mounts):
            mount.unmount()
        self.proxy.close()
        METRICS.faults += self.proxy.total_faults()
        self.http.close()
        self.server.stop()


@pytest.fixture
def rig() -> Iterator[Rig]:
    """Server + proxy + a mount through the proxy (``rig.mount``), torn down afterwards.

    After the test every mount that is still supposed to run must be alive: a mount process
    that died fails the test with its log.
    """
    base = Path(tempfile.mkdtemp(prefix="agfs-ft-"))
    r = Rig(base)
    try:
        r.mount = r.new_mount()
        yield r
        r.heal()
        dead = [
            m for m in r.mounts if m.proc is not None and m.returncode is None and not m.alive()
        ]
        if dead:
            pytest.fail("a mount died during the test\n" + dead[0].describe(), pytrace=False)
    finally:
        r.close()
        for mountpoint in mounts_under(base):
            force_unmount(mountpoint)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def _shared_rig() -> Iterator[Rig]:
    base = Path(tempfile.mkdtemp(prefix="agfs-fs-"))
    r = Rig(base)
    try:
        r.mount = r.new_mount()
        yield r
    finally:
        r.close()
        for mountpoint in mounts_under(base):
            force_unmount(mountpoint)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def srig(_shared_rig: Rig) -> Iterator[Rig]:
    """Like ``rig`` but shared by the tests of a module (cheaper): for tests that leave
    nothing behind (no server kill, no parked upload, no extra mount). Faults are removed
    before and after each test; a mount that died fails the test and is replaced."""
    r = _shared_rig
    r.heal()
    yield r
    r.heal()
    assert r.mount is not None
    if not r.mount.alive():
        described = r.mount.describe()
        r.mount.unmount()
        r.mount = r.new_mount(mountpoint=r.base / f"mnt{len(r.mounts)}")
        pytest.fail("the mount died during the test\n" + described, pytrace=False)


def new_dir(rig: Rig, plugin: str = "memfs") -> tuple[str, Path]:
    """A fresh directory on the server: (remote path, path through ``rig.mount``)."""
    assert rig.mount is not None
    remote = f"/{plugin}/t{next(_counter)}"
    rig.http.mkdir(remote)
    return remote, rig.mount.path / remote.lstrip("/")


def full_log(mount: Mount) -> str:
    """The whole ``--log-file`` of a mount ('' before it exists)."""
    try:
        return mount.log_file.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def log_since(mount: Mount, offset: int) -> str:
    """What the mount logged after ``offset`` characters (``len(full_log(mount))``)."""
    return full_log(mount)[offset:]


__all__ = [
    "DEADLINE",
    "RETRY_BUDGET",
    "SLACK",
    "Metrics",
    "Rig",
    "finish_probe",
    "finish_tool",
    "spawn_tool",
    "full_log",
    "log_since",
    "new_dir",
    "probe",
    "run_tool",
    "start_probe",
    "wait_until",
]
