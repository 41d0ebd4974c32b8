"""The kernel's entries: attributes of inodes as the mount shows them, and what changes them.

``fuse_attrs`` turns one ``FileInfo`` into ``EntryAttributes``; this adds what the mount
knows beyond the server's answer: attributes set locally while the server's copy is
unchanged, an open spool's size, link counts of directories from their last listing, the
owner of what another user created, and a directory's times when its entries change here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import pyfuse3

from .control_files import ControlFile, controls_in
from .fuse_attrs import AttrPolicy, control_attributes, file_attributes
from .inodes import InodeTable
from .models import FileInfo

log = logging.getLogger("agfs_fuse.operations")  # the lines are about FUSE operations

Listing = list[tuple[str, FileInfo | ControlFile]]
"""A directory's entries as shown: (name shown, the server's entry or a control file)."""


class EntriesCore(Protocol):
    """What entries need of the filesystem core (``AgfsFilesystem``)."""

    def is_volatile(self, path: str, info: FileInfo) -> bool: ...
    def hidden(self, parent: str, name: str, now: float) -> bool: ...


class Entries:
    """Builds the kernel's attributes for inodes, and keeps the local ones up to date."""

    def __init__(
        self,
        inodes: InodeTable,
        policy: AttrPolicy,
        core: EntriesCore,
        local_size: Callable[[int], int | None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``local_size``: an open file's size as its spool sees it (None: the server's)."""
        self._inodes = inodes
        self._policy = policy
        self._core = core
        self._local_size = local_size
        self._monotonic = monotonic
        self._clock = clock
        self._clock_ns = clock_ns
        self._started_ns = clock_ns()
        self._warned_shadow = False

    def of(self, inode: int, info: FileInfo, *, synthetic: bool = False) -> pyfuse3.EntryAttributes:
        """``inode``'s attributes from ``info``. ``synthetic``: ``info`` is what the mount
        made up for an entry it just created, not the server's word, so local attributes
        are neither checked nor based on it."""
        entry = self._inodes.entry(inode)
        entry.info = info
        if synthetic:
            pass
        elif info.is_symlink:
            # The server says mtime = now on every stat: the first time seen stays.
            local = self._inodes.local(inode, info)
            if local.mtime_ns is None:
                local.mtime_ns = info.mtime_ns
        elif entry.local is not None and not entry.local.holds_for(info):
            entry.local = None  # the server changed the file: the server wins
        return file_attributes(
            self._policy,
            inode,
            info,
            timeouts=self._policy.timeouts(entry.path),
            volatile=entry.path is not None and self._core.is_volatile(entry.path, info),
            local_size=self._local_size(inode),
            local=entry.local,
            nlink=self._nlink(entry.path, entry.subdirs, info),
        )

    def found(self, path: str, info: FileInfo) -> pyfuse3.EntryAttributes:
        """The entry of a lookup: one more kernel reference to ``path``'s inode."""
        return self.of(self._inodes.ref(path), info)

    def made(self, path: str, info: FileInfo, ctx: Any) -> pyfuse3.EntryAttributes:
        """The entry of something just made here by ``ctx``'s caller; ``info`` is
        synthetic."""
        inode = self._inodes.ref(path)
        self.created(inode, ctx)
        return self.of(inode, info, synthetic=True)

    def control(self, control: ControlFile) -> pyfuse3.EntryAttributes:
        return control_attributes(self._policy, control.inode, control.mode, self._started_ns)

    def created(self, inode: int, ctx: Any) -> None:
        """Record who made the entry when it is another user than the one running the
        mount: under ``allow_other`` the creator must be able to chmod, truncate and
        write it. The mount's own user's entries show the policy's owner (``-o uid=``)."""
        uid, gid = getattr(ctx, "uid", None), getattr(ctx, "gid", None)
        if uid is not None and gid is not None and uid != os.getuid():
            self._inodes.created_by(inode, uid, gid)

    def _nlink(self, path: str | None, subdirs: tuple[int, float] | None, info: FileInfo) -> int:
        """0 for an unlinked file; 2 + subdirectories for a directory listed less than
        ``attr_timeout`` ago, else 1 ("unknown", as ``find`` reads it); 1 otherwise."""
        if path is None:
            return 0
        if not info.is_dir or info.is_symlink:
            return 1
        return self._dir_nlink(path, subdirs)

    def _dir_nlink(self, path: str | None, subdirs: tuple[int, float] | None) -> int:
        if subdirs is None:
            return 1
        count, listed_at = subdirs
        fresh = self._monotonic() - listed_at < self._policy.timeouts(path).attr
        return 2 + count if fresh else 1

    def set_locally(self, inode: int, info: FileInfo, attr: Any, fields: Any) -> None:
        """A setattr's owner and times (``fields`` says which of ``attr`` are set), which
        AGFS cannot store: kept while the server's copy is still ``info``."""
        if not (fields.update_uid or fields.update_gid or fields.update_atime) and not (
            fields.update_mtime
        ):
            return
        local = self._inodes.local(inode, info)
        local.ctime_ns = self._clock_ns()
        if fields.update_uid:
            local.uid = attr.st_uid
        if fields.update_gid:
            local.gid = attr.st_gid
        if fields.update_atime:
            local.atime_ns = attr.st_atime_ns
        if fields.update_mtime:
            local.mtime_ns = attr.st_mtime_ns

    def shown(self, inode: int, path: str, listing: list[tuple[str, FileInfo]]) -> Listing:
        """What ``ls`` of directory ``inode`` shows of the server's ``listing`` (name shown,
        entry): the directory's listed control files first, in place of any remote entry of
        their name; no name the mount hides (``AgfsFilesystem.hidden``) or the kernel
        cannot take."""
        controls = controls_in(inode, path)
        entries: Listing = [(c.name, c) for c in controls.values() if c.listed]
        for shown, info in listing:
            if shown in controls:
                if not self._warned_shadow:
                    log.warning("the server's /%s is hidden by a control file", info.name)
                    self._warned_shadow = True
                continue
            if (
                not info.name
                or "/" in info.name
                or self._core.hidden(path, info.name, self._clock())
            ):
                continue
            entries.append((shown, info))
        return entries

    def changed(self, parent_inode: int, *, subdirs: int | None = 0) -> None:
        """Entries of a directory came or went here: its mtime and ctime are now (memfs
        does not change them on the server), and its subdirectory count moves by
        ``subdirs`` (None: unknown until it is listed again)."""
        self._inodes.touched(parent_inode, self._clock_ns())
        entry = self._inodes.entry(parent_inode)
        if entry.subdirs is not None:
            count, listed_at = entry.subdirs
            entry.subdirs = None if subdirs is None else (count + subdirs, listed_at)

    def listed(self, inode: int, entries: Listing) -> bool:
        """Count the subdirectories a listing showed; True when that changes the
        directory's link count, so the kernel's cached attributes (from the lookup before
        the listing) must go for a stat right after ``ls`` to see it."""
        entry = self._inodes.entry(inode)
        before = self._dir_nlink(entry.path, entry.subdirs)
        count = sum(
            1 for _, i in entries if isinstance(i, FileInfo) and i.is_dir and not i.is_symlink
        )
        entry.subdirs = (count, self._monotonic())
        return self._dir_nlink(entry.path, entry.subdirs) != before
