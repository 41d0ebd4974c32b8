"""Write strategies: how the bytes written to an open file travel to the server.

AGFS's ``PUT /files`` replaces a whole file, so the strategy is chosen per file:

- ``SpoolWriter`` (regular files): the whole new content lives in a spool on local disk,
  shared by every handle of the file, filled from the server first when an existing file
  is changed in place, and uploaded with one streamed PUT at flush/fsync/release.
- ``MessageWriter`` (write-only and control files, e.g. a queue's ``enqueue``): per handle,
  never filled; the bytes written since the last flush go as one PUT, so one ``echo`` is
  one message.

A third strategy (the handle API) slots in behind the same ``Writer`` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from .client import AgfsClient
from .errors import AgfsError
from .models import FileInfo
from .spool import Spool, SpoolDir, SpoolMeta, now

log = logging.getLogger(__name__)


class Writer(Protocol):
    """What a file handle needs from its write strategy."""

    path: str

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int: ...

    async def read(self, offset: int, size: int) -> bytes | None:
        """Local bytes when the strategy holds the authoritative content, else None."""

    async def truncate(self, size: int) -> None: ...

    async def flush(self) -> None:
        """Send what was written; raises a typed error when the server refused it."""

    async def close(self) -> None:
        """The last handle using this writer is gone: send what is left."""

    def retarget(self, path: str) -> None:
        """The file was renamed."""

    def local_size(self) -> int | None:
        """The file's size as the writer sees it, when it knows better than the server."""


class SpoolWriter:
    """The spool strategy: one instance per open remote file, shared by its handles."""

    def __init__(
        self,
        client: Callable[[], AgfsClient],
        spool_dir: SpoolDir,
        path: str,
        base: FileInfo | None,
        server_url: str,
    ) -> None:
        self._client = client
        self.path = path
        self.spool: Spool = spool_dir.new_spool(
            SpoolMeta(
                remote_path=path,
                server_url=server_url,
                base_size=base.size if base else None,
                base_mtime_ns=base.mtime_ns if base else None,
                created=now(),
            )
        )
        self.users = 0
        self.filled = base is None  # a brand-new file has nothing to fetch
        self.dirty = False
        self.unlinked = False
        self._lock = trio.Lock()
        self._version = 0  # bumped by every change, to know whether a retry can differ
        self._failed_version: int | None = None

    def start_empty(self) -> None:
        """O_TRUNC or a new file: the content is empty, whatever the server holds."""
        self.spool.truncate(0)
        self.filled = True
        self.dirty = True
        self._version += 1

    async def _ensure_filled(self) -> None:
        if self.filled:
            return
        self.spool.truncate(0)
        await self._client().read_into(self.path, self.spool.append)
        self.filled = True

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        async with self._lock:
            await self._ensure_filled()
            if append:  # the kernel's idea of the end of file may be stale
                offset = self.spool.size
            written = self.spool.pwrite(offset, data)
            self.dirty = True
            self._version += 1
            return written

    async def read(self, offset: int, size: int) -> bytes | None:
        if not self.filled:
            return None
        return self.spool.pread(offset, size)

    async def truncate(self, size: int) -> None:
        async with self._lock:
            if size == 0:
                self.filled = True
            else:
                await self._ensure_filled()
            self.spool.truncate(size)
            self.dirty = True
            self._version += 1

    def local_size(self) -> int | None:
        return self.spool.size if self.filled else None

    def retarget(self, path: str) -> None:
        self.path = path
        self.spool.retarget(path)

    async def flush(self) -> None:
        async with self._lock:
            if not self.dirty or self.unlinked:
                return
            version = self._version
            try:
                await self._client().write_from(self.path, self.spool, self.spool.size)
            except AgfsError as exc:
                self._failed_version = version
                path = self.spool.data_path
                log.error(
                    "upload of %s failed (%s); its content is kept in %s", self.path, exc, path
                )
                raise
            self.dirty = False

    async def close(self) -> None:
        """Last handle gone: upload if needed; keep the spool on disk if that fails.

        An upload that already failed for exactly this content is not repeated here: the
        program saw the error at close(), and a 413 or a dead server will not change in
        the moment between flush and release.
        """
        if self.dirty and not self.unlinked and self._failed_version == self._version:
            self.spool.keep()
            return
        try:
            await self.flush()
        except AgfsError:
            self.spool.keep()
            raise
        self.spool.discard()


class MessageWriter:
    """The message strategy: per handle; each flush sends what was written since the last."""

    def __init__(self, client: Callable[[], AgfsClient], path: str) -> None:
        self._client = client
        self.path = path
        self._buffer = bytearray()

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        self._buffer += data
        return len(data)

    async def read(self, offset: int, size: int) -> bytes | None:
        return None

    async def truncate(self, size: int) -> None:
        """Truncating a control file means nothing; ``echo x > enqueue`` sends O_TRUNC."""

    def local_size(self) -> int | None:
        return None

    def retarget(self, path: str) -> None:
        self.path = path

    async def flush(self) -> None:
        if not self._buffer:
            return
        message = bytes(self._buffer)
        self._buffer.clear()
        try:
            await self._client().write(self.path, message)
        except AgfsError:
            self._buffer[:0] = message  # keep it for the retry at release
            raise

    async def close(self) -> None:
        await self.flush()
