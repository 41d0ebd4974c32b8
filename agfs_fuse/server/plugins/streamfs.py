"""streamfs: append-only broadcast streams, as the real ``pkg/plugins/streamfs``.

Model (faithful to the Go plugin, not to what a tidy stream server would do):

- A stream is a flat name (``/a/b`` is one stream called ``a/b``; there are no
  directories). It is created by its first write, by ``POST /files``, and also by anyone
  who opens it for reading (``stream=true`` or a handle): opening never fails.
- Every write is **one chunk**, whatever its size (an empty write is a chunk too). The
  server keeps the last ``ring`` chunks in a ring buffer; ``ring_buffer_size`` and
  ``channel_buffer_size`` are byte sizes divided by 64 KiB to give chunk counts
  (default 6 MiB = 96 chunks, minimum 1).
- A reader registers, gets the ring's chunks (oldest first, at most ``channel`` of them:
  Go pushes them into the reader's channel without blocking and stops when it is full),
  then every later chunk. A reader whose queue is full (``channel`` chunks not yet taken)
  silently loses new chunks, as a slow Go consumer does.
- Stat ``size`` is the total bytes ever written; meta ``{"Name":"streamfs","Type":
  "stream","Content":{"active_readers":..,"total_written":..}}``; mode 0644; mtime is the
  last write (or creation). A plain read answers 500 ``use stream mode for reading
  stream files``; truncate is a silent no-op; rename/chmod/mkdir fail with Go's texts.
  Deleting a stream ends its readers (their bodies end cleanly) and new writes start a
  fresh stream.
- Handles (``O_WRONLY`` opens no reader; any other flags do) keep a private buffer of what
  they received since they were opened: offsets are positions in that buffer, not in
  the stream. A read with nothing buffered waits up to 30 s for one chunk.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator

from agfs_fuse.server.errors import AbortConnection, FsError
from agfs_fuse.server.plugins.base import (
    O_WRONLY,
    Bytes,
    FileHandle,
    FileInfo,
    FileSystem,
    go_int64,
    now_ns,
)

log = logging.getLogger("agfs_fuse.server.streamfs")

PLUGIN_NAME = "streamfs"
#: How long a handle read waits for a chunk before answering 0 bytes (Go: 30 s).
HANDLE_READ_WAIT = 30.0
#: How often an idle ``stream=true`` reader wakes so the HTTP layer can notice a client
#: that hung up (Go only notices after its 30 s ReadChunk timeout or a failed write).
IDLE_TICK = 0.5
#: Handle read buffer trimming (Go's maxServerStreamBufferSize and its re-read margin).
HANDLE_BUFFER_MAX = 1024 * 1024
HANDLE_TRIM_MARGIN = 64 * 1024

NOT_STREAM_MODE = "use stream mode for reading stream files"

README = """StreamFS - append-only broadcast streams (agfs-fuse reference server)

write /streamfs/s            append one chunk (the first write creates the stream)
GET /files?stream=true       replay what the ring buffer holds, then follow live writes
stat /streamfs/s             size = total bytes ever written, meta Type "stream"
rm /streamfs/s               close the stream: its readers see the end

