"""A watchdog for every test: a hung mount fails one test instead of stalling the run.

A program blocked in a FUSE request sleeps uninterruptibly: pytest-timeout's SIGALRM is
never delivered to a test stuck in ``stat()`` on a mount that stopped answering. A
little before the test's timeout, this aborts the FUSE connections of the test mounts
(``/sys/fs/fuse/connections/N/abort``, what ``fusermount3 -u`` cannot do for a dead
daemon): the blocked call returns ENOTCONN, the test fails and the run goes on.

It touches only what this run made. At start-up the run puts a random token in its own
environment (``AGFS_FUSE_TEST_RUN``); every process it starts inherits it, also a mount that
daemonises. A mount is this run's when a process serving it (its mountpoint in the argv)
carries the token; only such mounts are aborted, and only such processes get SIGUSR1.
Another user's mount, or a second run's, is left alone, wherever it is mounted.

``--agfs-server-bin=BIN`` (``make conformance``) makes every server the tests start the real
AGFS server ``BIN`` instead of the reference one, and skips the tests marked
``reference_only(reason)``; without it nothing is skipped.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mount import abort_fuse_connection, fuse_connections, pids_with_arg
from tests.support.server import real_server_bin, use_real_server

DEFAULT_TIMEOUT = 120.0
MARGIN = 5.0
RUN_TOKEN_VARIABLE = "AGFS_FUSE_TEST_RUN"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--agfs-server-bin",
        metavar="BIN",
        default=None,
        help="conformance run: start this real AGFS server binary wherever the tests would "
        "start the reference server (`make conformance`)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Mark this run's processes: each child inherits the token (a nested run gets its own).
    Pick the server the tests start: the reference, or the real one under conformance."""
    os.environ[RUN_TOKEN_VARIABLE] = secrets.token_hex(16)
    try:
        use_real_server(config.getoption("agfs_server_bin"))
    except FileNotFoundError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under conformance, skip the tests marked ``reference_only(reason)``, with their reason;
    against the reference server nothing is skipped."""
    if real_server_bin() is None:
        return
    for item in items:
        marker = item.get_closest_marker("reference_only")
        if marker is not None:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: reference_only needs a reason")
            item.add_marker(pytest.mark.skip(reason=f"reference only: {reason}"))


def _started_by_this_run(pid: int) -> bool:
    """True when process ``pid`` carries this run's token in its environment."""
    want = f"{RUN_TOKEN_VARIABLE}={os.environ[RUN_TOKEN_VARIABLE]}".encode()
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return want in environ.split(b"\0")


def _our_mount_processes(mountpoint: str) -> list[int]:
    """The processes this run started that serve ``mountpoint``."""
    return [pid for pid in pids_with_arg(mountpoint) if _started_by_this_run(pid)]


def _test_fuse_connections() -> list[tuple[str, str]]:
    """(connection id, mountpoint) of the agfs mounts served by this run's processes."""
    return [(c, m) for c, m in fuse_connections() if _our_mount_processes(m)]


def _dump_tasks(mountpoint: str) -> None:
    """Ask the mount process what its tasks wait for (SIGUSR1) and show it here."""
    for pid in _our_mount_processes(mountpoint):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        os.kill(pid, signal.SIGUSR1)
        if "--log-file" in argv:
            log = Path(argv[argv.index("--log-file") + 1])
            time.sleep(1.0)
            tail = log.read_text(errors="replace").splitlines()[-120:]
            print("\n".join(["", f"watchdog: the end of {log}:", *tail]), file=sys.stderr)


def _abort_test_mounts(test: str) -> None:
    for connection, mountpoint in _test_fuse_connections():
        try:
            _dump_tasks(mountpoint)
        except OSError as exc:
            print(
                f"\nwatchdog: no task dump from the mount on {mountpoint}: {exc}", file=sys.stderr
            )
        try:
            abort_fuse_connection(connection)
            print(
                f"\nwatchdog: {test} hung; aborted the FUSE connection of {mountpoint}",
                file=sys.stderr,
            )
        except OSError as exc:
            print(f"\nwatchdog: cannot abort {mountpoint}: {exc}", file=sys.stderr)


@pytest.fixture(autouse=True)
def fuse_watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("timeout")
    if marker and marker.args:
        timeout = float(marker.args[0])
    else:
        timeout = float(request.config.getini("timeout") or DEFAULT_TIMEOUT)
    timer = threading.Timer(
        max(timeout - MARGIN, 1.0), _abort_test_mounts, args=(request.node.nodeid,)
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
