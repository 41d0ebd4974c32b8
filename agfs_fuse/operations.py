"""The pyfuse3 ``Operations`` class: decodes kernel calls, calls the core, converts answers.

Each handler decodes names, resolves inodes to remote paths, calls one method of the
filesystem core (``AgfsFilesystem``) or of the open-file table (``OpenFiles``), and
converts the answer into pyfuse3's types (``fuse_entries``). One error boundary wraps
every handler (``fuse_boundary``): pyfuse3 only understands ``FUSEError``, and any other
exception would kill the session and leave a dead mount.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
from dataclasses import dataclass

import pyfuse3
import trio

from . import paths
from .control_files import (
    CONTROL_INODES,
    ControlFile,
    check_control_setattr,
    control_create_refused,
    control_named,
)
from .errors import (
    AgfsError,
    InvalidArgument,
    NotFound,
    NotPermitted,
    RequestTimeout,
    ServerUnreachable,
)
from .filesystem import AgfsFilesystem
from .fuse_attrs import AttrPolicy, file_info, filesystem_statistics, negative_entry, synthetic_info
from .fuse_boundary import error_boundary
from .fuse_entries import Entries, Listing
from .inodes import ROOT_INODE, InodeTable
from .open_files import OpenFiles


@dataclass
class OpenDir:
    path: str
    entries: Listing


class AgfsOperations(pyfuse3.Operations):
    """Kernel requests in, filesystem-core and open-file calls out."""

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
        self.files = OpenFiles(
            fs,
            inodes,
            reload=self.reload,
            reload_backend=self.reload_backend,
            mounts=self.change_backends,
            writeback_cache=writeback_cache,
        )
        self.entries = Entries(inodes, policy, fs, self.files.local_size)
        self._dirs: dict[int, OpenDir] = {}
        self._dir_fhs = itertools.count(1)
        self.kernel_ready = trio.Event()

    def init(self) -> None:
        """FUSE's INIT: pyfuse3 calls this while handling it and sends the answer as soon
        as it returns, before any other task runs; a task woken by ``kernel_ready`` finds
        the kernel serving the mount. The mount never asks its own mountpoint to find
        that out: a request from this process to itself, in flight when a SIGKILL comes,
        waits for an answer no one will give, and the process can never exit."""
        self.kernel_ready.set()

    def _child_path(self, parent_inode: int, name: bytes) -> str:
        return self.fs.child_path(self.inodes.path(parent_inode), paths.decode_name(name))

    def _control(self, parent_inode: int, name: bytes) -> ControlFile | None:
        parent = self.inodes.entry(parent_inode).path
        return control_named(parent_inode, name.decode("utf-8", "replace"), parent)

    async def reload(self, text: str) -> None:
        """``/reload`` and SIGHUP: swap the client, then make the kernel forget what it knew.

        The kernel's cached attributes and pages belong to the old connection (or the old
        server); without this a switched mount would show the new file cut to the old size.
        """
        await self.fs.reload(text)
        await trio.to_thread.run_sync(self._invalidate_kernel_caches)

    async def reload_backend(self, prefix: str, text: str) -> None:
        """A backend's ``reload`` in a federated mount: as ``reload``, for that backend."""
        await self.fs.reload_backend(prefix, text)
        await trio.to_thread.run_sync(self._invalidate_kernel_caches)

    async def change_backends(self, text: str) -> None:
        """``.mounts``: a backend mounted or unmounted; the kernel forgets what it knew of
        its name (a negative entry, or the removed backend's whole tree)."""
        prefix = await self.fs.change_backends(text)
        self.inodes.detach_tree(prefix)
        await trio.to_thread.run_sync(self._invalidate_kernel_caches)
        with contextlib.suppress(OSError):
            await trio.to_thread.run_sync(pyfuse3.invalidate_entry, ROOT_INODE, prefix[1:].encode())

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
            return self.entries.control(control)
        parent = self.inodes.path(parent_inode)
        path = await self.fs.lookup_path(parent, paths.decode_name(name))
        try:
            info = await self.fs.stat(path)
        except NotFound:
            timeouts = self.policy.timeouts(path)
            if timeouts.negative > 0:
                return negative_entry(timeouts)
            raise
        return self.entries.found(path, info)

    @error_boundary
    async def getattr(self, inode, ctx=None):
        if inode in CONTROL_INODES:
            return self.entries.control(CONTROL_INODES[inode])
        entry = self.inodes.entry(inode)
        try:
            # The path once no rename changes it: a replaced file's attributes stay its own.
            path = await self.fs.settled_path(lambda: entry.path)
            # None: unlinked (or replaced) but still open, shown as it was last.
            info = entry.info if path is None else await self.fs.stat(path)
        except (ServerUnreachable, RequestTimeout):
            if inode != ROOT_INODE or entry.info is None:
                raise
            # The mountpoint itself stays a directory while the server is away, so that
            # `df`, `cd` and mount checks work; everything inside reports the error.
            info = entry.info
        if info is None:
            raise NotFound("file was removed", path=str(inode))
        return self.entries.of(inode, info)

    @error_boundary
    async def setattr(self, inode, attr, fields, fh, ctx):
        if inode in CONTROL_INODES:
            check_control_setattr(fields)
            return self.entries.control(CONTROL_INODES[inode])
        path = self.inodes.path(inode)
        if fields.update_size:
            await self.files.truncate(inode, path, attr.st_size)
        if fields.update_mode:
            await self.fs.chmod(path, stat.S_IMODE(attr.st_mode))
        # Cached attributes will do (an untar sets mode, owner and times of every file):
        # what changed here dropped or updated them, and they are never over a TTL old.
        info = await self.fs.stat(path)
        self.entries.set_locally(inode, info, attr, fields)
        return self.entries.of(inode, info)

    @error_boundary
    async def forget(self, inode_list):
        for inode, count in inode_list:
            self.inodes.forget(inode, count)

    @error_boundary
    async def statfs(self, ctx):
        return filesystem_statistics()

    @error_boundary
    async def access(self, inode, mode, ctx):
        return True

    # -- directories ----------------------------------------------------------------

    @error_boundary
    async def opendir(self, inode, ctx):
        path = self.inodes.path(inode)
        entries = self.entries.shown(inode, path, await self.fs.entries_for_reading(path))
        if self.entries.listed(inode, entries):
            await trio.to_thread.run_sync(_forget_kernel_attrs, inode)
        fh = next(self._dir_fhs)
        self._dirs[fh] = OpenDir(path, entries)
        return fh

    @error_boundary
    async def readdir(self, fh, start_id, token):
        listing = self._dirs[fh]
        for index in range(start_id, len(listing.entries)):
            name, info = listing.entries[index]
            if isinstance(info, ControlFile):
                control = self.entries.control(info)
                if not pyfuse3.readdir_reply(token, name.encode(), control, index + 1):
                    return
                continue
            child = paths.join(listing.path, info.name)  # the real name behind an escaped one
            inode = self.inodes.ensure(child)
            if pyfuse3.readdir_reply(token, name.encode(), self.entries.of(inode, info), index + 1):
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
        self.entries.changed(parent_inode, subdirs=1)
        info = synthetic_info(paths.split(path)[1], perm=stat.S_IMODE(mode), is_dir=True)
        return self.entries.made(path, info, ctx)

    @error_boundary
    async def rmdir(self, parent_inode, name, ctx):
        path = self._child_path(parent_inode, name)
        await self.fs.rmdir(path)
        self.inodes.detach_tree(path)
        self.entries.changed(parent_inode, subdirs=-1)

    # -- names ----------------------------------------------------------------------

    @error_boundary
    async def unlink(self, parent_inode, name, ctx):
        if self._control(parent_inode, name):
            raise NotPermitted("a control file of the mount")
        path = self._child_path(parent_inode, name)
        await self.fs.unlink(path)
        self.inodes.detach(path)
        self.entries.changed(parent_inode)

    @error_boundary
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if self._control(parent_inode_old, name_old) or self._control(parent_inode_new, name_new):
            raise NotPermitted("a control file of the mount")
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise InvalidArgument("RENAME_EXCHANGE is not supported by AGFS")
        old = self._child_path(parent_inode_old, name_old)
        new = self._child_path(parent_inode_new, name_new)
        await self.files.kept.rename(old, new, noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE))
        for parent in {parent_inode_old, parent_inode_new}:
            self.entries.changed(parent, subdirs=None)

    @error_boundary
    async def symlink(self, parent_inode, name, target, ctx):
        path = self._child_path(parent_inode, name)
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("symlink target is not valid UTF-8", path=path) from None
        await self.fs.symlink(text, path)
        self.entries.changed(parent_inode)
        info = synthetic_info(paths.split(path)[1], perm=0o777, is_symlink=True, size=len(target))
        return self.entries.made(path, info, ctx)

    @error_boundary
    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise NotPermitted("AGFS has no hard links")

    @error_boundary
    async def readlink(self, inode, ctx):
        return (await self.fs.readlink(self.inodes.path(inode))).encode("utf-8")

    # -- files ----------------------------------------------------------------------

    @error_boundary
    async def open(self, inode, flags, ctx):
        return file_info(await self.files.open(inode, flags))

    @error_boundary
    async def create(self, parent_inode, name, mode, flags, ctx):
        if self._control(parent_inode, name):
            raise control_create_refused(flags)
        path = self._child_path(parent_inode, name)
        try:
            await self.fs.create(
                path,
                stat.S_IMODE(mode),
                exclusive=bool(flags & os.O_EXCL),
                keeps_content=not flags & os.O_TRUNC,
            )
        except AgfsError as exc:
            if exc.errno != errno.EEXIST or flags & os.O_EXCL:
                raise
            info = await self.fs.stat(path, fresh=True)  # lost a race: open what is there
            inode = self.inodes.ref(path)
            opened = self.files.open_existing(inode, path, info, flags)
            return file_info(opened), self.entries.of(inode, info)
        self.entries.changed(parent_inode)
        info = synthetic_info(paths.split(path)[1], perm=stat.S_IMODE(mode))
        inode = self.inodes.ref(path)
        self.entries.created(inode, ctx)
        opened = self.files.open_created(inode, path, stat.S_IMODE(mode))
        return file_info(opened), self.entries.of(inode, info, synthetic=True)

    @error_boundary
    async def read(self, fh, off, size):
        return await self.files.read(fh, off, size)

    @error_boundary
    async def write(self, fh, off, buf):
        return await self.files.write(fh, off, bytes(buf))

    @error_boundary
    async def flush(self, fh):
        await self.files.flush(fh)

    @error_boundary
    async def fsync(self, fh, datasync):
        await self.files.fsync(fh)

    @error_boundary
    async def release(self, fh):
        await self.files.release(fh)


def _forget_kernel_attrs(inode: int) -> None:
    """Make the kernel ask for ``inode``'s attributes again (in a thread: the kernel
    may block the notification while it handles a request)."""
    with contextlib.suppress(OSError):
        pyfuse3.invalidate_inode(inode, attr_only=True)