A plain read fails ("use stream mode"); truncate does nothing; no directories.
Config: ring_buffer_size, channel_buffer_size (e.g. "1MB", 524288; default 6MB),
counted in 64 KiB chunks: every write is one chunk whatever its size.
"""
_README = README.encode()

# -- one stream -------------------------------------------------------------------------


class _Reader:
    """A registered reader: its pending chunks (Go's buffered channel)."""

    __slots__ = ("id", "chunks", "closed", "dropped")

    def __init__(self, reader_id: int) -> None:
        self.id = reader_id
        self.chunks: deque[bytes] = deque()
        self.closed = False
        self.dropped = 0


class StreamFile:
    """A stream: ring buffer, total size and registered readers, behind one condition."""

    def __init__(self, name: str, channel: int, ring: int) -> None:
        self.name = name
        self.channel = channel
        self.cond = threading.Condition()
        self.ring: deque[bytes] = deque(maxlen=ring)
        self.offset = 0
        self.mtime = now_ns()
        self.readers: dict[int, _Reader] = {}
        self.next_reader = 0
        self.closed = False
        self.aborted = False

    def register(self) -> _Reader:
        """A new reader, already holding the ring's chunks (as many as its queue takes)."""
        with self.cond:
            reader = _Reader(self.next_reader)
            self.next_reader += 1
            for chunk in self.ring:
                if len(reader.chunks) >= self.channel:
                    log.warning("[streamfs] reader %d channel full during history", reader.id)
                    break
                reader.chunks.append(chunk)
            if self.closed:
                reader.closed = True  # cannot happen via the plugin: it drops closed streams
            else:
                self.readers[reader.id] = reader
            log.debug(
                "[streamfs] registered reader %d on %s (%d readers, %d history chunks)",
                reader.id,
                self.name,
                len(self.readers),
                len(reader.chunks),
            )
            return reader

    def unregister(self, reader: _Reader) -> None:
        """Forget a reader (it sees what it still holds, then EOF)."""
        with self.cond:
            if self.readers.pop(reader.id, None) is not None:
                reader.closed = True
                self.cond.notify_all()
                log.debug(
                    "[streamfs] unregistered reader %d on %s (dropped %d chunks)",
                    reader.id,
                    self.name,
                    reader.dropped,
                )

    def write(self, data: Bytes) -> None:
        """Append one chunk and hand it to every reader whose queue has room."""
        chunk = bytes(data)
        with self.cond:
            if self.closed:
                raise FsError("stream is closed")
            self.offset += len(chunk)
            self.mtime = now_ns()
            self.ring.append(chunk)
            for reader in self.readers.values():
                if len(reader.chunks) < self.channel:
                    reader.chunks.append(chunk)
                else:
                    reader.dropped += 1
                    log.warning(
                        "[streamfs] reader %d is slow, dropped chunk (total dropped: %d)",
                        reader.id,
                        reader.dropped,
                    )
            self.cond.notify_all()

    def read_chunk(self, reader: _Reader, timeout: float) -> tuple[bytes | None, bool]:
        """Wait up to ``timeout`` for the next chunk: (chunk, eof); (None, False) = timeout.

        Raises ``AbortConnection`` once the server is shutting down.
        """
        with self.cond:
            if not reader.chunks and not reader.closed and not self.aborted:
                self.cond.wait_for(lambda: reader.chunks or reader.closed or self.aborted, timeout)
            if self.aborted:
                raise AbortConnection("server shutting down")
            if reader.chunks:
                return reader.chunks.popleft(), False
            return None, reader.closed

    def take_available(self, reader: _Reader) -> tuple[list[bytes], bool]:
        """Every chunk ready now, without waiting: (chunks, eof)."""
        with self.cond:
            chunks = list(reader.chunks)
            reader.chunks.clear()
            return chunks, reader.closed

    def close(self) -> None:
        """Close the stream: every reader ends after what it holds; writes fail."""
        with self.cond:
            self.closed = True
            for reader in self.readers.values():
                reader.closed = True
            self.readers.clear()
            self.cond.notify_all()

    def abort(self) -> None:
        """Server shutdown: wake every waiting reader so its connection is dropped."""
        with self.cond:
            self.aborted = True
            self.cond.notify_all()

    def info(self) -> FileInfo:
        """``GetInfo``: the name without its leading slash, size = bytes ever written."""
        with self.cond:
            return FileInfo(
                self.name[1:] if self.name.startswith("/") else self.name,
                self.offset,
                0o644,
                self.mtime,
                False,
                PLUGIN_NAME,
                "stream",
                {"total_written": str(self.offset), "active_readers": str(len(self.readers))},
            )


class _Follow:
    """The ``stream=true`` body: chunks as they come, ``b""`` on each idle tick.

    An explicit iterator (not a generator) so ``close`` unregisters the reader even when
    the response is never iterated.
    """

    def __init__(self, stream: StreamFile, reader: _Reader) -> None:
        self.stream = stream
        self.reader = reader
        self.done = False

    def __iter__(self) -> _Follow:
        return self

    def __next__(self) -> bytes:
        if self.done:
            raise StopIteration
        try:
            chunk, eof = self.stream.read_chunk(self.reader, IDLE_TICK)
        except BaseException:
            self.close()
            raise
        if chunk is not None:
            return chunk
        if eof:
            self.close()
            raise StopIteration
        return b""

    def close(self) -> None:
        if not self.done:
            self.done = True
            self.stream.unregister(self.reader)


# -- the filesystem ---------------------------------------------------------------------


class StreamFS(FileSystem):
    """Streams by name, created on demand."""

    supports_handles = True
    supports_stream = True

    def __init__(self, channel: int, ring: int) -> None:
        self.channel = channel
        self.ring = ring
        self.lock = threading.Lock()
        self.streams: dict[str, StreamFile] = {}
        self.aborted = False

    def _get_or_create(self, path: str) -> StreamFile:
        with self.lock:
            stream = self.streams.get(path)
            if stream is None:
                stream = StreamFile(path, self.channel, self.ring)
                if self.aborted:
                    stream.aborted = True
                self.streams[path] = stream
            return stream

    def create(self, path: str) -> None:
        with self.lock:
            if path in self.streams:
                raise FsError(f"stream already exists: {path}")
            self.streams[path] = StreamFile(path, self.channel, self.ring)

    def mkdir(self, path: str, perm: int) -> None:
        raise FsError("streamfs does not support directories")

    def remove(self, path: str) -> None:
        with self.lock:
            stream = self.streams.pop(path, None)
        if stream is None:
            raise FsError(f"stream not found: {path}")
        stream.close()

    def remove_all(self, path: str) -> None:
        self.remove(path)

    def read(self, path: str, offset: int, size: int, allow_range: bool = False) -> Bytes:
        if path != "/README":
            raise FsError(NOT_STREAM_MODE)
        offset = max(offset, 0)
        if offset >= len(_README):
            return b""
        end = len(_README) if size < 0 else min(offset + size, len(_README))
        return _README[offset:end]

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        self._get_or_create(path).write(data)
        return len(data)

    def _readme_info(self) -> FileInfo:
        return FileInfo("README", len(_README), 0o444, now_ns(), False, PLUGIN_NAME, "doc")

    def read_dir(self, path: str) -> list[FileInfo]:
        if path != "/":
            raise FsError(f"not a directory: {path}")
        with self.lock:
            streams = list(self.streams.values())
        return [self._readme_info(), *(s.info() for s in streams)]

    def stat(self, path: str) -> FileInfo:
        if path == "/":
            return FileInfo("/", 0, 0o755, now_ns(), True, PLUGIN_NAME, "")
        if path == "/README":
            return self._readme_info()
        with self.lock:
            stream = self.streams.get(path)
        if stream is None:
            raise FsError(f"stream not found: {path}")
        return stream.info()

    def rename(self, old: str, new: str) -> None:
        raise FsError("streamfs does not support rename")

    def chmod(self, path: str, mode: int) -> None:
        raise FsError("streamfs does not support chmod")

    def truncate(self, path: str, size: int) -> None:
        """A silent no-op, as in Go (so shell redirections work)."""

    def open_reader(self, path: str) -> Iterator[Bytes]:
        if path == "/README":
            return iter((_README,))
        raise FsError(NOT_STREAM_MODE)

    def open_stream(self, path: str) -> Iterator[Bytes]:
        stream = self._get_or_create(path)
        return _Follow(stream, stream.register())

    def open_handle(self, path: str, flags: int, mode: int) -> FileHandle:
        if path == "/README":
            return StreamHandle(self, path, flags, None)
        return StreamHandle(self, path, flags, self._get_or_create(path))

    def shutdown(self) -> None:
        """Wake every blocked reader so the server can stop at once."""
        with self.lock:
            self.aborted = True
            streams = list(self.streams.values())
        for stream in streams:
            stream.abort()


class StreamHandle(FileHandle):
    """Go's ``streamFileHandle``: a private, growing buffer of what this handle received."""

    def __init__(self, fs: StreamFS, path: str, flags: int, stream: StreamFile | None) -> None:
        self.fs = fs
        self.path = path
        self.flags = flags
        self.stream = stream
        self.reader: _Reader | None = None
        self.buf = bytearray()
        self.base = 0  # stream offset of buf[0] for sequential reads (after trimming)
        self.pos = 0  # sequential read position
        self.read_closed = False
        self.lock = threading.Lock()
        if stream is None:  # README: static content, already complete
            self.buf += _README
            self.read_closed = True
        elif flags & O_WRONLY == 0:
            self.reader = stream.register()

    def _fetch(self, timeout: float) -> None:
        """Wait for one chunk (``fetchMoreData``); EOF marks the read side closed."""
        if self.reader is None or self.stream is None:
            self.read_closed = True
            return
        chunk, eof = self.stream.read_chunk(self.reader, timeout)
        if chunk is not None:
            self.buf += chunk
        elif eof:
            self.read_closed = True

    def _drain(self) -> None:
        if self.reader is None or self.stream is None:
            return
        chunks, eof = self.stream.take_available(self.reader)
        for chunk in chunks:
            self.buf += chunk
        if eof:
            self.read_closed = True

    def _take(self, size: int) -> bytes | None:
        rel = self.pos - self.base
        if 0 <= rel < len(self.buf):
            data = bytes(self.buf[rel : rel + size])
            self.pos += len(data)
            self._trim()
            return data
        return None

    def _trim(self) -> None:
        if len(self.buf) <= HANDLE_BUFFER_MAX:
            return
        cut = self.pos - self.base - HANDLE_TRIM_MARGIN
        if 0 < cut < len(self.buf):
            del self.buf[:cut]
            self.base += cut

    def _read(self, size: int, wait: float) -> tuple[bytes, bool]:
        with self.lock:
            data = self._take(size)
            if data is not None:
                return data, False
            if self.read_closed:
                return b"", True
            self._fetch(wait)
            data = self._take(size)
            if data is not None:
                return data, False
            return b"", self.read_closed

    def read(self, size: int) -> Bytes:
        return self._read(size, HANDLE_READ_WAIT)[0]

    def read_piece(self, size: int) -> tuple[Bytes, bool]:
        # Go's handle stream loops Read (30 s waits); short waits only let the HTTP
        # layer check for a client that hung up in between.
        return self._read(size, IDLE_TICK)

    def read_at(self, size: int, offset: int) -> Bytes:
        with self.lock:
            if offset < 0:
                raise AbortConnection(f"slice bounds out of range [{offset}:]")  # Go panics
            # Go indexes the buffer with the raw offset, ignoring any trimming.
            self._drain()
            if offset < len(self.buf):
                return bytes(self.buf[offset : offset + size])
            if self.read_closed:
                return b""
            self._fetch(HANDLE_READ_WAIT)
            if offset < len(self.buf):
                return bytes(self.buf[offset : offset + size])
            return b""

    def write(self, data: Bytes) -> int:
        return self.write_at(data, 0)

    def write_at(self, data: Bytes, offset: int) -> int:
        if self.stream is None:
            raise FsError("stream not initialized")
        self.stream.write(data)
        return len(data)

    def seek(self, offset: int, whence: int) -> int:
        with self.lock:
            if whence == 0:
                new = offset
            elif whence == 1:
                new = go_int64(self.pos + offset)
            elif whence == 2:
                new = go_int64(len(self.buf) + offset)
            else:
                raise FsError(f"invalid whence: {whence}")
            if new < 0:
                raise FsError("negative offset")
            self.pos = new
            return new

    def stat(self) -> FileInfo:
        return self.fs.stat(self.path)

    def close(self) -> None:
        if self.reader is not None and self.stream is not None:
            self.stream.unregister(self.reader)
