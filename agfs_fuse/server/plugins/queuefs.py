"""queuefs: message queues as directories of control files (memory backend).

Each queue directory holds ``enqueue`` and ``clear`` (0222, write-only: reading them is a
500 ``permission denied: <path> is write-only``), ``dequeue`` (each read pops, ranged
reads too), ``peek`` and ``size`` (the bare decimal count; its stat size is the length of
that text). Messages are the Go JSON envelope ``{"id": UUIDv7, "data": str,
"timestamp": RFC3339Nano}`` with no trailing newline, ``{}`` when empty. Faithful oddities
kept: mkdir of an existing queue succeeds, stat of a control file never checks the queue
exists, listing an unknown queue shows control files, removing anything succeeds.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

from agfs_fuse.server import pathutil
from agfs_fuse.server.errors import FsError
from agfs_fuse.server.gojson import go_bytes_text, marshal, rfc3339nano
from agfs_fuse.server.plugins.base import Bytes, FileHandle, FileInfo, FileSystem, now_ns

PLUGIN_NAME = "queuefs"
OPERATIONS = ("enqueue", "dequeue", "peek", "size", "clear")

README = """QueueFS - message queues as files (agfs-fuse reference server)

mkdir /queuefs/q          create a queue
write q/enqueue           one write = one message
read  q/dequeue           pop the oldest message as JSON ({} when empty)
read  q/peek              look at the oldest message without removing it
read  q/size              number of messages
write q/clear             drop every message
rm -r /queuefs/q          delete the queue
"""


class _UUIDv7:
    """Time-ordered UUIDv7 strings (48-bit ms timestamp, 12-bit counter, 62 random bits)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_ms = 0
        self.seq = 0

    def new(self) -> str:
        with self.lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self.last_ms:
                self.seq += 1
                if self.seq > 0xFFF:
                    self.last_ms += 1
                    self.seq = 0
                ms = self.last_ms
            else:
                self.last_ms = ms
                self.seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
            seq = self.seq
        rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_uuid7 = _UUIDv7()


class _Queue:
    __slots__ = ("messages", "last_enqueue")

    def __init__(self) -> None:
        self.messages: deque[tuple[str, bytes, int]] = deque()
        self.last_enqueue = 0


def parse_queue_path(path: str) -> tuple[str, str, bool]:
    """``parseQueuePath``: (queue name, operation, is a directory)."""
    path = pathutil.clean(path)
    if path in ("/", "."):
        return "", "", True
    path = path.removeprefix("/")
    parts = path.split("/")
    if parts[-1] in OPERATIONS:
        if len(parts) == 1:
            raise FsError("invalid path: operation without queue name")
        return "/".join(parts[:-1]), parts[-1], False
    return "/".join(parts), "", True


def _message_json(msg: tuple[str, bytes, int]) -> bytes:
    msg_id, data, ts = msg
    return marshal({"id": msg_id, "data": go_bytes_text(data), "timestamp": rfc3339nano(ts)})


