"""Open files without the kernel: what an open decides, and how each kind of file is read.

The FUSE adapter (``operations``) only decodes the kernel's request and converts the
answer; the policy lives here, where a unit test can drive it with a stub core:

- the open decision (``Opened``): direct I/O for files whose size or reads cannot be
  trusted and for messages under the writeback cache; the kernel's page cache kept only
  for a file unchanged since its pages were read; append mode done here unless the
  writeback cache does it itself;
- one class per kind of open file, each with read/write/flush/release: a control file of
  the mount, a never-ending stream, a volatile file (fetched once per open), a regular
  file (its local writes first, then readahead, then plain ranged reads);
- the control files' texts and commands (``reload``, ``.agfs-stats``, ``.agfs-spools``).

Errors are the project's typed errors; the FUSE boundary turns them into errnos.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from .control_files import CONTROL_INODES, RELOAD, RELOAD_HELP, SPOOLS, STATS, ControlFile
from .errors import (
    AccessRefused,
    InvalidArgument,
    IsADirectory,
    NotFound,
    NotOpenForWriting,
    StaleFile,
)
from .inodes import InodeTable
from .kept_asides import KeptAsides, RenamingCore
from .models import FileInfo
from .readahead import ReadAhead
from .spool import KeptSpool
from .streams import StreamFollower
from .writes import MessageWriter, Writer

PathNow = Callable[[], str | None]
"""A file's current remote path (follows renames; None once unlinked or replaced)."""
Command = Callable[[str], Awaitable[object]]


