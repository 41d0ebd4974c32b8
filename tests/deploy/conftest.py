"""Fixtures for the deployment tests: the systemd unit, mount(8) and fstab, the helper.

- ``server``: one reference server (memfs at /memfs) for the module; ``server.http``
  checks its state without ``agfs_fuse``.
- ``mountpoint``: a fresh empty directory; at teardown whatever is mounted there is
  unmounted and every process with it in its argv (the mounts the test started, found
  by that unique path) is waited for, then SIGKILLed by pid, so nothing is left behind.
- ``helper``: the checkout's ``mount.fuse.agfs`` (``.venv/bin``).
- ``sbin_helper``: ``/sbin/mount.fuse.agfs`` pointing at ``helper`` for the session.
  mount(8) has no option or variable for where helpers live (libmount's search path is
  compiled in: /sbin, /sbin/fs.d, /sbin/fs), so the test installs a symlink there when
  none exists and removes it afterwards; an existing different helper (an installed
  agfs-fuse) is moved aside and put back.
- ``mount_env``: the environment for mount(8) and umount(8), with ``LIBMOUNT_UTAB``
  pointing into the test's directory, so the userspace options libmount records for
  ``_netdev``/``x-*`` mounts never touch /run/mount/utab.

A test that cannot mount fails; nothing here skips.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.support.mount import force_unmount, is_mounted, mounts_under, pids_with_arg, wait_until
from tests.support.server import ServerProcess, start_server

SBIN_HELPER = Path("/sbin/mount.fuse.agfs")
_counter = itertools.count()


@dataclass
class Server:
    url: str
    http: AgfsHttp
    handle: ServerProcess


def stop_mount(mountpoint: Path) -> None:
    """Unmount ``mountpoint`` and end the processes serving it (found by its path in their
    argv: only mounts a test started use these unique paths). Never raises."""
    force_unmount(mountpoint)
    path = os.fspath(mountpoint)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not pids_with_arg(path), timeout=10, message="the mount to exit")
    for pid in pids_with_arg(path):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    force_unmount(mountpoint)


@pytest.fixture(scope="session")
def deploy_tmp() -> Iterator[Path]:
    """A short directory for the session: mountpoints, logs, the server's files."""
    path = Path(tempfile.mkdtemp(prefix="agfs-dp-"))
    try:
        yield path
    finally:
        for mountpoint in mounts_under(path):
            stop_mount(Path(mountpoint))
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def server(deploy_tmp: Path) -> Iterator[Server]:
    handle = start_server(deploy_tmp / f"server{next(_counter)}")
    http = AgfsHttp(handle.url)
    try:
        yield Server(url=handle.url, http=http, handle=handle)
    finally:
        http.close()
        handle.stop()


@pytest.fixture
def workdir(deploy_tmp: Path) -> Path:
    """A fresh directory for one test (its mountpoint, fstab, logs, cache)."""
    path = deploy_tmp / f"t{next(_counter)}"
    path.mkdir()
    return path


@pytest.fixture
def mountpoint(workdir: Path) -> Iterator[Path]:
    path = workdir / "mnt"
    path.mkdir()
    try:
        yield path
    finally:
        stop_mount(path)
        assert not is_mounted(path), f"{path} is still mounted after cleanup"


@pytest.fixture(scope="session")
def helper() -> Path:
    path = Path(sys.executable).parent / "mount.fuse.agfs"
    assert os.access(path, os.X_OK), f"{path} missing: run `.venv/bin/pip install -e .`"
    return path


@pytest.fixture(scope="session")
def sbin_helper(helper: Path) -> Iterator[Path]:
    """``/sbin/mount.fuse.agfs`` -> the checkout's helper, for the session; restored after."""
    if SBIN_HELPER.is_symlink() and SBIN_HELPER.resolve() == helper.resolve():
        yield SBIN_HELPER  # already ours: leave it as it is
        return
    saved = SBIN_HELPER.with_name(f".mount.fuse.agfs.saved-by-test-{os.getpid()}")
    had_one = os.path.lexists(SBIN_HELPER)
    if had_one:
        os.rename(SBIN_HELPER, saved)
    try:
        os.symlink(helper, SBIN_HELPER)
        try:
            yield SBIN_HELPER
        finally:
            if SBIN_HELPER.is_symlink() and os.readlink(SBIN_HELPER) == os.fspath(helper):
                SBIN_HELPER.unlink()
    finally:
        if had_one:
            os.rename(saved, SBIN_HELPER)


@pytest.fixture
def mount_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LIBMOUNT_UTAB"] = os.fspath(workdir / "utab")
    return env