class QueueFS(FileSystem):
    """The memory backend behind one lock."""

    supports_handles = True

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.queues: dict[str, _Queue] = {}

    # -- backend ------------------------------------------------------------------------

    def _list(self, prefix: str) -> list[str]:
        return [q for q in self.queues if prefix == "" or q == prefix or q.startswith(prefix + "/")]

    def _size(self, name: str) -> int:
        q = self.queues.get(name)
        return len(q.messages) if q else 0

    def enqueue(self, name: str, data: Bytes) -> None:
        """Append one message (creates the queue)."""
        with self.lock:
            q = self.queues.setdefault(name, _Queue())
            ts = now_ns()
            q.messages.append((_uuid7.new(), bytes(data), ts))
            q.last_enqueue = ts if ts > q.last_enqueue else q.last_enqueue + 1

    def dequeue(self, name: str) -> bytes:
        """Pop the oldest message as JSON, ``{}`` when there is none."""
        with self.lock:
            q = self.queues.get(name)
            if not q or not q.messages:
                return b"{}"
            return _message_json(q.messages.popleft())

    def peek(self, name: str) -> bytes:
        """The oldest message as JSON without removing it."""
        with self.lock:
            q = self.queues.get(name)
            if not q or not q.messages:
                return b"{}"
            return _message_json(q.messages[0])

    def size_text(self, name: str) -> bytes:
        """The message count as bare decimal text."""
        with self.lock:
            return str(self._size(name)).encode()

    def clear(self, name: str) -> None:
        """Drop every message of a queue."""
        with self.lock:
            q = self.queues.get(name)
            if q:
                q.messages.clear()
                q.last_enqueue = 0

    # -- FileSystem ---------------------------------------------------------------------

    def create(self, path: str) -> None:
        _, op, is_dir = parse_queue_path(path)
        if is_dir:
            raise FsError(f"cannot create files: {path} is a directory")
        # control files are virtual: creating one succeeds and does nothing

    def mkdir(self, path: str, perm: int) -> None:
        name, _, is_dir = parse_queue_path(path)
        if not is_dir:
            raise FsError(f"cannot create directory: {path} is not a valid directory path")
        if name == "":
            raise FsError("invalid queue name")
        with self.lock:
            self.queues.setdefault(name, _Queue())

    def remove(self, path: str) -> None:
        _, op, is_dir = parse_queue_path(path)
        if is_dir:
            raise FsError("cannot remove directory with Remove: use RemoveAll instead")
        raise FsError(f"cannot remove control files: {path}")

    def remove_all(self, path: str) -> None:
        name, _, is_dir = parse_queue_path(path)
        if not is_dir:
            raise FsError(f"cannot remove: {path} is not a directory")
        with self.lock:
            if name == "":
                self.queues.clear()
                return
            for q in list(self.queues):
                if q == name or q.startswith(name + "/"):
                    del self.queues[q]

    def _content(self, path: str) -> bytes:
        if path == "/README":
            return README.encode()
        name, op, is_dir = parse_queue_path(path)
        if is_dir:
            raise FsError(f"is a directory: {path}")
        if op == "dequeue":
            return self.dequeue(name)
        if op == "peek":
            return self.peek(name)
        if op == "size":
            return self.size_text(name)
        raise FsError(f"permission denied: {path} is write-only")

    def read(self, path: str, offset: int, size: int, allow_range: bool = False) -> Bytes:
        data = self._content(path)
        offset = max(offset, 0)
        if offset >= len(data):
            return b""
        end = len(data) if size < 0 else min(offset + size, len(data))
        return data[offset:end]

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        name, op, is_dir = parse_queue_path(path)
        if is_dir:
            raise FsError(f"is a directory: {path}")
        if op == "enqueue":
            self.enqueue(name, data)
            return len(data)
        if op == "clear":
            self.clear(name)
            return 0
        raise FsError(f"cannot write to: {path}")

    def _control_files(self, name: str, now: int) -> list[FileInfo]:
        size = self._size(name)
        q = self.queues.get(name)
        peek_time = q.last_enqueue if q and q.last_enqueue else now
        return [
            FileInfo("enqueue", 0, 0o222, now, False, PLUGIN_NAME, "control"),
            FileInfo("dequeue", 0, 0o444, now, False, PLUGIN_NAME, "control"),
            FileInfo("peek", 0, 0o444, peek_time, False, PLUGIN_NAME, "control"),
            FileInfo("size", len(str(size)), 0o444, now, False, PLUGIN_NAME, "status"),
            FileInfo("clear", 0, 0o222, now, False, PLUGIN_NAME, "control"),
        ]

    def read_dir(self, path: str) -> list[FileInfo]:
        name, _, is_dir = parse_queue_path(path)
        if not is_dir:
            raise FsError(f"not a directory: {path}")
        now = now_ns()
        with self.lock:
            if path == "/" or name == "":
                files = [
                    FileInfo("README", len(README.encode()), 0o444, now, False, PLUGIN_NAME, "doc")
                ]
                tops = dict.fromkeys(q.split("/")[0] for q in self._list(""))
                files += [FileInfo(t, 0, 0o755, now, True, PLUGIN_NAME, "queue") for t in tops]
                return files
            if self._size(name) > 0:
                return self._control_files(name, now)
            subdirs: dict[str, None] = {}
            for q in self._list(name):
                if q != name and q.startswith(name + "/"):
                    subdirs[q[len(name) + 1 :].split("/")[0]] = None
            if not subdirs:
                return self._control_files(name, now)
            return [FileInfo(s, 0, 0o755, now, True, PLUGIN_NAME, "queue") for s in subdirs]

    def stat(self, path: str) -> FileInfo:
        now = now_ns()
        if path == "/":
            return FileInfo("/", 0, 0o755, now, True, PLUGIN_NAME, "", {"backend": "memory"})
        if path == "/README":
            return FileInfo("README", len(README.encode()), 0o444, now, False, PLUGIN_NAME, "doc")
        name, op, is_dir = parse_queue_path(path)
        with self.lock:
            if is_dir:
                base = pathutil.basename(path)
                if base in (".", "/"):
                    base = "/"
                exists = name in self.queues or any(
                    q.startswith(name + "/") for q in self._list(name)
                )
                if not exists:
                    raise FsError(f"no such file or directory: {path}")
                return FileInfo(base, 0, 0o755, now, True, PLUGIN_NAME, "queue")
            mode = 0o222 if op in ("enqueue", "clear") else 0o444
            kind, size, mtime = "control", 0, now
            if op == "size":
                kind, size = "status", len(str(self._size(name)))
            elif op == "peek":
                q = self.queues.get(name)
                if q and q.last_enqueue:
                    mtime = q.last_enqueue
            return FileInfo(op, size, mode, mtime, False, PLUGIN_NAME, kind)

    def rename(self, old: str, new: str) -> None:
        raise FsError("cannot rename files in queuefs service")

    def chmod(self, path: str, mode: int) -> None:
        raise FsError("cannot change permissions in queuefs service")

    def truncate(self, path: str, size: int) -> None:
        """A silent no-op, as in Go (shell redirections truncate before writing)."""

    def open_handle(self, path: str, flags: int, mode: int) -> FileHandle:
        name, op, is_dir = parse_queue_path(path)
        if is_dir:
            raise FsError(f"cannot open directory as file: {path}")
        return QueueHandle(self, path, name, op, flags)


