"""What every plugin filesystem offers, in the shape of the Go ``filesystem`` package.

Paths given to a plugin are relative to its mount point and already normalised (the
``relPath`` of Go's ``MountableFS.findMount``); error messages embed them as they are.
Optional Go interfaces (``HandleFS``, ``Streamer``, ``Truncater``) are class flags.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agfs_fuse.server.errors import FsError, GoEOF
from agfs_fuse.server.gojson import rfc3339nano

Bytes = bytes | bytearray | memoryview

# AGFS open flags (filesystem.OpenFlag): not the Linux values.
O_RDONLY = 0
O_WRONLY = 1
O_RDWR = 2
O_APPEND = 8
O_CREATE = 16
O_EXCL = 32
O_TRUNC = 64
O_ACCMODE = 3


def go_int64(value: int) -> int:
    """``value`` as Go's ``int64`` arithmetic leaves it: wrapped around on overflow.

    A handle's seek adds client offsets to its position in Go without overflow checks,
    so ``MaxInt64 + 1`` becomes negative and is refused ("negative position"); Python's
    unbounded ints would accept a position no Go client can hold.
    """
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


def now_ns() -> int:
    """``time.Now()`` in nanoseconds."""
    return time.time_ns()


class FileInfo:
    """``filesystem.FileInfo``; ``as_json`` gives the wire form with capitalised meta keys."""

    __slots__ = ("name", "size", "mode", "mtime_ns", "is_dir", "meta_name", "meta_type", "content")

    def __init__(
        self,
        name: str,
        size: int,
        mode: int,
        mtime_ns: int,
        is_dir: bool,
        meta_name: str = "",
        meta_type: str = "",
        content: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.size = size
        self.mode = mode
        self.mtime_ns = mtime_ns
        self.is_dir = is_dir
        self.meta_name = meta_name
        self.meta_type = meta_type
        self.content = content

    def as_json(self) -> dict[str, Any]:
        """The ``FileInfoResponse`` object (Go map keys are emitted sorted)."""
        content = dict(sorted(self.content.items())) if self.content else None
        return {
            "name": self.name,
            "size": self.size,
            "mode": self.mode & 0xFFFFFFFF,
            "modTime": rfc3339nano(self.mtime_ns),
            "isDir": self.is_dir,
            "meta": {"Name": self.meta_name, "Type": self.meta_type, "Content": content},
        }


@dataclass
class FileRange:
    """A byte range of an open local file, sent with ``sendfile`` instead of being read.

    Only ``GET /files`` on localfs asks for it (``allow_range=True``), so big reads cost no
    copies. The receiver owns ``fd`` and must call ``close``.
    """

    fd: int
    offset: int
    length: int

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read_all(self) -> bytes:
        """Read the whole range into memory (for callers that need the bytes)."""
        try:
            return os.pread(self.fd, self.length, self.offset)
        finally:
            self.close()


class FileHandle:
    """A plugin-level open file (Go ``filesystem.FileHandle``)."""

    path: str
    flags: int

    def read(self, size: int) -> Bytes:
        """Read up to ``size`` bytes at the current position (empty at EOF)."""
        raise NotImplementedError

    def read_at(self, size: int, offset: int) -> Bytes:
        """pread: up to ``size`` bytes at ``offset``."""
        raise NotImplementedError

    def read_piece(self, size: int) -> tuple[Bytes, bool]:
        """One read of ``GET /handles/{id}/stream``: (data, eof).

        Empty data without EOF means "nothing yet" (a streamfs handle following a live
        stream): the route then checks that the client is still there and reads again.
        """
        data = self.read(size)
        return data, not len(data)

    def write(self, data: Bytes) -> int:
        """Write at the current position; returns the count."""
        raise NotImplementedError

    def write_at(self, data: Bytes, offset: int) -> int:
        """pwrite at ``offset``; returns the count."""
        raise NotImplementedError

    def seek(self, offset: int, whence: int) -> int:
        """Move the position; returns the new one."""
        raise NotImplementedError

    def sync(self) -> None:
        """Flush (a no-op for in-memory plugins)."""

    def stat(self) -> FileInfo:
        """Stat the file behind the handle."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the handle."""


class FileSystem:
    """A mounted plugin's filesystem; every method may raise ``FsError``."""

    #: Implements ``filesystem.HandleFS`` (else open answers 501).
    supports_handles = False
    #: Implements ``filesystem.Streamer`` (else ``stream=true`` answers 404).
    supports_stream = False
    #: Implements ``filesystem.Truncater``.
    supports_truncate = True
    #: Go's ``Read`` of a whole file returns ``io.EOF`` with the data (memfs, localfs):
    #: touch's read-back then fails. proxyfs returns no EOF, so touch rewrites the file.
    reads_report_eof = True

    def create(self, path: str) -> None:
        """POST /files: create an empty file."""
        raise NotImplementedError

    def mkdir(self, path: str, perm: int) -> None:
        """POST /directories."""
        raise NotImplementedError

    def remove(self, path: str) -> None:
        """DELETE of a file or an empty directory."""
        raise NotImplementedError

    def remove_all(self, path: str) -> None:
        """DELETE with ``recursive=true``."""
        raise NotImplementedError

    def read(
        self, path: str, offset: int, size: int, allow_range: bool = False
    ) -> Bytes | FileRange:
        """Ranged read (``size`` < 0 = to the end); past EOF gives a short/empty result."""
        raise NotImplementedError

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        """Write the whole content, creating the file (``truncate=False``: touch's create)."""
        raise NotImplementedError

    def read_dir(self, path: str) -> list[FileInfo]:
        """List a directory."""
        raise NotImplementedError

    def stat(self, path: str) -> FileInfo:
        """Stat one path."""
        raise NotImplementedError

    def rename(self, old: str, new: str) -> None:
        """Rename within this filesystem."""
        raise NotImplementedError

    def chmod(self, path: str, mode: int) -> None:
        """Change permission bits."""
        raise NotImplementedError

    def truncate(self, path: str, size: int) -> None:
        """Set the size (only when ``supports_truncate``)."""
        raise NotImplementedError

    def open_reader(self, path: str) -> Iterator[Bytes]:
        """Go's ``Open`` (used by /digest): yields the content in pieces.

        The default mirrors memfs/queuefs, whose ``Open`` reads the whole file through
        ``Read`` and then fails, because ``Read`` reports ``io.EOF`` on every full read.
        """
        self.read(path, 0, -1)
        raise GoEOF()

    def open_stream(self, path: str) -> Iterator[Bytes]:
        """``stream=true`` reads (only when ``supports_stream``)."""
        raise FsError(f"filesystem does not support streaming: {path}")

    def open_handle(self, path: str, flags: int, mode: int) -> FileHandle:
        """Open a handle (only when ``supports_handles``)."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """The server is stopping: release anything that blocks (streamfs readers)."""
