"""The inode table's invariants: lookup counts, pins, detach and rename of subtrees."""

import pytest

from agfs_fuse.errors import NotFound
from agfs_fuse.inodes import ROOT_INODE, InodeTable


def test_root_maps_to_the_remote_root():
    table = InodeTable("/memfs")
    assert table.path(ROOT_INODE) == "/memfs"
    assert table.find("/memfs") == ROOT_INODE
    table.forget(ROOT_INODE, 100)
    assert table.path(ROOT_INODE) == "/memfs"
    table.check()


def test_lookup_counts_keep_entries_alive_until_forgotten():
    table = InodeTable()
    inode = table.ref("/a", 2)
    assert table.ref("/a") == inode
    table.forget(inode, 2)
    assert table.path(inode) == "/a"
    table.forget(inode, 1)
    with pytest.raises(NotFound):
        table.path(inode)
    assert table.find("/a") is None
    table.check()


def test_ensure_without_reference_can_be_released():
    table = InodeTable()
    inode = table.ensure("/x")
    table.release_unused(inode)
    assert table.find("/x") is None
    table.check()


def test_pinned_unlinked_inode_survives_forget_without_a_path():
    table = InodeTable()
    inode = table.ref("/f")
    table.pin(inode)
    table.detach("/f")
    table.forget(inode, 1)
    assert table.entry(inode).path is None
    with pytest.raises(NotFound):
        table.path(inode)
    assert table.find("/f") is None
    table.unpin(inode)
    with pytest.raises(NotFound):
        table.entry(inode)
    table.check()


def test_rename_moves_the_subtree_and_detaches_the_target():
    table = InodeTable()
    d = table.ref("/d")
    f = table.ref("/d/sub/f")
    other = table.ref("/e")
    table.pin(other)
    table.rename("/d", "/e")
    assert table.path(d) == "/e"
    assert table.path(f) == "/e/sub/f"
    assert table.find("/d") is None
    assert table.entry(other).path is None
    table.check()


def test_rename_does_not_touch_siblings_with_a_common_prefix():
    table = InodeTable()
    a = table.ref("/ab")
    table.ref("/a")
    table.rename("/a", "/z")
    assert table.path(a) == "/ab"
    table.check()


def test_a_new_inode_never_reuses_a_number():
    table = InodeTable()
    first = table.ref("/a")
    table.forget(first, 1)
    second = table.ref("/a")
    assert second != first
    table.check()