class QueueHandle(FileHandle):
    """A handle on a control file: the first read fetches (and for dequeue pops) once."""

    def __init__(self, fs: QueueFS, path: str, name: str, op: str, flags: int) -> None:
        self.fs = fs
        self.path = path
        self.name = name
        self.op = op
        self.flags = flags
        self.buffer: bytes | None = None
        self.pos = 0
        self.lock = threading.Lock()

    def _fill(self) -> bytes | None:
        if self.buffer is None:
            if self.op == "dequeue":
                self.buffer = self.fs.dequeue(self.name)
            elif self.op == "peek":
                self.buffer = self.fs.peek(self.name)
            elif self.op == "size":
                self.buffer = self.fs.size_text(self.name)
            else:
                return None  # enqueue/clear: reads give EOF
        return self.buffer

    def read(self, size: int) -> Bytes:
        with self.lock:
            data = self._fill()
            if data is None or self.pos >= len(data):
                return b""
            chunk = data[self.pos : self.pos + size]
            self.pos += len(chunk)
            return chunk

    def read_at(self, size: int, offset: int) -> Bytes:
        with self.lock:
            data = self._fill()
            if data is None or offset >= len(data):
                return b""
            return data[max(offset, 0) : max(offset, 0) + size]

    def write(self, data: Bytes) -> int:
        return self.write_at(data, 0)

    def write_at(self, data: Bytes, offset: int) -> int:
        with self.lock:
            if self.op == "enqueue":
                self.fs.enqueue(self.name, data)
                return len(data)
            if self.op == "clear":
                self.fs.clear(self.name)
                return len(data)
            raise FsError(f"cannot write to {self.op}")

    def seek(self, offset: int, whence: int) -> int:
        return 0

    def stat(self) -> FileInfo:
        return self.fs.stat(self.path)


def check_queue_config(config: dict) -> None:
    """The plugin's ``Validate``; only the memory backend exists here."""
    backend = config.get("backend") or "memory"
    if not isinstance(backend, str):
        backend = "memory"
    valid = ("memory", "tidb", "mysql", "sqlite", "sqlite3")
    if backend not in valid:
        raise ValueError(
            f"unsupported backend: {backend} (valid options: memory, tidb, mysql, sqlite)"
        )
    if backend != "memory":
        raise ValueError(
            f"backend {backend!r} is not available in the agfs-fuse reference server "
            "(only 'memory')"
        )
