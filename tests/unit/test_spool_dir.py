"""Where a mount's spools live: keyed by the mountpoint alone, so a reload to another
server and the next mount find them; an older URL-keyed directory is moved in."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from agfs_fuse.spool import UnsafeSpoolDir, mount_spool_dir, spool_dir_path


def test_the_spool_dir_does_not_depend_on_the_server(tmp_path: Path) -> None:
    one = mount_spool_dir(tmp_path, "http://a:8080/api/v1", "/mnt/x")
    other = mount_spool_dir(tmp_path, "http://b:9090/api/v1", "/mnt/x")
    assert one.root == other.root == spool_dir_path(tmp_path, "/mnt/x")
    assert mount_spool_dir(tmp_path, "http://a:8080/api/v1", "/mnt/y").root != one.root


def test_an_old_url_keyed_directory_is_moved_in(tmp_path: Path) -> None:
    url, mountpoint = "http://a:8080/api/v1", "/mnt/x"
    old_key = uuid.uuid5(uuid.NAMESPACE_URL, f"{url} {mountpoint}").hex[:16]
    old = tmp_path / "spool" / old_key
    old.mkdir(parents=True)
    (old / "abc").write_bytes(b"kept content")
    (old / "abc.json").write_text("{}")
    spool_dir = mount_spool_dir(tmp_path, url, mountpoint)
    assert (spool_dir.root / "abc").read_bytes() == b"kept content"
    assert (spool_dir.root / "abc.json").exists()
    assert not old.exists()


def test_an_old_url_keyed_directory_others_can_write_is_refused_not_moved_in(
    tmp_path: Path,
) -> None:
    url, mountpoint = "http://a:8080/api/v1", "/mnt/x"
    old_key = uuid.uuid5(uuid.NAMESPACE_URL, f"{url} {mountpoint}").hex[:16]
    old = tmp_path / "spool" / old_key
    old.mkdir(parents=True)
    (old / "planted.json").write_text('{"handle": 7}')
    old.chmod(0o777)
    with pytest.raises(UnsafeSpoolDir, match="writable by other users"):
        mount_spool_dir(tmp_path, url, mountpoint)
    assert (old / "planted.json").exists()
    assert not (spool_dir_path(tmp_path, mountpoint) / "planted.json").exists()


def test_rename_records_in_both_directories_are_merged(tmp_path: Path) -> None:
    """Both the old and the new directory hold intent records: a plain replace of
    ``renames/`` failed with ENOTEMPTY, a traceback at mount."""
    url, mountpoint = "http://a:8080/api/v1", "/mnt/x"
    old_key = uuid.uuid5(uuid.NAMESPACE_URL, f"{url} {mountpoint}").hex[:16]
    old = tmp_path / "spool" / old_key
    (old / "renames").mkdir(parents=True)
    (old / "renames" / "from-old.json").write_text('{"old": 1}')
    (old / "abc").write_bytes(b"kept content")
    new_renames = spool_dir_path(tmp_path, mountpoint) / "renames"
    new_renames.mkdir(parents=True)
    (new_renames / "from-new.json").write_text('{"new": 1}')

    spool_dir = mount_spool_dir(tmp_path, url, mountpoint)
    renames = spool_dir.root / "renames"
    assert sorted(p.name for p in renames.iterdir()) == ["from-new.json", "from-old.json"]
    assert (renames / "from-old.json").read_text() == '{"old": 1}'
    assert (spool_dir.root / "abc").read_bytes() == b"kept content"
    assert not old.exists()
