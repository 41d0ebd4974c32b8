"""``agfs-fuse spools`` run as a program on a spool directory it cannot use: one line on
stderr and a non-zero exit, never a traceback. No mount: the spools are read from disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agfs_fuse.spool import SIDECAR_SUFFIX, spool_dir_path

pytestmark = pytest.mark.timeout(30)

SPOOL_ID = "0123456789abcdef0123456789abcdef"


def spools(cache_dir: Path, mountpoint: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agfs_fuse", "spools", str(mountpoint)]
    return subprocess.run(
        [*command, "--cache-dir", str(cache_dir), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], says: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("agfs-fuse: error: "), proc.stderr
    assert says in proc.stderr, proc.stderr


def test_an_unsafe_spool_directory_is_one_line(tmp_path: Path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    root = spool_dir_path(tmp_path / "cache", str(mountpoint))
    root.mkdir(parents=True)
    root.chmod(0o777)  # as another user's cache dir looks to ``sudo agfs-fuse spools``

    assert_one_line_error(spools(tmp_path / "cache", mountpoint), "writable by other users")


def test_a_spool_that_cannot_be_removed_is_one_line(tmp_path: Path):
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    root = spool_dir_path(tmp_path / "cache", str(mountpoint))
    root.mkdir(parents=True, mode=0o700)
    (root / SPOOL_ID).write_bytes(b"kept content")
    (root / (SPOOL_ID + SIDECAR_SUFFIX)).mkdir()  # unlink fails (EISDIR), even for root

    listed = spools(tmp_path / "cache", mountpoint)
    assert listed.returncode == 0 and SPOOL_ID in listed.stdout, listed.stderr
    proc = spools(tmp_path / "cache", mountpoint, "--discard", SPOOL_ID[:8])
    assert_one_line_error(proc, "cannot discard")
