"""The suite's own safety net (tests/conftest.py): a mount that stops answering fails the
test that meets it, it does not stall the run. A stopped mount process is the hang."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest

from tests.conftest import MARGIN


@pytest.mark.timeout(MARGIN + 6)
def test_a_hung_mount_fails_the_test_instead_of_stalling_it(make_mount, agfs_server) -> None:
    mount = make_mount(agfs_server.url, options=["attr_timeout=0", "entry_timeout=0"])
    assert mount.proc is not None
    os.kill(mount.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        with pytest.raises(OSError) as caught:
            os.stat(mount.path / "memfs")  # blocks in the kernel until the watchdog aborts
    finally:
        os.kill(mount.proc.pid, signal.SIGCONT)
    assert caught.value.errno == errno.ENOTCONN
    assert time.monotonic() - started < MARGIN + 6
