"""The pyfuse3 ``Operations`` class: translates kernel calls into filesystem-core calls.

Each handler decodes names, resolves inodes to remote paths, calls one method of the core
(``AgfsFilesystem``), and turns the answer into ``EntryAttributes``. One error boundary
wraps every handler: typed errors become ``FUSEError(errno)``, anything else is logged
with its traceback and becomes EIO. pyfuse3 only understands ``FUSEError``; any other
exception would kill the session and leave a dead mount.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from typing import Any

import pyfuse3
import trio

from . import paths
from .errors import AgfsError, InvalidArgument, NotFound, RequestTimeout, ServerUnreachable
from .file_key import FileKey
from .filesystem import AgfsFilesystem
from .fuse_attrs import (
    BLOCK_SIZE,
    AttrPolicy,
    control_attributes,
    file_attributes,
    negative_entry,
    synthetic_info,
)
from .fuse_boundary import error_boundary
from .inodes import ROOT_INODE, InodeTable
from .models import FileInfo
from .readahead import ReadAhead
from .rename import KeptAside
from .streams import StreamFollower
from .writes import MessageWriter, Writer

log = logging.getLogger(__name__)

RELOAD_HELP = (
    b"agfs-fuse control file: write nothing to reconnect, or an http(s):// URL to switch"
    b" servers (echo > reload; echo http://host:8080/api/v1 > reload)\n"
)


@dataclass(frozen=True)
class ControlFile:
    """A file of the mount itself, at its root, shadowing any remote entry of that name."""

    name: str
    inode: int
    mode: int
    listed: bool


RELOAD = ControlFile("reload", 2, 0o200, listed=True)
STATS = ControlFile(".agfs-stats", 3, 0o444, listed=False)  # hidden: found by name only
SPOOLS = ControlFile(".agfs-spools", 4, 0o600, listed=False)  # "upload ID" / "discard ID"
CONTROLS = {control.name: control for control in (RELOAD, STATS, SPOOLS)}
CONTROL_INODES = {control.inode: control for control in CONTROLS.values()}


@dataclass
class OpenFile:
    inode: int
    writer: Writer | None = None
    volatile: bool = False
    content: bytes | None = None
    control: ControlFile | None = None
    append: bool = False
    stream: StreamFollower | None = None
    readahead: ReadAhead | None = None


@dataclass
class OpenDir:
    path: str
    entries: list[tuple[str, FileInfo | None]]  # (name shown, entry; None: control file)


class AgfsOperations(pyfuse3.Operations):
    """Kernel requests in, filesystem-core calls out."""

    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(
        self,
        fs: AgfsFilesystem,
        inodes: InodeTable,
        policy: AttrPolicy,
        *,
        writeback_cache: bool = False,
    ) -> None:
        super().__init__()
        # Read by pyfuse3 when the kernel's INIT comes. With it the kernel keeps written
        # pages and sends them in large writes (all before the flush of close), handles
        # O_APPEND itself, and trusts its own idea of a file's size over the server's.
        self.enable_writeback_cache = writeback_cache
        self.fs = fs
        self.inodes = inodes
        self.policy = policy
        fs.on_uploaded = inodes.uploaded  # the mount's own uploads keep owners, take times
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, OpenDir] = {}
        self._next_fh = 1
        self._started_ns = time.time_ns()
        self._warned_shadow = False
        self._opens_kept_cache = 0
        self._opens_dropped_cache = 0
        self._writes = 0  # write requests the kernel sent for files (not control files)
        self.kernel_ready = trio.Event()
        self._kept: dict[int, KeptAside] = {}
        """Replaced files kept aside while open here, by inode: deleted at last close."""

    def init(self) -> None:
        """FUSE's INIT: pyfuse3 calls this while handling it and sends the answer as soon
        as it returns, before any other task runs; a task woken by ``kernel_ready`` finds
        the kernel serving the mount. The mount never asks its own mountpoint to find
        that out: a request from this process to itself, in flight when a SIGKILL comes,
        waits for an answer no one will give, and the process can never exit."""
        self.kernel_ready.set()

    # -- helpers --------------------------------------------------------------------

    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _file_key(self, inode: int) -> FileKey:
        """The one way to the key under which the core keeps ``inode``'s pending writes:
        minted by the core at the first need, kept beside the inode from then on."""
        entry = self.inodes.entry(inode)
        if entry.file_key is None:
            entry.file_key = self.fs.new_file_key()
        return entry.file_key

    def _child_path(self, parent_inode: int, name: bytes) -> str:
        return self.fs.child_path(self.inodes.path(parent_inode), paths.decode_name(name))

    def _control(self, parent_inode: int, name: bytes) -> ControlFile | None:
        if parent_inode != ROOT_INODE:
            return None
        return CONTROLS.get(name.decode("utf-8", "replace"))

    def _attrs(
        self, inode: int, info: FileInfo, *, synthetic: bool = False
    ) -> pyfuse3.EntryAttributes:
        """``synthetic``: ``info`` is what the mount made up for an entry it just created,
        not the server's word, so local attributes are neither checked nor based on it."""
        entry = self.inodes.entry(inode)
        entry.info = info
        if synthetic:
            pass
        elif info.is_symlink:
            # The server says mtime = now on every stat: the first time seen stays.
            local = self.inodes.local(inode, info)
            if local.mtime_ns is None:
                local.mtime_ns = info.mtime_ns
        elif entry.local is not None and not entry.local.holds_for(info):
            entry.local = None  # the server changed the file: the server wins
        spool = self.fs.spool_of(self._file_key(inode))
        return file_attributes(
            self.policy,
            inode,
            info,
            volatile=entry.path is not None and self.fs.is_volatile(entry.path, info),
            local_size=spool.local_size() if spool is not None else None,
            local=entry.local,
            nlink=self._nlink(entry.path, entry.subdirs, info),
        )

    def _nlink(self, path: str | None, subdirs: tuple[int, float] | None, info: FileInfo) -> int:
        """0 for an unlinked file; 2 + subdirectories for a directory listed less than
        ``attr_timeout`` ago, else 1 ("unknown", as ``find`` reads it); 1 otherwise."""
        if path is None:
            return 0
        if not info.is_dir or info.is_symlink:
            return 1
        return self._dir_nlink(subdirs)

    def _dir_nlink(self, subdirs: tuple[int, float] | None) -> int:
        if subdirs is None:
            return 1
        count, listed_at = subdirs
        return 2 + count if time.monotonic() - listed_at < self.policy.attr_timeout else 1

    def _entries_changed(self, parent_inode: int, *, subdirs: int | None = 0) -> None:
        """Entries of a directory came or went here: its mtime and ctime are now (memfs
        does not change them on the server), and its subdirectory count moves by
        ``subdirs`` (None: unknown until it is listed again)."""
        self.inodes.touched(parent_inode, time.time_ns())
        entry = self.inodes.entry(parent_inode)
        if entry.subdirs is not None:
            count, listed_at = entry.subdirs
            entry.subdirs = None if subdirs is None else (count + subdirs, listed_at)

    def _created(self, inode: int, ctx: Any) -> None:
        """Record who made the entry when it is another user than the one running the
        mount: under ``allow_other`` the creator must be able to chmod, truncate and
        write it. The mount's own user's entries show the policy's owner (``-o uid=``)."""
        uid, gid = getattr(ctx, "uid", None), getattr(ctx, "gid", None)
        if uid is not None and gid is not None and uid != os.getuid():
            self.inodes.created_by(inode, uid, gid)

    def _control_attrs(self, control: ControlFile) -> pyfuse3.EntryAttributes:
        return control_attributes(self.policy, control.inode, control.mode, self._started_ns)

    async def _entry_for(self, path: str, info: FileInfo) -> pyfuse3.EntryAttributes:
        inode = self.inodes.ref(path)
        return self._attrs(inode, info)

    async def _made_entry(self, path: str, info: FileInfo, ctx: Any) -> pyfuse3.EntryAttributes:
        """The kernel's entry for something just made here by ``ctx``'s caller; ``info``
        is synthetic."""
        inode = self.inodes.ref(path)
        self._created(inode, ctx)
        return self._attrs(inode, info, synthetic=True)

    async def reload(self, text: str) -> None:
        """``/reload`` and SIGHUP: swap the client, then make the kernel forget what it knew.

        The kernel's cached attributes and pages belong to the old connection (or the old
        server); without this a switched mount would show the new file cut to the old size.
        """
        await self.fs.reload(text)
        await trio.to_thread.run_sync(self._invalidate_kernel_caches)

    def _invalidate_kernel_caches(self) -> None:
        for inode in self.inodes.known():
            with contextlib.suppress(OSError):
                pyfuse3.invalidate_inode(inode, attr_only=False)
            with contextlib.suppress(NotFound):
                self.inodes.entry(inode).cached = None

    # -- lookups and attributes -----------------------------------------------------

    @error_boundary
    async def lookup(self, parent_inode, name, ctx=None):
        control = self._control(parent_inode, name)
        if control is not None:
            return self._control_attrs(control)
        parent = self.inodes.path(parent_inode)
        path = await self.fs.lookup_path(parent, paths.decode_name(name))
        try:
            info = await self.fs.stat(path)
        except NotFound:
            if self.policy.negative_timeout > 0:
                return negative_entry(self.policy)
            raise
        return await self._entry_for(path, info)

    @error_boundary
    async def getattr(self, inode, ctx=None):
        if inode in CONTROL_INODES:
            return self._control_attrs(CONTROL_INODES[inode])
        entry = self.inodes.entry(inode)
        try:
            # The path once no rename changes it: a replaced file's attributes stay its own.
            path = await self.fs.settled_path(lambda: entry.path)
            if path is None:  # unlinked (or replaced) but still open
                if entry.info is None:
                    raise NotFound("file was removed", path=str(inode))
                return self._attrs(inode, entry.info)
            return self._attrs(inode, await self.fs.stat(path))
        except (ServerUnreachable, RequestTimeout):
            if inode != ROOT_INODE or entry.info is None:
                raise
            # The mountpoint itself stays a directory while the server is away, so that
            # `df`, `cd` and mount checks work; everything inside reports the error.
            return self._attrs(inode, entry.info)

    @error_boundary
    async def setattr(self, inode, attr, fields, fh, ctx):
        if inode in CONTROL_INODES:
            # A truncate comes with every `echo > reload` (O_TRUNC) and changes nothing;
            # a mode, owner or time would be silently dropped, so it fails as in /proc.
            dropped = ("update_mode", "update_uid", "update_gid", "update_atime", "update_mtime")
            if any(getattr(fields, name) for name in dropped):
                raise pyfuse3.FUSEError(errno.EPERM)
            return self._control_attrs(CONTROL_INODES[inode])
        path = self.inodes.path(inode)
        if fields.update_size:
            key = self._file_key(inode)
            await self.fs.truncate(key, path, attr.st_size)
            if self.fs.spool_of(key) is not None:  # an open file: uploaded at close
                self.inodes.touched(inode, time.time_ns())
        if fields.update_mode:
            await self.fs.chmod(path, stat.S_IMODE(attr.st_mode))
        # Cached attributes will do (an untar sets mode, owner and times of every file):
        # what changed here dropped or updated them, and they are never over a TTL old.
        if fields.update_uid or fields.update_gid or fields.update_atime or fields.update_mtime:
            info = await self.fs.stat(path)
            local = self.inodes.local(inode, info)
            local.ctime_ns = time.time_ns()
            if fields.update_uid:
                local.uid = attr.st_uid
            if fields.update_gid:
                local.gid = attr.st_gid
            if fields.update_atime:
                local.atime_ns = attr.st_atime_ns
            if fields.update_mtime:
                local.mtime_ns = attr.st_mtime_ns
            return self._attrs(inode, info)
        return self._attrs(inode, await self.fs.stat(path))

    @error_boundary
    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.inodes.forget(inode, count)

    @error_boundary
    async def statfs(self, ctx):
        data = pyfuse3.StatvfsData()
        data.f_bsize = BLOCK_SIZE
        data.f_frsize = 4096
        data.f_blocks = data.f_bfree = data.f_bavail = 1 << 32  # 16 TiB: AGFS has no quota
        data.f_files = data.f_ffree = data.f_favail = 1 << 24
        data.f_namemax = paths.NAME_MAX
        return data

    @error_boundary
    async def access(self, inode, mode, ctx):
        return True

    # -- directories ----------------------------------------------------------------

    @error_boundary
    async def opendir(self, inode, ctx):
        path = self.inodes.path(inode)
        listing = await self.fs.entries_for_reading(path)
        entries: list[tuple[str, FileInfo | None]] = []
        if inode == ROOT_INODE:
            entries += [(c.name, None) for c in CONTROLS.values() if c.listed]
        for shown, info in listing:
            if inode == ROOT_INODE and shown in CONTROLS:
                if not self._warned_shadow:
                    log.warning("the server's /%s is hidden by a control file", info.name)
                    self._warned_shadow = True
                continue
            if not info.name or "/" in info.name or self.fs.hidden(path, info.name, time.time()):
                continue
            entries.append((shown, info))
        await self._listed(inode, entries)
        fh = self._new_fh()
        self._dirs[fh] = OpenDir(path, entries)
        return fh

    async def _listed(self, inode: int, entries: list[tuple[str, FileInfo | None]]) -> None:
        """Count the subdirectories a listing showed; when that changes the directory's
        link count, the kernel's cached attributes (from the lookup before the listing)
        are dropped, so a stat right after ``ls`` sees it."""
        entry = self.inodes.entry(inode)
        before = self._dir_nlink(entry.subdirs)
        count = sum(1 for _, i in entries if i is not None and i.is_dir and not i.is_symlink)
        entry.subdirs = (count, time.monotonic())
        if self._dir_nlink(entry.subdirs) != before:
            await trio.to_thread.run_sync(_forget_kernel_attrs, inode)

    @error_boundary
    async def readdir(self, fh, start_id, token):
        listing = self._dirs[fh]
        for index in range(start_id, len(listing.entries)):
            name, info = listing.entries[index]
            if info is None:
                control = self._control_attrs(CONTROLS[name])
                if not pyfuse3.readdir_reply(token, name.encode(), control, index + 1):
                    return
                continue
            child = paths.join(listing.path, info.name)  # the real name behind an escaped one
            inode = self.inodes.ensure(child)
            if pyfuse3.readdir_reply(token, name.encode(), self._attrs(inode, info), index + 1):
                self.inodes.ref(child)
            else:
                self.inodes.release_unused(inode)
                return

    @error_boundary
    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    @error_boundary
    async def mkdir(self, parent_inode, name, mode, ctx):
        path = self._child_path(parent_inode, name)
        await self.fs.mkdir(path, stat.S_IMODE(mode))
        self._entries_changed(parent_inode, subdirs=1)
        info = synthetic_info(paths.split(path)[1], perm=stat.S_IMODE(mode), is_dir=True)
        return await self._made_entry(path, info, ctx)

    @error_boundary
    async def rmdir(self, parent_inode, name, ctx):
        path = self._child_path(parent_inode, name)
        await self.fs.rmdir(path)
        self.inodes.detach_tree(path)
        self._entries_changed(parent_inode, subdirs=-1)

    # -- names ----------------------------------------------------------------------

    @error_boundary
    async def unlink(self, parent_inode, name, ctx):
        if self._control(parent_inode, name):
            raise pyfuse3.FUSEError(errno.EPERM)
        path = self._child_path(parent_inode, name)
        await self.fs.unlink(path)
        self.inodes.detach(path)
        self._entries_changed(parent_inode)

    @error_boundary
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if self._control(parent_inode_old, name_old) or self._control(parent_inode_new, name_new):
            raise pyfuse3.FUSEError(errno.EPERM)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise InvalidArgument("RENAME_EXCHANGE is not supported by AGFS")
        old = self._child_path(parent_inode_old, name_old)
        new = self._child_path(parent_inode_new, name_new)
        kept = await self.fs.rename(
            old,
            new,
            noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
            keep_replaced=lambda: self._is_open(new),
        )
        replaced = self.inodes.find(new)
        self.inodes.rename(old, new)
        if kept is not None and replaced is not None:
            # Still open: its readers go on reading the old file, now under the aside name.
            self.inodes.attach(replaced, kept.aside)
            self._kept[replaced] = kept
            await self._unpin(replaced, 0)  # closed meanwhile: delete it now
        for parent in {parent_inode_old, parent_inode_new}:
            self._entries_changed(parent, subdirs=None)

    def _is_open(self, path: str) -> bool:
        inode = self.inodes.find(path)
        return inode is not None and self.inodes.entry(inode).pins > 0

    async def _unpin(self, inode: int, count: int = 1) -> None:
        """A handle of ``inode`` is gone; if it was the last one of a replaced file kept
        aside, the file is deleted."""
        for _ in range(count):
            self.inodes.unpin(inode)
        kept = self._kept.get(inode)
        if kept is None or self._is_open(kept.aside):
            return
        del self._kept[inode]
        self.inodes.detach(kept.aside)
        await self.fs.discard_kept(kept)

    @error_boundary
    async def symlink(self, parent_inode, name, target, ctx):
        path = self._child_path(parent_inode, name)
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("symlink target is not valid UTF-8", path=path) from None
        await self.fs.symlink(text, path)
        self._entries_changed(parent_inode)
        info = synthetic_info(paths.split(path)[1], perm=0o777, is_symlink=True, size=len(target))
        return await self._made_entry(path, info, ctx)

    @error_boundary
    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)  # AGFS has no hard links

    @error_boundary
    async def readlink(self, inode, ctx):
        return (await self.fs.readlink(self.inodes.path(inode))).encode("utf-8")

    # -- files ----------------------------------------------------------------------

    def _register(self, handle: OpenFile) -> int:
        fh = self._new_fh()
        self._files[fh] = handle
        self.inodes.pin(handle.inode)
        return fh

    def _open_existing(self, inode: int, path: str, info: FileInfo, flags: int) -> pyfuse3.FileInfo:
        if info.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        handle = OpenFile(inode, volatile=self.fs.is_volatile(path, info))
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            handle.writer = self.fs.open_writer(self._file_key(inode), path, info, flags)
        if flags & os.O_ACCMODE != os.O_WRONLY:
            if self.fs.is_stream(path, info):
                handle.stream = StreamFollower(self.fs.current_client, path)
            elif not handle.volatile:
                handle.readahead = self.fs.read_ahead(lambda: self.inodes.entry(inode).path, info)
        fh = self._register(handle)
        # Messages (a queue's enqueue, control files) never wait in the writeback cache.
        writeback = self.enable_writeback_cache
        direct = handle.volatile or (writeback and isinstance(handle.writer, MessageWriter))
        # The writeback cache appends itself: the writes it sends carry their offsets.
        handle.append = bool(flags & os.O_APPEND) and (direct or not writeback)
        # Keep the kernel's pages only when the file is unchanged since they were read.
        entry = self.inodes.entry(inode)
        basis = (info.size, info.mtime_ns)
        keep = not handle.volatile and entry.cached == basis and info.mtime_ns != 0
        entry.cached = None if handle.volatile else basis
        if keep:
            self._opens_kept_cache += 1
        elif not handle.volatile:
            self._opens_dropped_cache += 1
        return pyfuse3.FileInfo(fh=fh, direct_io=direct, keep_cache=keep)

    @error_boundary
    async def open(self, inode, flags, ctx):
        if inode in CONTROL_INODES:
            return self._open_control(CONTROL_INODES[inode], flags)
        path = self.inodes.entry(inode).path
        if path is None:
            # A rename replaced this inode's file (the kernel found it in its dentry cache,
            # a moment old). ESTALE makes the kernel look the name up again and open what
            # is there now, as the program asked.
            raise pyfuse3.FUSEError(errno.ESTALE)
        self.inodes.pin(inode)  # a rename that replaces it meanwhile keeps it for us
        try:
            info = await self.fs.stat(path, fresh=True)  # after a rename of it, if one runs
            now = self.inodes.entry(inode).path
            if now is None:
                raise pyfuse3.FUSEError(errno.ESTALE)
            if now != path:  # renamed, or replaced and kept aside, while the stat waited
                path, info = now, await self.fs.stat(now, fresh=True)
            return self._open_existing(inode, path, info, flags)
        finally:
            await self._unpin(inode)

    def _open_control(self, control: ControlFile, flags: int) -> pyfuse3.FileInfo:
        handle = OpenFile(control.inode, control=control, volatile=True)
        if control is STATS:
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise pyfuse3.FUSEError(errno.EACCES)
            handle.content = json.dumps(self.snapshot(), indent=2).encode() + b"\n"
        elif control is SPOOLS:
            kept = [spool.describe() for spool in self.fs.kept_spools()]
            handle.content = json.dumps(kept, indent=2).encode() + b"\n"
        else:
            handle.content = RELOAD_HELP
        fh = self._new_fh()
        self._files[fh] = handle
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    def snapshot(self) -> dict[str, Any]:
        """The mount's numbers for ``/.agfs-stats``."""
        return {
            **self.fs.snapshot(),
            "root": self.inodes.root_path,
            "open_files": sum(1 for h in self._files.values() if h.control is None),
            "known_inodes": len(self.inodes),
            "page_cache": {
                "opens_kept": self._opens_kept_cache,
                "opens_dropped": self._opens_dropped_cache,
                "writeback": self.enable_writeback_cache,
            },
            "write_requests": self._writes,
        }

    @error_boundary
    async def create(self, parent_inode, name, mode, flags, ctx):
        if self._control(parent_inode, name):
            raise pyfuse3.FUSEError(errno.EEXIST if flags & os.O_EXCL else errno.EACCES)
        path = self._child_path(parent_inode, name)
        try:
            await self.fs.create(path, stat.S_IMODE(mode))
        except AgfsError as exc:
            if exc.errno != errno.EEXIST or flags & os.O_EXCL:
                raise
            info = await self.fs.stat(path, fresh=True)  # lost a race: open what is there
            inode = self.inodes.ref(path)
            return self._open_existing(inode, path, info, flags), self._attrs(inode, info)
        self._entries_changed(parent_inode)
        info = synthetic_info(paths.split(path)[1], perm=stat.S_IMODE(mode))
        inode = self.inodes.ref(path)
        self._created(inode, ctx)
        handle = OpenFile(inode, writer=self.fs.open_new_file(self._file_key(inode), path))
        fh = self._register(handle)
        attrs = self._attrs(inode, info, synthetic=True)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), attrs

    @error_boundary
    async def read(self, fh, off, size):
        handle = self._files[fh]
        if handle.control is not None:
            return (handle.content or b"")[off : off + size]
        path = await self.fs.settled_path(lambda: self.inodes.entry(handle.inode).path)
        if handle.stream is not None:
            handle.stream.start(self.fs.nursery())
            return await handle.stream.read(off, size)
        if handle.volatile:
            if handle.content is None:
                if path is None:
                    raise NotFound("file was removed")
                handle.content = await self.fs.fetch_all(path)
            return handle.content[off : off + size]
        writer = handle.writer or self.fs.spool_of(self._file_key(handle.inode))
        if writer is not None:
            if handle.readahead is not None:  # what it fetched may predate local changes
                handle.readahead.drop()
                handle.readahead = None
            local = await writer.read(off, size)
            if local is not None:
                return local
        if path is None:
            raise NotFound("file was removed")
        if handle.readahead is not None:
            return await handle.readahead.read(off, size)
        return await self.fs.read(path, off, size)

    @error_boundary
    async def write(self, fh, off, buf):
        handle = self._files[fh]
        if handle.control is STATS:
            raise pyfuse3.FUSEError(errno.EBADF)
        if handle.control in (RELOAD, SPOOLS):
            try:
                text = bytes(buf).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument(f"{handle.control.name} expects text") from None
            if handle.control is RELOAD:
                await self.reload(text)
            else:
                await self.fs.kept_spool_command(text)
            return len(buf)
        if handle.writer is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        self._writes += 1
        return await handle.writer.write(off, bytes(buf), append=handle.append)

    @error_boundary
    async def flush(self, fh):
        handle = self._files.get(fh)
        if handle is not None and handle.writer is not None:
            await handle.writer.flush()

    @error_boundary
    async def fsync(self, fh, datasync):
        handle = self._files.get(fh)
        if handle is not None and handle.writer is not None:
            await handle.writer.flush()

    @error_boundary
    async def release(self, fh):
        handle = self._files.pop(fh, None)
        if handle is None or handle.control is not None:
            return
        if handle.stream is not None:
            handle.stream.close()
        if handle.readahead is not None:
            handle.readahead.drop()
        try:
            if handle.writer is not None:
                await self.fs.release_writer(self._file_key(handle.inode), handle.writer)
        finally:
            await self._unpin(handle.inode)


def _forget_kernel_attrs(inode: int) -> None:
    """Make the kernel ask for ``inode``'s attributes again (in a thread: the kernel
    may block the notification while it handles a request)."""
    with contextlib.suppress(OSError):
        pyfuse3.invalidate_inode(inode, attr_only=True)
