"""The kernel's entries without a kernel: link counts from listings, what a listing shows,
local attributes set here, all over a real inode table and injected clocks."""

from __future__ import annotations

import stat
from types import SimpleNamespace

from agfs_fuse.control_files import RELOAD, STATS
from agfs_fuse.fuse_attrs import AttrPolicy
from agfs_fuse.fuse_entries import Entries
from agfs_fuse.inodes import ROOT_INODE, InodeTable
from agfs_fuse.models import FileInfo
from agfs_fuse.path_settings import CacheTimeouts, ConstantSettings

ASIDE = ".agfs-fuse-replaced-00000000-00000000"


def entry(name: str, *, is_dir: bool = False, size: int = 0, mtime_ns: int = 7) -> FileInfo:
    return FileInfo(name, size, 0o755 if is_dir else 0o644, is_dir, False, mtime_ns)


class StubCore:
    def __init__(self) -> None:
        self.volatile: set[str] = set()
        self.hidden_names: set[str] = set()

    def is_volatile(self, path: str, info: FileInfo) -> bool:
        return path in self.volatile

    def hidden(self, parent: str, name: str, now: float) -> bool:
        return name in self.hidden_names


class Clocks:
    def __init__(self) -> None:
        self.monotonic = 100.0
        self.wall_ns = 1_700_000_000_000_000_000


def make(local_sizes: dict[int, int] | None = None):
    """Entries over a fresh inode table; ``local_sizes``: open spools' sizes by inode."""
    inodes = InodeTable("/")
    core = StubCore()
    clocks = Clocks()
    entries = Entries(
        inodes,
        AttrPolicy(uid=1000, gid=1000, settings=ConstantSettings(CacheTimeouts(attr=1.0))),
        core,
        lambda inode: None if local_sizes is None else local_sizes.get(inode),
        monotonic=lambda: clocks.monotonic,
        clock=lambda: clocks.wall_ns / 1e9,
        clock_ns=lambda: clocks.wall_ns,
    )
    return entries, inodes, core, clocks


def test_a_listed_directory_has_two_links_plus_its_subdirectories_for_attr_timeout() -> None:
    entries, inodes, _, clocks = make()
    inode = inodes.ref("/d")
    info = entry("d", is_dir=True)
    assert entries.of(inode, info).st_nlink == 1  # never listed: "unknown" for find
    listing = [("a", entry("a", is_dir=True)), ("b", entry("b", is_dir=True)), ("f", entry("f"))]
    assert entries.listed(inode, listing)  # the count changed: the kernel must forget
    assert entries.of(inode, info).st_nlink == 4
    assert not entries.listed(inode, listing)  # the same again
    clocks.monotonic += 1.5
    assert entries.of(inode, info).st_nlink == 1


def test_entries_made_or_removed_here_move_the_count_and_the_directorys_times() -> None:
    entries, inodes, _, clocks = make()
    inode = inodes.ref("/d")
    entries.listed(inode, [("a", entry("a", is_dir=True))])
    entries.changed(inode, subdirs=1)
    assert entries.of(inode, entry("d", is_dir=True)).st_nlink == 4
    attrs = entries.of(inode, entry("d", is_dir=True))
    assert attrs.st_mtime_ns == attrs.st_ctime_ns == clocks.wall_ns
    entries.changed(inode, subdirs=None)  # a rename: unknown until listed again
    assert entries.of(inode, entry("d", is_dir=True)).st_nlink == 1


def test_an_unlinked_open_file_has_no_links_and_a_spool_knows_its_size() -> None:
    spooled: dict[int, int] = {}
    entries, inodes, _, _ = make(local_sizes=spooled)
    inode = inodes.ref("/f")
    spooled[inode] = 42
    assert entries.of(inode, entry("f", size=3)).st_size == 42
    inodes.detach("/f")
    assert entries.of(inode, entry("f", size=3)).st_nlink == 0


def test_a_volatile_file_is_never_cached_by_the_kernel() -> None:
    entries, inodes, core, _ = make()
    inode = inodes.ref("/status")
    core.volatile.add("/status")
    assert entries.of(inode, entry("status")).attr_timeout == 0


def test_the_root_lists_its_control_files_and_hides_what_they_shadow() -> None:
    entries, _, core, _ = make()
    core.hidden_names.add(ASIDE)
    listing = [(n, entry(n)) for n in ("reload", "a", ASIDE, "")] + [("x", entry("x/y"))]
    shown = entries.shown(ROOT_INODE, "/", listing)
    assert [name for name, _ in shown] == ["reload", "a"]
    assert shown[0][1] is RELOAD  # the control file, not the server's entry
    below = entries.shown(ROOT_INODE + 100, "/d", [("reload", entry("reload"))])
    assert [name for name, _ in below] == ["reload"]  # only the root has control files
    assert below[0][1] is not RELOAD


def test_owner_and_times_set_here_hold_while_the_server_copy_is_unchanged() -> None:
    entries, inodes, _, clocks = make()
    inode = inodes.ref("/f")
    info = entry("f", size=3)
    nothing = SimpleNamespace(
        update_uid=False, update_gid=False, update_atime=False, update_mtime=False
    )
    entries.set_locally(inode, info, SimpleNamespace(), nothing)
    assert inodes.entry(inode).local is None
    fields = SimpleNamespace(
        update_uid=True, update_gid=False, update_atime=False, update_mtime=True
    )
    attr = SimpleNamespace(st_uid=4242, st_mtime_ns=5)
    entries.set_locally(inode, info, attr, fields)
    attrs = entries.of(inode, info)
    assert (attrs.st_uid, attrs.st_gid, attrs.st_mtime_ns) == (4242, 1000, 5)
    assert attrs.st_ctime_ns == clocks.wall_ns
    changed = entry("f", size=4)  # another client changed the file: the server wins
    attrs = entries.of(inode, changed)
    assert (attrs.st_uid, attrs.st_mtime_ns) == (1000, changed.mtime_ns)


def test_control_files_show_their_fixed_modes() -> None:
    entries, _, _, clocks = make()
    reload, stats = entries.control(RELOAD), entries.control(STATS)
    assert (reload.st_ino, stat.S_IMODE(reload.st_mode)) == (RELOAD.inode, 0o200)
    assert (stats.st_ino, stat.S_IMODE(stats.st_mode)) == (STATS.inode, 0o444)
    assert reload.st_size == 0 and reload.st_mtime_ns == clocks.wall_ns
