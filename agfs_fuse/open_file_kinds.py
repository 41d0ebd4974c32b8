"""The kinds of open file, each with read/write/flush/release, without the kernel.

- ``OpenControlFile``: a control file of the mount; its text is made at open, a write is
  one command;
- ``OpenStream``: a never-ending stream, followed from the first read;
- ``OpenVolatileFile``: size or reads untrusted, fetched whole once per open;
- ``OpenRegularFile``: local writes not yet uploaded first, then readahead, then a
  ranged read.

A remote file's kind is chosen at open (``open_files.OpenFiles``) and never changes; so
a read goes to one source, in this precedence: control > stream > volatile > local
writes > readahead > plain read. Errors are the project's typed errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from .async_uploads import Failure
from .control_files import ControlFile
from .errors import InvalidArgument, NotFound, NotOpenForWriting
from .file_key import FileKey
from .kept_asides import RenamingCore
from .models import FileInfo
from .readahead import ReadAhead
from .spool import KeptSpool
from .streams import StreamFollower
from .writes import Writer

PathNow = Callable[[], str | None]
"""A file's current remote path (follows renames; None once unlinked or replaced)."""
Command = Callable[[str], Awaitable[object]]


class FileCore(RenamingCore, Protocol):
    """What open files need of the filesystem core (``AgfsFilesystem``). ``key``
    arguments name a file's pending writes (see ``OpenFiles.file_key``)."""

    def new_file_key(self, path: str | None = None) -> FileKey: ...
    async def upload_settled(self, path: str) -> None: ...
    async def fsync_file(self, writer: Writer | None, path: str | None) -> None: ...
    async def sync_all(self) -> list[Failure]: ...
    def is_volatile(self, path: str, info: FileInfo) -> bool: ...
    def is_stream(self, path: str, info: FileInfo) -> bool: ...
    async def stat(self, path: str, *, fresh: bool = False) -> FileInfo: ...
    async def settled_path(self, path_now: PathNow) -> str | None: ...
    def open_writer(self, key: FileKey, path: str, info: FileInfo, flags: int) -> Writer: ...
    def open_new_file(self, key: FileKey, path: str, mode: int = ...) -> Writer: ...
    def spool_of(self, key: FileKey) -> Writer | None: ...
    async def truncate(self, key: FileKey, path: str, size: int) -> None: ...
    async def release_writer(self, key: FileKey, writer: Writer) -> None: ...
    def read_ahead(self, path_now: PathNow, info: FileInfo) -> ReadAhead: ...
    def follow_stream(self, path: str) -> StreamFollower: ...
    async def fetch_all(self, path: str) -> bytes: ...
    async def read(self, path: str, offset: int, size: int) -> bytes: ...
    def nursery(self) -> trio.Nursery: ...
    def kept_spools(self) -> list[KeptSpool]: ...
    async def kept_spool_command(self, text: str) -> None: ...
    def snapshot(self) -> dict[str, object]: ...
    def backends_listing(self) -> bytes: ...


@dataclass
class OpenCounters:
    """What ``/.agfs-stats`` reports of opens and writes."""

    opens_kept: int = 0  # opens that kept the kernel's pages of the file
    opens_dropped: int = 0  # opens that dropped them (changed, or never filled)
    write_requests: int = 0  # writes the kernel sent for files (not control files)


@dataclass(frozen=True)
class FileRef:
    """The remote file a handle is open on: its inode, the key of its pending writes in
    the core, its current path, and the counters the table reports."""

    core: FileCore
    inode: int
    key: FileKey
    path_now: PathNow
    counters: OpenCounters


class OpenFile:
    """A file open on the mount, behind one kernel file handle (fh). An open remote file
    pins its inode while open: a rename that replaces it keeps it aside."""

    inode: int
    pinned = True

    async def read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    async def write(self, offset: int, data: bytes) -> int:
        raise NotOpenForWriting("not open for writing")

    async def flush(self) -> None:
        """Send what was written (a close's flush); errors reach the program."""

    async def fsync(self) -> None:
        """Send what was written now, also in async mode; errors reach the program."""
        await self.flush()

    async def release(self) -> None:
        """The last close of this handle; errors are logged, never raised."""


class OpenControlFile(OpenFile):
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


class OpenRemoteFile(OpenFile):
    """A handle of a file on the server: writes go to its writer (if opened for
    writing); reads wait for a rename of it to finish, then go by kind."""

    def __init__(self, file: FileRef, writer: Writer | None, *, append: bool) -> None:
        self.inode = file.inode
        self.writer = writer
        self.append = append
        self._file = file
        self._core = file.core

    async def read(self, offset: int, size: int) -> bytes:
        path = await self._core.settled_path(self._file.path_now)
        return await self._read(path, offset, size)

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        raise NotImplementedError

    async def write(self, offset: int, data: bytes) -> int:
        if self.writer is None:
            raise NotOpenForWriting("not open for writing")
        self._file.counters.write_requests += 1
        return await self.writer.write(offset, data, append=self.append)

    async def flush(self) -> None:
        if self.writer is not None:
            await self.writer.flush()

    async def fsync(self) -> None:
        # Also on a read-only handle: the file's content may be waiting for its upload.
        writer = self.writer or self._core.spool_of(self._file.key)
        await self._core.fsync_file(writer, self._file.path_now())

    async def release(self) -> None:
        self._stop_reading()
        if self.writer is not None:
            await self._core.release_writer(self._file.key, self.writer)

    def _stop_reading(self) -> None:
        """Stop the background work reading does (following, prefetching)."""


class OpenStream(OpenRemoteFile):
    """A never-ending stream: followed from the first read, as far as it has come."""

    def __init__(
        self, file: FileRef, writer: Writer | None, *, append: bool, stream: StreamFollower
    ) -> None:
        super().__init__(file, writer, append=append)
        self._stream = stream

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        self._stream.start(self._core.nursery())
        return await self._stream.read(offset, size)

    def _stop_reading(self) -> None:
        self._stream.close()


class OpenVolatileFile(OpenRemoteFile):
    """A file whose size or reads cannot be trusted: one GET of the whole content at the
    first read, every read of this handle served from it."""

    _content: bytes | None = None

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        if self._content is None:
            if path is None:
                raise NotFound("file was removed")
            self._content = await self._core.fetch_all(path)
        return self._content[offset : offset + size]


class OpenRegularFile(OpenRemoteFile):
    """A plain file: what is written locally and not yet uploaded wins, then the bytes
    prefetched for a sequential reader, then a ranged read."""

    def __init__(
        self, file: FileRef, writer: Writer | None, *, append: bool, readahead: ReadAhead | None
    ) -> None:
        super().__init__(file, writer, append=append)
        self._readahead = readahead

    async def _read(self, path: str | None, offset: int, size: int) -> bytes:
        writer = self.writer or self._core.spool_of(self._file.key)
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
