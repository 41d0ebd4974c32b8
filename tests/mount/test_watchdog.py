"""The suite's own safety net (tests/conftest.py): a mount that stops answering fails the
test that meets it, it does not stall the run. A stopped mount process is the hang. The net
catches only this run's mounts: anyone else's stays mounted and undisturbed."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from tests.conftest import MARGIN, RUN_TOKEN_VARIABLE


@pytest.mark.timeout(MARGIN + 6)
def test_a_hung_mount_fails_the_test_and_a_foreign_mount_survives(
    make_mount, agfs_server
) -> None:
    # Another user's mount under the same temp directory: its process lacks this run's token.
    foreign_env = {k: v for k, v in os.environ.items() if k != RUN_TOKEN_VARIABLE}
    foreign = make_mount(agfs_server.url, env=foreign_env)
    mount = make_mount(agfs_server.url, options=["attr_timeout=0", "entry_timeout=0"])
    assert mount.proc is not None
    assert os.path.commonpath([foreign.path, mount.path]) != "/"
    os.kill(mount.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(OSError) as caught:
            os.stat(mount.path / "memfs")  # blocks in the kernel until the watchdog aborts
    finally:
        os.kill(mount.proc.pid, signal.SIGCONT)
    assert caught.value.errno == errno.ENOTCONN
    assert time.monotonic() - started < MARGIN + 6

    # The foreign mount was neither aborted nor asked for a task dump (SIGUSR1).
    assert foreign.proc is not None and foreign.proc.poll() is None
    probe = foreign.path / "memfs" / f"watchdog-{os.getpid()}.txt"
    probe.write_text("still here")
    assert probe.read_text() == "still here"
    probe.unlink()
    assert "SIGUSR1" not in foreign.log_file.read_text()
    assert "SIGUSR1" in mount.log_file.read_text()