class FileCore(RenamingCore, Protocol):
    """What open files need of the filesystem core (``AgfsFilesystem``). ``key``
    arguments name a file's pending writes (see ``OpenFiles._file_key``)."""

    def is_volatile(self, path: str, info: FileInfo) -> bool: ...
    def is_stream(self, path: str, info: FileInfo) -> bool: ...
    async def stat(self, path: str, *, fresh: bool = False) -> FileInfo: ...
    async def settled_path(self, path_now: PathNow) -> str | None: ...
    def open_writer(self, key: int, path: str, info: FileInfo, flags: int) -> Writer: ...
    def open_new_file(self, key: int, path: str) -> Writer: ...
    def spool_of(self, key: int) -> Writer | None: ...
    async def truncate(self, key: int, path: str, size: int) -> None: ...
    async def release_writer(self, key: int, writer: Writer) -> None: ...
    def read_ahead(self, path_now: PathNow, info: FileInfo) -> ReadAhead: ...
    def follow_stream(self, path: str) -> StreamFollower: ...
    async def fetch_all(self, path: str) -> bytes: ...
    async def read(self, path: str, offset: int, size: int) -> bytes: ...
    def nursery(self) -> trio.Nursery: ...
    def kept_spools(self) -> list[KeptSpool]: ...
    async def kept_spool_command(self, text: str) -> None: ...
    def snapshot(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class Opened:
    """The answer to an open: the handle number, and how the kernel treats its pages."""

    fh: int
    direct_io: bool = False
    keep_cache: bool = False


@dataclass
class OpenCounters:
    """What ``/.agfs-stats`` reports of opens and writes."""

    opens_kept: int = 0  # opens that kept the kernel's pages of the file
    opens_dropped: int = 0  # opens that dropped them (changed, or never filled)
    write_requests: int = 0  # writes the kernel sent for files (not control files)


class OpenFile:
    """One open handle. A handle of a remote file pins its inode while open."""

    inode: int
    pinned = True

    async def read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    async def write(self, offset: int, data: bytes) -> int:
        raise NotOpenForWriting("not open for writing")

    async def flush(self) -> None:
        """Send what was written (flush, fsync); errors reach the program."""

    async def release(self) -> None:
        """The last close of this handle; errors are logged, never raised."""


class ControlHandle(OpenFile):
    """A control file: its text is made at open, a write is one command (or EBADF)."""

    pinned = False

    def __init__(self, control: ControlFile, content: bytes, command: Command | None) -> None:
        self.inode = control.inode
        self.control = control
        self._content = content
        self._command = command

    async def read(self, offset: int, size: int) -> bytes:
        return self._content[offset : offset + size]

    async def write(self, offset: int, data: bytes) -> int:
        if self._command is None:
            raise NotOpenForWriting(f"{self.control.name} is read-only")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{self.control.name} expects text") from None
        await self._command(text)
        return len(data)


class RemoteFile(OpenFile):
    """A handle of a file on the server: writes go to its writer (if opened for
    writing); reads wait for a rename of it to finish, then go by kind."""

    def __init__(
        self,
        core: FileCore,
        inode: int,
        key: int,
        path_now: PathNow,
        writer: Writer | None,
        *,
        append: bool,
        counters: OpenCounters,
    ) -> None:
        self.inode = inode
        self.writer = writer
        self.append = append
        self._core = core
        self._key = key
        self._path_now = path_now
        self._counters = counters

    async def read(self, offset: int, size: int) -> bytes:
        path = await self._core.settled_path(self._path_now)
        return await self._read(path, offset, size)

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        raise NotImplementedError

    async def write(self, offset: int, data: bytes) -> int:
        if self.writer is None:
            raise NotOpenForWriting("not open for writing")
        self._counters.write_requests += 1
        return await self.writer.write(offset, data, append=self.append)

    async def flush(self) -> None:
        if self.writer is not None:
            await self.writer.flush()

    async def release(self) -> None:
        self._stop_reading()
        if self.writer is not None:
            await self._core.release_writer(self._key, self.writer)

    def _stop_reading(self) -> None:
        """Stop the background work reading does (following, prefetching)."""


class StreamFile(RemoteFile):
    """A never-ending stream: followed from the first read, as far as it has come."""

    def __init__(self, *args: Any, stream: StreamFollower, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stream = stream

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        self._stream.start(self._core.nursery())
        return await self._stream.read(offset, size)

    def _stop_reading(self) -> None:
        self._stream.close()


class VolatileFile(RemoteFile):
    """A file whose size or reads cannot be trusted: one GET of the whole content at the
    first read, every read of this handle served from it."""

    _content: bytes | None = None

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        if self._content is None:
            if path is None:
                raise NotFound("file was removed")
            self._content = await self._core.fetch_all(path)
        return self._content[offset : offset + size]


class RegularFile(RemoteFile):
    """A plain file: what is written locally and not yet uploaded wins, then the bytes
    prefetched for a sequential reader, then a ranged read."""

    def __init__(self, *args: Any, readahead: ReadAhead | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._readahead = readahead

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        writer = self.writer or self._core.spool_of(self._key)
        if writer is not None:
            # What readahead fetched may predate the local changes: it is not used again.
            self._stop_reading()
            local = await writer.read(offset, size)
            if local is not None:
                return local
        if path is None:
            raise NotFound("file was removed")
        if self._readahead is not None:
            return await self._readahead.read(offset, size)
        return await self._core.read(path, offset, size)

    def _stop_reading(self) -> None:
        if self._readahead is not None:
            self._readahead.drop()
            self._readahead = None


class OpenFiles:
    """The open-file table: makes the open and create decisions and answers by handle."""

    def __init__(
        self,
        core: FileCore,
        inodes: InodeTable,
        *,
        reload: Command,
        writeback_cache: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``reload`` runs a text written to ``/reload``; ``writeback_cache``: the kernel
        keeps written pages and does O_APPEND itself; ``clock_ns``: the wall clock."""
        self._core = core
        self._inodes = inodes
        self._reload = reload
        self.writeback_cache = writeback_cache
        self._clock_ns = clock_ns
        self.kept = KeptAsides(core, inodes)
        self.counters = OpenCounters()
        self._files: dict[int, OpenFile] = {}
        self._next_fh = 1

    @staticmethod
    def _file_key(inode: int) -> int:
        """The key that names the file's pending writes in the core: its inode number."""
        return inode

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
            info = await self._core.stat(path, fresh=True)  # after a rename of it, if one runs
            now = self._inodes.entry(inode).path
            if now is None:
                raise StaleFile("replaced by a rename", path=str(inode))
            if now != path:  # renamed, or replaced and kept aside, while the stat waited
                path, info = now, await self._core.stat(now, fresh=True)
            return self.open_existing(inode, path, info, flags)
        finally:
            await self.kept.unpin(inode)

    def open_existing(self, inode: int, path: str, info: FileInfo, flags: int) -> Opened:
        """Open ``path`` (``info``: what the server says of it now) by ``flags``."""
        if info.is_dir:
            raise IsADirectory("is a directory", path=path)
        core = self._core
        key = self._file_key(inode)
        volatile = core.is_volatile(path, info)
        writer = None
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            writer = core.open_writer(key, path, info, flags)
        # Messages (a queue's enqueue, control files) never wait in the writeback cache.
        writeback = self.writeback_cache
        direct = volatile or (writeback and isinstance(writer, MessageWriter))
        # The writeback cache appends itself: the writes it sends carry their offsets.
        append = bool(flags & os.O_APPEND) and (direct or not writeback)

        def path_now() -> str | None:
            return self._inodes.entry(inode).path

        common = (core, inode, key, path_now, writer)
        settings: dict[str, Any] = {"append": append, "counters": self.counters}
        readable = flags & os.O_ACCMODE != os.O_WRONLY
        handle: RemoteFile
        if readable and core.is_stream(path, info):
            handle = StreamFile(*common, stream=core.follow_stream(path), **settings)
        elif volatile:
            handle = VolatileFile(*common, **settings)
        else:
            readahead = core.read_ahead(path_now, info) if readable else None
            handle = RegularFile(*common, readahead=readahead, **settings)
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

    def open_created(self, inode: int, path: str) -> Opened:
        """Open a file this mount just created: empty, nothing to fetch or prefetch."""
        key = self._file_key(inode)
        writer = self._core.open_new_file(key, path)

        def path_now() -> str | None:
            return self._inodes.entry(inode).path

        handle = RegularFile(
            self._core,
            inode,
            key,
            path_now,
            writer,
            readahead=None,
            append=False,
            counters=self.counters,
        )
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
        else:
            assert control is RELOAD
            content, command = RELOAD_HELP, self._reload
        return Opened(self._add(ControlHandle(control, content, command)), direct_io=True)

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
        key = self._file_key(inode)
        await self._core.truncate(key, path, size)
        if self._core.spool_of(key) is not None:
            self._inodes.touched(inode, self._clock_ns())

    def local_size(self, inode: int) -> int | None:
        """The file's size as its open spool sees it, when it knows better than the
        server."""
        spool = self._core.spool_of(self._file_key(inode))
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


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2).encode() + b"\n"
