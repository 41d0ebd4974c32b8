"""The open-file table: what an open decides, without the kernel.

The FUSE adapter (``operations``) only decodes the kernel's request and converts the
answer; the policy lives here, where a unit test can drive it with a stub core:

- the open decision (``Opened``): direct I/O for files whose size or reads cannot be
  trusted and for messages under the writeback cache; the kernel's page cache kept only
  for a file unchanged since its pages were read; append mode done here unless the
  writeback cache does it itself;
- which kind of open file (``open_file_kinds``) serves the handle's reads and writes;
- the control files' texts and commands (``reload``, ``.agfs-stats``, ``.agfs-spools``,
  ``.agfs-sync``; in a federated mount ``.mounts`` and each backend's ``reload``);
- the counters ``/.agfs-stats`` reports.

Errors are the project's typed errors; the FUSE boundary turns them into errnos.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .control_files import (
    CONTROL_INODES,
    MOUNTS,
    RELOAD,
    RELOAD_HELP,
    SPOOLS,
    STATS,
    SYNC,
    ControlFile,
)
from .errors import AccessRefused, IsADirectory, NotFound, StaleFile, UploadsFailed
from .file_key import FileKey
from .inodes import InodeTable
from .kept_asides import KeptAsides
from .models import FileInfo
from .open_file_kinds import (
    Command,
    FileCore,
    FileRef,
    OpenControlFile,
    OpenCounters,
    OpenFile,
    OpenRegularFile,
    OpenRemoteFile,
    OpenStream,
    OpenVolatileFile,
)
from .writes import DEFAULT_NEW_FILE_MODE, MessageWriter

SYNC_HELP = (
    b"agfs-fuse control file: a write returns once every pending upload has been sent"
    b" (EIO if any failed; see .agfs-stats); use: agfs-fuse sync MOUNTPOINT\n"
)
BackendCommand = Callable[[str, str], Awaitable[object]]
"""Runs a text written to the ``reload`` of the backend at the first argument."""


@dataclass(frozen=True)
class Opened:
    """The answer to an open: the handle number, and how the kernel treats its pages."""

    fh: int
    direct_io: bool = False
    keep_cache: bool = False


class OpenFiles:
    """The open-file table: makes the open and create decisions and answers by handle."""

    def __init__(
        self,
        core: FileCore,
        inodes: InodeTable,
        *,
        reload: Command,
        reload_backend: BackendCommand | None = None,
        mounts: Command | None = None,
        writeback_cache: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``reload`` runs a text written to ``/reload``; in a federated mount,
        ``reload_backend`` one written to a backend's ``reload`` and ``mounts`` one written
        to ``/.mounts``; ``writeback_cache``: the kernel keeps written pages and does
        O_APPEND itself; ``clock_ns``: the wall clock."""
        self._core = core
        self._inodes = inodes
        self._reload = reload
        self._reload_backend = reload_backend
        self._mounts = mounts
        self.writeback_cache = writeback_cache
        self._clock_ns = clock_ns
        self.kept = KeptAsides(core, inodes)
        self.counters = OpenCounters()
        self._files: dict[int, OpenFile] = {}
        self._next_fh = 1

    def file_key(self, inode: int) -> FileKey:
        """The key that names the file's pending writes in the core: minted by the core
        the first time it is asked for, kept on the inode's entry, and held by the
        pending writes themselves, so it outlives renames, unlinks and the kernel's
        forget of the inode."""
        entry = self._inodes.entry(inode)
        if entry.file_key is None:
            # A spool waiting for its background upload keeps its key (``new_file_key``).
            entry.file_key = self._core.new_file_key(entry.path)
        return entry.file_key

    def _file_ref(self, inode: int) -> FileRef:
        def path_now() -> str | None:
            return self._inodes.entry(inode).path

        return FileRef(self._core, inode, self.file_key(inode), path_now, self.counters)

    # -- opening --------------------------------------------------------------------

    async def open(self, inode: int, flags: int) -> Opened:
        """Open an existing file (or control file) by inode."""
        control = CONTROL_INODES.get(inode)
        if control is not None:
            return self._open_control(control, flags)
        path = self._inodes.entry(inode).path
        if path is None:
            # A rename replaced this inode's file (the kernel found it in its dentry cache,
            # a moment old). ESTALE makes the kernel look the name up again and open what
            # is there now, as the program asked.
            raise StaleFile("replaced by a rename", path=str(inode))
        self.kept.pin(inode)  # a rename that replaces it meanwhile keeps it for us
        try:
            # A reader goes by attributes younger than attr_timeout (close-to-open within
            # that timeout, as for every other attribute): what this mount changed dropped
            # them, and a listing or stat that recent decides keep_cache as well as a stat
            # now would. A writer asks the server: its spool's base is what the server
            # holds now. The stat waits for a rename of the file, if one runs.
            fresh = _writes(flags)
            info = await self._core.stat(path, fresh=fresh)
            now = self._inodes.entry(inode).path
            if now is None:
                raise StaleFile("replaced by a rename", path=str(inode))
            if now != path:  # renamed, or replaced and kept aside, while the stat waited
                path, info = now, await self._core.stat(now, fresh=fresh)
            if fresh:
                # A background upload reading the spool this open may change (O_TRUNC)
                # ends first; once the handle is open, none starts.
                await self._core.upload_settled(path)
                if self._inodes.entry(inode).path != path:
                    raise StaleFile("renamed while opening", path=str(inode))
            return self.open_existing(inode, path, info, flags)
        finally:
            await self.kept.unpin(inode)

    def open_existing(self, inode: int, path: str, info: FileInfo, flags: int) -> Opened:
        """Open ``path`` (``info``: what the server says of it now) by ``flags``."""
        if info.is_dir:
            raise IsADirectory("is a directory", path=path)
        core = self._core
        file = self._file_ref(inode)
        volatile = core.is_volatile(path, info)
        writer = None
        if _writes(flags):
            writer = core.open_writer(file.key, path, info, flags)
        # Messages (a queue's enqueue, control files) never wait in the writeback cache.
        writeback = self.writeback_cache
        direct = volatile or (writeback and isinstance(writer, MessageWriter))
        # The writeback cache appends itself: the writes it sends carry their offsets.
        append = bool(flags & os.O_APPEND) and (direct or not writeback)
        readable = flags & os.O_ACCMODE != os.O_WRONLY
        handle: OpenRemoteFile
        if readable and core.is_stream(path, info):
            handle = OpenStream(file, writer, append=append, stream=core.follow_stream(path))
        elif volatile:
            handle = OpenVolatileFile(file, writer, append=append)
        else:
            readahead = core.read_ahead(file.path_now, info) if readable else None
            handle = OpenRegularFile(file, writer, append=append, readahead=readahead)
        fh = self._register(handle)
        return Opened(fh, direct_io=direct, keep_cache=self._keeps_cache(inode, info, volatile))

    def _keeps_cache(self, inode: int, info: FileInfo, volatile: bool) -> bool:
        """Keep the kernel's pages only when the file is unchanged since they were read:
        same size and mtime as then, and an mtime that means something (0 does not)."""
        entry = self._inodes.entry(inode)
        basis = (info.size, info.mtime_ns)
        keep = not volatile and entry.cached == basis and info.mtime_ns != 0
        entry.cached = None if volatile else basis
        if keep:
            self.counters.opens_kept += 1
        elif not volatile:
            self.counters.opens_dropped += 1
        return keep

    def open_created(self, inode: int, path: str, mode: int = DEFAULT_NEW_FILE_MODE) -> Opened:
        """Open a file this mount just created with ``mode``: empty, nothing to fetch or
        prefetch, and on the server only once its first upload is done."""
        file = self._file_ref(inode)
        writer = self._core.open_new_file(file.key, path, mode)
        handle = OpenRegularFile(file, writer, append=False, readahead=None)
        return Opened(self._register(handle))

    def _open_control(self, control: ControlFile, flags: int) -> Opened:
        command: Command | None
        if control is STATS:
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise AccessRefused(f"{control.name} is read-only")
            content, command = _json(self.snapshot()), None
        elif control is SPOOLS:
            kept = [spool.describe() for spool in self._core.kept_spools()]
            content, command = _json(kept), self._core.kept_spool_command
        elif control is SYNC:
            content, command = SYNC_HELP, self._sync
        elif control is MOUNTS:
            if self._mounts is None:
                raise NotFound(f"{control.name} exists in a federated mount only")
            content, command = self._core.backends_listing(), self._mounts
        elif control.backend is not None:
            if self._reload_backend is None:
                raise NotFound("a backend's reload exists in a federated mount only")
            content, command = RELOAD_HELP, functools.partial(self._reload_backend, control.backend)
        else:
            assert control is RELOAD
            content, command = RELOAD_HELP, self._reload
        return Opened(self._add(OpenControlFile(control, content, command)), direct_io=True)

    def _register(self, handle: OpenFile) -> int:
        self.kept.pin(handle.inode)
        return self._add(handle)

    def _add(self, handle: OpenFile) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._files[fh] = handle
        return fh

    # -- by handle ------------------------------------------------------------------

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        return await self._files[fh].read(offset, size)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        return await self._files[fh].write(offset, data)

    async def flush(self, fh: int) -> None:
        handle = self._files.get(fh)
        if handle is not None:
            await handle.flush()

    async def fsync(self, fh: int) -> None:
        """Upload what the handle's file holds now, in any mode; errors reach the program."""
        handle = self._files.get(fh)
        if handle is not None:
            await handle.fsync()

    async def _sync(self, text: str) -> None:
        """A write to ``/.agfs-sync``: returns once every pending upload has been sent;
        EIO when any failed (``.agfs-stats`` says which, ``agfs-fuse sync`` prints them)."""
        failures = await self._core.sync_all()
        if failures:
            lines = "; ".join(failure.line() for failure in failures)
            raise UploadsFailed(f"{len(failures)} upload(s) failed: {lines}")

    async def release(self, fh: int) -> None:
        handle = self._files.pop(fh, None)
        if handle is None or not handle.pinned:
            return
        try:
            await handle.release()
        finally:
            await self.kept.unpin(handle.inode)

    # -- by inode -------------------------------------------------------------------

    async def truncate(self, inode: int, path: str, size: int) -> None:
        """Set a file's size; an open file's new size is uploaded at its close, and until
        then its mtime and ctime are now."""
        key = self.file_key(inode)
        await self._core.truncate(key, path, size)
        if self._core.spool_of(key) is not None:
            self._inodes.touched(inode, self._clock_ns())

    def local_size(self, inode: int) -> int | None:
        """The file's size as its open spool sees it, when it knows better than the
        server."""
        key = self._inodes.entry(inode).file_key
        if key is None:  # never opened for writing: nothing pending (and no key to mint)
            return None
        spool = self._core.spool_of(key)
        return spool.local_size() if spool is not None else None

    def snapshot(self) -> dict[str, Any]:
        """The mount's numbers for ``/.agfs-stats``."""
        return {
            **self._core.snapshot(),
            "root": self._inodes.root_path,
            "open_files": sum(1 for handle in self._files.values() if handle.pinned),
            "known_inodes": len(self._inodes),
            "page_cache": {
                "opens_kept": self.counters.opens_kept,
                "opens_dropped": self.counters.opens_dropped,
                "writeback": self.writeback_cache,
            },
            "write_requests": self.counters.write_requests,
        }


def _writes(flags: int) -> bool:
    """Whether an open with ``flags`` may change the file (a write mode, or O_TRUNC)."""
    return flags & os.O_ACCMODE != os.O_RDONLY or bool(flags & os.O_TRUNC)


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2).encode() + b"\n"
