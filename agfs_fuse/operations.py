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
from .inodes import ROOT_INODE, InodeTable, LocalAttrs
from .models import FileInfo
from .readahead import ReadAhead
from .rename import ASIDE_PREFIX
from .streams import StreamFollower
from .writes import UPLOAD_PREFIX, MessageWriter, Writer

log = logging.getLogger(__name__)

HIDDEN_PREFIXES = (ASIDE_PREFIX, UPLOAD_PREFIX)
"""The mount's own transient server files (rename asides, uploads on their way): never listed."""

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
    entries: list[tuple[str, FileInfo | None]]


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
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, OpenDir] = {}
        self._next_fh = 1
        self._started_ns = time.time_ns()
        self._warned_shadow = False
        self._opens_kept_cache = 0
        self._opens_dropped_cache = 0
        self._writes = 0  # write requests the kernel sent for files (not control files)
        self.kernel_ready = trio.Event()

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

    def _child_path(self, parent_inode: int, name: bytes) -> str:
        return paths.join(self.inodes.path(parent_inode), paths.decode_name(name))

    def _control(self, parent_inode: int, name: bytes) -> ControlFile | None:
        if parent_inode != ROOT_INODE:
            return None
        return CONTROLS.get(name.decode("utf-8", "replace"))

    def _attrs(self, inode: int, info: FileInfo) -> pyfuse3.EntryAttributes:
        entry = self.inodes.entry(inode)
        entry.info = info
        if entry.local is not None and not entry.local.holds_for(info):
            entry.local = None  # the server changed the file: the server wins
        spool = self.fs.spool_of(inode)
        return file_attributes(
            self.policy,
            inode,
            info,
            volatile=entry.path is not None and self.fs.is_volatile(entry.path, info),
            local_size=spool.local_size() if spool is not None else None,
            local=entry.local,
        )

    def _control_attrs(self, control: ControlFile) -> pyfuse3.EntryAttributes:
        return control_attributes(self.policy, control.inode, control.mode, self._started_ns)

    async def _entry_for(self, path: str, info: FileInfo) -> pyfuse3.EntryAttributes:
        inode = self.inodes.ref(path)
        return self._attrs(inode, info)

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
        path = self._child_path(parent_inode, name)
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
        if entry.path is None:  # unlinked but still open
            if entry.info is None:
                raise NotFound("file was removed", path=str(inode))
            return self._attrs(inode, entry.info)
        try:
            return self._attrs(inode, await self.fs.stat(entry.path))
        except (ServerUnreachable, RequestTimeout):
            if inode != ROOT_INODE or entry.info is None:
                raise
            # The mountpoint itself stays a directory while the server is away, so that
            # `df`, `cd` and mount checks work; everything inside reports the error.
            return self._attrs(inode, entry.info)

    @error_boundary
    async def setattr(self, inode, attr, fields, fh, ctx):
        if inode in CONTROL_INODES:
            return self._control_attrs(CONTROL_INODES[inode])
        path = self.inodes.path(inode)
        if fields.update_size:
            await self.fs.truncate(inode, path, attr.st_size)
        if fields.update_mode:
            await self.fs.chmod(path, stat.S_IMODE(attr.st_mode))
        # Cached attributes will do (an untar sets mode, owner and times of every file):
        # what changed here dropped or updated them, and they are never over a TTL old.
        if fields.update_uid or fields.update_gid or fields.update_atime or fields.update_mtime:
            info = await self.fs.stat(path)
            entry = self.inodes.entry(inode)
            local = entry.local
            if local is None or local.basis != (info.size, info.mtime_ns):
                local = LocalAttrs(basis=(info.size, info.mtime_ns))
            if fields.update_uid:
                local.uid = attr.st_uid
            if fields.update_gid:
                local.gid = attr.st_gid
            if fields.update_atime:
                local.atime_ns = attr.st_atime_ns
            if fields.update_mtime:
                local.mtime_ns = attr.st_mtime_ns
            entry.local = local
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
        listing = await self.fs.list_for_reading(path)
        entries: list[tuple[str, FileInfo | None]] = []
        if inode == ROOT_INODE:
            entries += [(c.name, None) for c in CONTROLS.values() if c.listed]
        for info in listing:
            if inode == ROOT_INODE and info.name in CONTROLS:
                if not self._warned_shadow:
                    log.warning("the server's /%s is hidden by a control file", info.name)
                    self._warned_shadow = True
                continue
            if info.name.startswith(HIDDEN_PREFIXES) or not info.name or "/" in info.name:
                continue
            entries.append((info.name, info))
        fh = self._new_fh()
        self._dirs[fh] = OpenDir(path, entries)
        return fh

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
            child = paths.join(listing.path, name)
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
        info = synthetic_info(paths.split(path)[1], perm=stat.S_IMODE(mode), is_dir=True)
        return await self._entry_for(path, info)

    @error_boundary
    async def rmdir(self, parent_inode, name, ctx):
        path = self._child_path(parent_inode, name)
        await self.fs.rmdir(path)
        self.inodes.detach_tree(path)

    # -- names ----------------------------------------------------------------------

    @error_boundary
    async def unlink(self, parent_inode, name, ctx):
        if self._control(parent_inode, name):
            raise pyfuse3.FUSEError(errno.EPERM)
        path = self._child_path(parent_inode, name)
        await self.fs.unlink(path)
        self.inodes.detach(path)

    @error_boundary
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if self._control(parent_inode_old, name_old) or self._control(parent_inode_new, name_new):
            raise pyfuse3.FUSEError(errno.EPERM)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise InvalidArgument("RENAME_EXCHANGE is not supported by AGFS")
        old = self._child_path(parent_inode_old, name_old)
        new = self._child_path(parent_inode_new, name_new)
        await self.fs.rename(old, new, noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE))
        self.inodes.rename(old, new)

    @error_boundary
    async def symlink(self, parent_inode, name, target, ctx):
        path = self._child_path(parent_inode, name)
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("symlink target is not valid UTF-8", path=path) from None
        await self.fs.symlink(text, path)
        info = synthetic_info(paths.split(path)[1], perm=0o777, is_symlink=True, size=len(target))
        return await self._entry_for(path, info)

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
            handle.writer = self.fs.open_writer(inode, path, info, flags)
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
        path = self.inodes.path(inode)
        info = await self.fs.stat(path, fresh=True)
        return self._open_existing(inode, path, info, flags)

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
        info = synthetic_info(paths.split(path)[1], perm=stat.S_IMODE(mode))
        inode = self.inodes.ref(path)
        handle = OpenFile(inode, writer=self.fs.open_new_file(inode, path))
        fh = self._register(handle)
        return pyfuse3.FileInfo(fh=fh, keep_cache=False), self._attrs(inode, info)

    @error_boundary
    async def read(self, fh, off, size):
        handle = self._files[fh]
        if handle.control is not None:
            return (handle.content or b"")[off : off + size]
        path = self.inodes.entry(handle.inode).path
        if handle.stream is not None:
            handle.stream.start(self.fs.nursery())
            return await handle.stream.read(off, size)
        if handle.volatile:
            if handle.content is None:
                if path is None:
                    raise NotFound("file was removed")
                handle.content = await self.fs.fetch_all(path)
            return handle.content[off : off + size]
        writer = handle.writer or self.fs.spool_of(handle.inode)
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
                await self.fs.release_writer(handle.inode, handle.writer)
        finally:
            self.inodes.unpin(handle.inode)
