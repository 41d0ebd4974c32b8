"""What the inode table keeps that AGFS cannot store, and for how long (no kernel)."""

from __future__ import annotations

from agfs_fuse.inodes import InodeTable
from agfs_fuse.models import FileInfo


def info(size: int, mtime_ns: int, *, symlink: bool = False) -> FileInfo:
    return FileInfo("f", size, 0o644, False, symlink, mtime_ns)


def test_a_creator_survives_the_mounts_own_uploads_but_not_anothers_change() -> None:
    table = InodeTable()
    inode = table.ref("/memfs/f")
    table.created_by(inode, 65534, 65534)
    local = table.entry(inode).local
    assert local is not None and local.holds_for(info(0, 100))  # adopts the server's copy
    table.uploaded("/memfs/f")  # the mount wrote it: the owner stays, times are the server's
    assert local.holds_for(info(5, 200)) and (local.uid, local.mtime_ns) == (65534, None)
    assert not local.holds_for(info(9, 300))  # someone else changed it: the server wins


def test_touched_sets_mtime_and_ctime_until_the_server_copy_changes() -> None:
    table = InodeTable()
    inode = table.ref("/memfs/d")
    table.touched(inode, 1_000)
    local = table.entry(inode).local
    assert local is not None and (local.mtime_ns, local.ctime_ns) == (1_000, 1_000)
    assert local.holds_for(info(0, 50)) and local.holds_for(info(0, 50))
    assert not local.holds_for(info(0, 60))


def test_a_symlinks_local_attributes_ignore_its_ever_new_mtime() -> None:
    table = InodeTable()
    inode = table.ref("/memfs/link")
    local = table.local(inode, info(6, 1, symlink=True))
    local.uid = 1234
    for now in (2, 3, 4):
        assert table.local(inode, info(6, now, symlink=True)) is local
