"""The inode table: kernel inode numbers <-> remote paths, with lookup counts.

AGFS has no inode numbers, so we hand them out. Invariants (checked in tests):

- the root inode always exists and maps to the mount's remote root;
- every other entry lives while its lookup count is > 0 or someone pins it (an open file);
- a path maps to at most one live inode; an unlinked inode keeps living, detached (no
  path), until the kernel forgets it, so an open-but-deleted file stays readable;
- a rename moves the entry and every entry below it.

It also remembers what AGFS cannot store (atime/mtime/ctime/uid/gid: set by the user, the
creator of a file, a directory's entries changing here) for as long as the inode is known,
with the server's (size, mtime) they hold against, so the server wins as soon as the file
changes there; a change the mount itself uploads keeps the owner and takes the server's
new times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import paths
from .errors import NotFound
from .file_key import FileKey
from .models import FileInfo

ROOT_INODE = 1
RESERVED_INODES = 8  # control files take fixed numbers below this


@dataclass
class LocalAttrs:
    """Attributes AGFS cannot keep, valid while the server copy is unchanged.

    ``basis`` is the server's (size, mtime_ns) they were set against; None means "the
    next answer": the mount itself just changed the file on the server, so what the server
    says next is the copy they belong to. A symlink's basis is never checked: the server
    reports mtime = now on every stat, and a link's target never changes.
    """

    basis: tuple[int, int] | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    uid: int | None = None
    gid: int | None = None

    def holds_for(self, info: FileInfo) -> bool:
        """Still valid: the server's copy is the one these values were set against."""
        if info.is_symlink:
            return True
        if self.basis is None:
            self.basis = (info.size, info.mtime_ns)
        return self.basis == (info.size, info.mtime_ns)

    def changed_here(self) -> None:
        """The mount uploaded new content: the server's times are right from now on,
        the owner stays."""
        self.basis = None
        self.atime_ns = self.mtime_ns = self.ctime_ns = None


@dataclass
class Entry:
    inode: int
    path: str | None  # None once unlinked
    lookups: int = 0
    pins: int = 0
    local: LocalAttrs | None = field(default=None)
    info: FileInfo | None = None  # last attributes shown, for fstat of an unlinked file
    # A directory's subdirectory count as its last listing said, with when (monotonic
    # seconds) that listing was made: the count (and so nlink) holds for attr_timeout.
    subdirs: tuple[int, float] | None = None
    cached: tuple[int, int] | None = None  # (size, mtime_ns) when the page cache was filled
    file_key: FileKey | None = None  # the core's name for its pending writes, once it has one


