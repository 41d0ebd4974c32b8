"""The spool directory must be ours alone: a planted or shared one is refused, one line.

Runs as root in the test VM (chown needs it); each test builds its own tree under tmp_path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agfs_fuse.spool import SpoolDir, UnsafeSpoolDir, make_private_dir

OTHER_UID = 65534  # nobody: chown to it needs root, as the whole suite does (FUSE mounts)

def _refused(path: Path, fragment: str) -> str:
    with pytest.raises(UnsafeSpoolDir) as caught:
        make_private_dir(path)
    message = str(caught.value)
    assert fragment in message and "\n" not in message, message
    return message


def test_a_new_spool_directory_is_created_private(tmp_path: Path) -> None:
    spool = tmp_path / "cache" / "spool" / "abc"
    make_private_dir(spool)
    assert spool.is_dir() and spool.stat().st_mode & 0o777 == 0o700
    make_private_dir(spool)  # and accepted again on the next mount


def test_a_planted_spool_directory_of_another_user_is_refused_before_its_sidecars_are_read(
    tmp_path: Path,
) -> None:
    """The attack: another user pre-creates the predictable directory, mode 0777, with a
    sidecar naming a server handle that the mount would then close."""
    planted = tmp_path / "cache" / "spool" / "abc"
    planted.mkdir(parents=True)
    (planted / "x").write_bytes(b"")
    (planted / "x.json").write_text(
        json.dumps(
            {
                "remote_path": "/f",
                "server_url": "http://h/api/v1",
                "base_size": 0,
                "base_mtime_ns": 0,
                "created": 0.0,
                "handle_id": 7,
            }
        )
    )
    os.chown(planted, OTHER_UID, OTHER_UID)
    planted.chmod(0o777)
    with pytest.raises(UnsafeSpoolDir, match="belongs to uid 65534"):
        SpoolDir(planted)


def test_a_spool_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    _refused(spool, "writable by other users (mode 0777); run chmod 700")
    spool.chmod(0o720)
    _refused(spool, "writable by other users")


def test_a_parent_of_another_user_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "spool").mkdir(parents=True)
    os.chown(cache / "spool", OTHER_UID, OTHER_UID)
    _refused(cache / "spool" / "abc", "belongs to uid 65534, not to you")


def test_a_world_writable_parent_needs_the_sticky_bit(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    _refused(shared / "spool", "is writable by every user (mode 0777)")
    shared.chmod(0o1777)  # like /tmp: no one can rename our directory away
    make_private_dir(shared / "spool")


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    _refused(link, "is not a directory (or is a symlink)")


@pytest.mark.parametrize("where", ["/proc/agfs-fuse-spool", "/dev/null/spool"])
def test_an_unusable_place_is_a_one_line_error(where: str) -> None:
    _refused(Path(where), "cannot use spool directory")
