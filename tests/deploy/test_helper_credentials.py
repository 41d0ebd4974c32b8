"""A password in the server URL is refused by ``mount.fuse.agfs`` too, as by ``agfs-fuse
mount``: called directly as mount(8) calls it, and from an fstab line through mount(8). The
password must not reach /proc/mounts, a process's command line or the error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agfs_fuse.mount_helper import EX_USAGE
from tests.support.mount import is_mounted, pids_with_arg

from .conftest import Server
from .test_mount_helper import run

SECRET = "pw-in-url"


def _with_password(server: Server) -> str:
    return server.url.replace("http://", f"http://alice:{SECRET}@")


def _assert_refused(done, mountpoint: Path) -> None:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "user name or password" in lines[0] and "token_file" in lines[0], lines[0]
    assert SECRET not in done.stderr + done.stdout
    assert not is_mounted(mountpoint) and not pids_with_arg(os.fspath(mountpoint))
    with open("/proc/self/mounts") as mounts:
        assert SECRET not in mounts.read()


@pytest.mark.timeout(30)
def test_helper_refuses_a_password_in_the_url(
    server: Server, mountpoint: Path, workdir: Path, helper: Path
) -> None:
    done = run(
        [helper, _with_password(server), mountpoint, "-o", f"rw,cache_dir={workdir / 'cache'}"]
    )
    assert done.returncode == EX_USAGE, done.stderr
    _assert_refused(done, mountpoint)


@pytest.mark.timeout(60)
def test_fstab_line_with_a_password_in_the_url_is_refused(
    server: Server, mountpoint: Path, workdir: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    fstab = workdir / "fstab"
    fstab.write_text(
        f"{_with_password(server)} {mountpoint} fuse.agfs cache_dir={workdir / 'cache'} 0 0\n"
    )
    done = run(["mount", "-T", fstab, mountpoint], mount_env)
    assert done.returncode != 0
    _assert_refused(done, mountpoint)