class InodeTable:
    """Plain state; no I/O. ``root_path`` is the remote path the mount shows as '/'."""

    def __init__(self, root_path: str = "/") -> None:
        self._by_inode: dict[int, Entry] = {}
        self._by_path: dict[str, int] = {}
        self._next = RESERVED_INODES
        self.root_path = root_path
        root = Entry(ROOT_INODE, root_path, lookups=1)
        self._by_inode[ROOT_INODE] = root
        self._by_path[root_path] = ROOT_INODE

    def __len__(self) -> int:
        return len(self._by_inode)

    def path(self, inode: int) -> str:
        """The current remote path of ``inode``; ENOENT if unknown or unlinked."""
        entry = self._by_inode.get(inode)
        if entry is None or entry.path is None:
            raise NotFound("stale inode", path=str(inode))
        return entry.path

    def entry(self, inode: int) -> Entry:
        entry = self._by_inode.get(inode)
        if entry is None:
            raise NotFound("stale inode", path=str(inode))
        return entry

    def known(self) -> list[int]:
        """Every inode the kernel may hold, root included."""
        return list(self._by_inode)

    def find(self, path: str) -> int | None:
        return self._by_path.get(path)

    def ensure(self, path: str) -> int:
        """The inode for ``path``, created with no references if new."""
        inode = self._by_path.get(path)
        if inode is None:
            inode = self._next
            self._next += 1
            self._by_inode[inode] = Entry(inode, path)
            self._by_path[path] = inode
        return inode

    def ref(self, path: str, count: int = 1) -> int:
        """Record ``count`` kernel lookups of ``path``; returns its inode."""
        inode = self.ensure(path)
        self._by_inode[inode].lookups += count
        return inode

    def release_unused(self, inode: int) -> None:
        """Drop an entry made by ``ensure`` that the kernel never took."""
        self._drop_if_unused(inode)

    def forget(self, inode: int, count: int) -> None:
        entry = self._by_inode.get(inode)
        if entry is None or inode == ROOT_INODE:
            return
        entry.lookups = max(0, entry.lookups - count)
        self._drop_if_unused(inode)

    def pin(self, inode: int) -> None:
        """Keep the entry alive while a file handle uses it."""
        self.entry(inode).pins += 1

    def unpin(self, inode: int) -> None:
        entry = self._by_inode.get(inode)
        if entry is not None:
            entry.pins = max(0, entry.pins - 1)
            self._drop_if_unused(inode)

    def _drop_if_unused(self, inode: int) -> None:
        entry = self._by_inode.get(inode)
        if entry is None or inode == ROOT_INODE or entry.lookups > 0 or entry.pins > 0:
            return
        del self._by_inode[inode]
        if entry.path is not None and self._by_path.get(entry.path) == inode:
            del self._by_path[entry.path]

    def detach(self, path: str) -> None:
        """``path`` was removed on the server: its inode lives on without a path."""
        inode = self._by_path.pop(path, None)
        if inode is not None:
            entry = self._by_inode[inode]
            entry.path = None
            entry.local = None
            self._drop_if_unused(inode)

    def local(self, inode: int, info: FileInfo | None) -> LocalAttrs:
        """The inode's local attributes, fresh ones when none hold for ``info`` (the
        server's copy; None: the next answer)."""
        entry = self.entry(inode)
        local = entry.local
        if local is None or (info is not None and not local.holds_for(info)):
            basis = None if info is None or info.is_symlink else (info.size, info.mtime_ns)
            local = entry.local = LocalAttrs(basis=basis)
        return local

    def touched(self, inode: int, now_ns: int) -> None:
        """Changed here in a way the server's copy does not show yet (memfs keeps a
        directory's mtime when entries come and go; an open file's truncate is uploaded
        at close): mtime and ctime are now, until the server's copy changes."""
        local = self.local(inode, None)
        local.mtime_ns = local.ctime_ns = now_ns

    def created_by(self, inode: int, uid: int, gid: int) -> None:
        """Who made the entry: AGFS has no owners, so the mount keeps it (as a chown)."""
        local = self.local(inode, None)
        local.uid, local.gid = uid, gid

    def uploaded(self, path: str) -> None:
        """The mount put new content of ``path`` on the server."""
        inode = self._by_path.get(path)
        local = self._by_inode[inode].local if inode is not None else None
        if local is not None:
            local.changed_here()

    def rename(self, old: str, new: str) -> None:
        """Move ``old`` (and everything below it) to ``new``, detaching what ``new`` was."""
        if old == new:
            return
        self.detach_tree(new)
        moved = [(p, i) for p, i in self._by_path.items() if paths.is_within(p, old)]
        for p, _ in moved:
            del self._by_path[p]
        for p, inode in moved:
            target = paths.rebase(p, old, new)
            self._by_inode[inode].path = target
            self._by_path[target] = inode

    def attach(self, inode: int, path: str) -> None:
        """Give a detached inode a path again: a replaced file kept, still open, under a
        hidden name (see ``rename.KeptAside``)."""
        entry = self.entry(inode)
        entry.path = path
        self._by_path[path] = inode

    def detach_tree(self, path: str) -> None:
        """Detach ``path`` and everything below it (a replaced directory)."""
        for p in [p for p in self._by_path if paths.is_within(p, path)]:
            self.detach(p)

    def check(self) -> None:
        """Assert the invariants; used by tests."""
        assert self._by_inode[ROOT_INODE].path == self.root_path
        for path, inode in self._by_path.items():
            assert self._by_inode[inode].path == path, (path, inode)
        for inode, entry in self._by_inode.items():
            assert entry.inode == inode
            if inode != ROOT_INODE:
                assert entry.lookups > 0 or entry.pins > 0, entry
            if entry.path is not None:
                assert self._by_path[entry.path] == inode
