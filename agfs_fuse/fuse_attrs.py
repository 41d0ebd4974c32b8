"""Kernel attributes (``EntryAttributes``) from what the server says about a file.

Owner and umask come from the mount's policy, cache timeouts from the settings that hold
for the file's path (a federated mount's backends each have their own); size from a local spool
when it knows better; times, owner and group from values set locally while the server's
copy is unchanged. Volatile files get no attribute caching, so ``tail -f`` sees growth.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyfuse3

from . import paths
from .inodes import LocalAttrs
from .models import FileInfo
from .path_settings import DEFAULT_SETTINGS, CacheTimeouts, PathSettings

if TYPE_CHECKING:
    from .open_files import Opened

BLOCK_SIZE = 128 * 1024


@dataclass(frozen=True)
class AttrPolicy:
    """How remote attributes are shown: owner, umask and kernel cache timeouts."""

    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int | None = None
    settings: PathSettings = DEFAULT_SETTINGS
    """The timeouts under each path; the mount's own control files take the root's."""

    def timeouts(self, path: str | None) -> CacheTimeouts:
        """The timeouts for ``path`` (None, an unlinked open file: the mount-wide ones)."""
        return self.settings.timeouts("/" if path is None else path)


def file_attributes(
    policy: AttrPolicy,
    inode: int,
    info: FileInfo,
    *,
    timeouts: CacheTimeouts,
    volatile: bool,
    local_size: int | None,
    local: LocalAttrs | None,
    nlink: int | None = None,
) -> pyfuse3.EntryAttributes:
    """``nlink``: the link count when the caller knows it (0 for an unlinked open file,
    2 + subdirectories for a listed directory); else 1, which ``find`` reads as "unknown"
    for a directory, where 2 would claim it has no subdirectories."""
    attrs = pyfuse3.EntryAttributes()
    attrs.st_ino = inode
    attrs.generation = 0
    attrs.entry_timeout = timeouts.entry
    attrs.attr_timeout = 0 if volatile else timeouts.attr
    perm = info.perm
    if policy.umask is not None:
        perm &= ~policy.umask & 0o7777
    if info.is_symlink:
        attrs.st_mode = stat.S_IFLNK | 0o777
    elif info.is_dir:
        attrs.st_mode = stat.S_IFDIR | perm
    else:
        attrs.st_mode = stat.S_IFREG | perm
    attrs.st_nlink = 1 if nlink is None else nlink
    size = info.size if local_size is None else local_size
    attrs.st_size = size
    attrs.st_blksize = BLOCK_SIZE
    attrs.st_blocks = (size + 511) // 512
    attrs.st_uid = policy.uid
    attrs.st_gid = policy.gid
    mtime = atime = ctime = info.mtime_ns
    if local is not None:
        mtime = local.mtime_ns if local.mtime_ns is not None else mtime
        atime = local.atime_ns if local.atime_ns is not None else mtime
        ctime = local.ctime_ns if local.ctime_ns is not None else mtime
        attrs.st_uid = local.uid if local.uid is not None else attrs.st_uid
        attrs.st_gid = local.gid if local.gid is not None else attrs.st_gid
    attrs.st_mtime_ns = mtime
    attrs.st_atime_ns = atime
    attrs.st_ctime_ns = ctime
    return attrs


def control_attributes(
    policy: AttrPolicy, inode: int, mode: int, mtime_ns: int
) -> pyfuse3.EntryAttributes:
    """A control file of the mount itself: empty, with fixed permission bits."""
    attrs = pyfuse3.EntryAttributes()
    attrs.st_ino = inode
    attrs.st_mode = stat.S_IFREG | mode
    attrs.st_nlink = 1
    attrs.st_size = 0
    attrs.st_uid = policy.uid
    attrs.st_gid = policy.gid
    attrs.st_blksize = BLOCK_SIZE
    attrs.st_mtime_ns = attrs.st_atime_ns = attrs.st_ctime_ns = mtime_ns
    timeouts = policy.timeouts("/")
    attrs.entry_timeout = timeouts.entry
    attrs.attr_timeout = timeouts.attr
    return attrs


def file_info(opened: Opened) -> pyfuse3.FileInfo:
    """The kernel's answer to an open or create, from the open-file layer's decision."""
    return pyfuse3.FileInfo(fh=opened.fh, direct_io=opened.direct_io, keep_cache=opened.keep_cache)


def filesystem_statistics() -> pyfuse3.StatvfsData:
    """``statfs``: AGFS has no quota and no inode count, so the numbers are large and
    fixed (16 TiB of blocks, 16 Mi files)."""
    data = pyfuse3.StatvfsData()
    data.f_bsize = BLOCK_SIZE
    data.f_frsize = 4096
    data.f_blocks = data.f_bfree = data.f_bavail = 1 << 32
    data.f_files = data.f_ffree = data.f_favail = 1 << 24
    data.f_namemax = paths.NAME_MAX
    return data


def negative_entry(timeouts: CacheTimeouts) -> pyfuse3.EntryAttributes:
    """'No such name', cached by the kernel for ``negative_timeout`` seconds."""
    attrs = pyfuse3.EntryAttributes()
    attrs.st_ino = 0
    attrs.entry_timeout = timeouts.negative
    return attrs


def synthetic_info(
    name: str, *, perm: int, is_dir: bool = False, is_symlink: bool = False, size: int = 0
) -> FileInfo:
    """What a file we just made looks like, without asking the server again."""
    return FileInfo(
        name=name,
        size=size,
        perm=perm & 0o7777,
        is_dir=is_dir,
        is_symlink=is_symlink,
        mtime_ns=time.time_ns(),
    )
