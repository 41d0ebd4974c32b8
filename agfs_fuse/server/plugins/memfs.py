"""memfs: the real server's in-memory filesystem, quirks included.

Faithful details: ``Read`` of a whole file reports EOF (so touch of an existing file and
/digest fail with ``EOF``), rename refuses to replace an existing target, modes are stored
exactly as given, a README (0444) sits at the root, and the handle API works (pread,
pwrite, append, seek; a negative offset makes the Go handler panic, i.e. the connection
drops). File data lives in a ``bytearray``; reads hand out ``memoryview`` slices so a
256 MiB file is never copied on its way to the socket.
"""

from __future__ import annotations

import threading

from agfs_fuse.server import pathutil
from agfs_fuse.server.errors import AbortConnection, FsError
from agfs_fuse.server.plugins.base import (
    O_ACCMODE,
    O_APPEND,
    O_CREATE,
    O_EXCL,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    Bytes,
    FileHandle,
    FileInfo,
    FileSystem,
    go_int64,
    now_ns,
)

PLUGIN_NAME = "memfs"

README = """MemFS - in-memory file system (agfs-fuse reference server)

Files and directories live in the server's memory and vanish when it stops.

Supported: create, read (ranged), whole-file write, delete (recursive too),
mkdir, list, stat, rename (never over an existing target), chmod, truncate,
and file handles (pread/pwrite, append, seek).
"""


class _Node:
    __slots__ = ("name", "is_dir", "data", "mode", "mtime", "children")

    def __init__(self, name: str, is_dir: bool, mode: int) -> None:
        self.name = name
        self.is_dir = is_dir
        self.data = bytearray()
        self.mode = mode
        self.mtime = now_ns()
        self.children: dict[str, _Node] | None = {} if is_dir else None


def _resize(node: _Node, size: int) -> None:
    """Grow (zero-filled) or shrink ``node.data``.

    A reader may still hold a memoryview of the buffer (its response is being sent);
    resizing an exported bytearray raises ``BufferError``, so then the node gets a fresh
    copy and the reader keeps the old bytes.
    """
    cur = len(node.data)
    if size == cur:
        return
    try:
        if size < cur:
            del node.data[size:]
        else:
            node.data.extend(bytes(size - cur))
    except BufferError:
        fresh = bytearray(node.data[: min(size, cur)])
        if size > cur:
            fresh.extend(bytes(size - cur))
        node.data = fresh


def _write_into(node: _Node, data: Bytes, offset: int) -> None:
    """Copy ``data`` to ``offset``, growing the file as needed."""
    end = offset + len(data)
    if end > len(node.data):
        _resize(node, end)
    node.data[offset:end] = data


class MemFS(FileSystem):
    """In-memory tree guarded by one lock."""

    supports_handles = True

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.root = _Node("/", True, 0o755)
        readme = _Node("README", False, 0o444)
        readme.data = bytearray(README.encode())
        assert self.root.children is not None
        self.root.children["README"] = readme

    # -- tree walking -------------------------------------------------------------------

    def _get(self, path: str) -> _Node:
        path = pathutil.normalize(path)
        if path == "/":
            return self.root
        node = self.root
        for part in path.strip("/").split("/"):
            if not node.is_dir:
                raise FsError(f"not a directory: {path}")
            assert node.children is not None
            nxt = node.children.get(part)
            if nxt is None:
                raise FsError(f"no such file or directory: {path}")
            node = nxt
        return node

    def _parent(self, path: str) -> tuple[_Node, str]:
        path = pathutil.normalize(path)
        if path == "/":
            raise FsError("cannot get parent of root")
        parent = self._get(pathutil.dirname(path))
        if not parent.is_dir:
            raise FsError("parent is not a directory")
        return parent, pathutil.basename(path)

    def _info(self, node: _Node) -> FileInfo:
        return FileInfo(
            node.name,
            len(node.data),
            node.mode,
            node.mtime,
            node.is_dir,
            PLUGIN_NAME,
            "dir" if node.is_dir else "file",
        )

    # -- FileSystem ---------------------------------------------------------------------

    def create(self, path: str) -> None:
        with self.lock:
            parent, name = self._parent(path)
            assert parent.children is not None
            if name in parent.children:
                raise FsError(f"file already exists: {path}")
            parent.children[name] = _Node(name, False, 0o644)

    def mkdir(self, path: str, perm: int) -> None:
        with self.lock:
            parent, name = self._parent(path)
            assert parent.children is not None
            if name in parent.children:
                raise FsError(f"directory already exists: {path}")
            parent.children[name] = _Node(name, True, perm)

    def remove(self, path: str) -> None:
        with self.lock:
            if pathutil.normalize(path) == "/":
                raise FsError("cannot remove root directory")
            parent, name = self._parent(path)
            assert parent.children is not None
            node = parent.children.get(name)
            if node is None:
                raise FsError(f"no such file or directory: {path}")
            if node.is_dir and node.children:
                raise FsError(f"directory not empty: {path}")
            del parent.children[name]

    def remove_all(self, path: str) -> None:
        with self.lock:
            if pathutil.normalize(path) == "/":
                self.root.children = {}
                return
            parent, name = self._parent(path)
            assert parent.children is not None
            if name not in parent.children:
                raise FsError(f"no such file or directory: {path}")
            del parent.children[name]

    def read(self, path: str, offset: int, size: int, allow_range: bool = False) -> Bytes:
        with self.lock:
            node = self._get(path)
            if node.is_dir:
                raise FsError(f"is a directory: {path}")
            data = node.data
            length = len(data)
            offset = max(offset, 0)
            if offset >= length:
                return b""
            end = length if size < 0 else min(offset + size, length)
            return memoryview(data)[offset:end]

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        with self.lock:
            parent, name = self._parent(path)
            assert parent.children is not None
            node = parent.children.get(name)
            if node is None:
                node = _Node(name, False, 0o644)
                parent.children[name] = node
            if node.is_dir:
                raise FsError(f"is a directory: {path}")
            node.data = data if isinstance(data, bytearray) else bytearray(data)
            node.mtime = now_ns()
            return len(data)

    def read_dir(self, path: str) -> list[FileInfo]:
        with self.lock:
            node = self._get(path)
            if not node.is_dir:
                raise FsError(f"not a directory: {path}")
            assert node.children is not None
            return [self._info(child) for child in node.children.values()]

    def stat(self, path: str) -> FileInfo:
        with self.lock:
            return self._info(self._get(path))

    def rename(self, old: str, new: str) -> None:
        with self.lock:
            old_parent, old_name = self._parent(old)
            assert old_parent.children is not None
            node = old_parent.children.get(old_name)
            if node is None:
                raise FsError(f"no such file or directory: {old}")
            new_parent, new_name = self._parent(new)
            assert new_parent.children is not None
            if new_name in new_parent.children:
                raise FsError(f"file already exists: {new}")
            del old_parent.children[old_name]
            node.name = new_name
            new_parent.children[new_name] = node

    def chmod(self, path: str, mode: int) -> None:
        with self.lock:
            self._get(path).mode = mode

    def truncate(self, path: str, size: int) -> None:
        with self.lock:
            node = self._get(path)
            if node.is_dir:
                raise FsError(f"is a directory: {path}")
            if size == len(node.data):
                return
            if size == 0:
                node.data = bytearray()
            else:
                _resize(node, size)
            node.mtime = now_ns()

    def open_handle(self, path: str, flags: int, mode: int) -> FileHandle:
        with self.lock:
            path = pathutil.normalize(path)
            try:
                node: _Node | None = self._get(path)
            except FsError:
                node = None
            if flags & O_EXCL and node is not None:
                raise FsError(f"file already exists: {path}")
            if flags & O_CREATE and node is None:
                try:
                    parent, name = self._parent(path)
                except FsError:
                    raise FsError(f"parent directory not found: {path}") from None
                node = _Node(name, False, mode)
                assert parent.children is not None
                parent.children[name] = node
            elif node is None:
                raise FsError(f"file not found: {path}")
            if node.is_dir:
                raise FsError(f"is a directory: {path}")
            if flags & O_TRUNC:
                node.data = bytearray()
                node.mtime = now_ns()
            return MemHandle(self, path, flags)


class MemHandle(FileHandle):
    """A memfs handle: position plus the path (re-resolved on every call, like Go)."""

    def __init__(self, fs: MemFS, path: str, flags: int) -> None:
        self.fs = fs
        self.path = path
        self.flags = flags
        self.pos = 0
        self.lock = threading.Lock()

    def _readable(self) -> None:
        if self.flags & O_ACCMODE not in (O_RDONLY, O_RDWR):
            raise FsError("handle not opened for reading")

    def _writable(self) -> None:
        if self.flags & O_ACCMODE not in (O_WRONLY, O_RDWR):
            raise FsError("handle not opened for writing")

    def read(self, size: int) -> Bytes:
        with self.lock:
            self._readable()
            with self.fs.lock:
                data = self.fs._get(self.path).data
                if self.pos >= len(data):
                    return b""
                chunk = memoryview(data)[self.pos : self.pos + size]
                self.pos += len(chunk)
                return chunk

    def read_at(self, size: int, offset: int) -> Bytes:
        with self.lock:
            self._readable()
            with self.fs.lock:
                data = self.fs._get(self.path).data
                if offset >= len(data):
                    return b""
                if offset < 0:
                    raise AbortConnection("slice bounds out of range")
                return memoryview(data)[offset : offset + size]

    def write(self, data: Bytes) -> int:
        with self.lock:
            self._writable()
            with self.fs.lock:
                node = self.fs._get(self.path)
                pos = len(node.data) if self.flags & O_APPEND else self.pos
                _write_into(node, data, pos)
                self.pos = pos + len(data)
                node.mtime = now_ns()
                return len(data)

    def write_at(self, data: Bytes, offset: int) -> int:
        with self.lock:
            self._writable()
            if offset < 0:
                raise AbortConnection("slice bounds out of range")
            with self.fs.lock:
                node = self.fs._get(self.path)
                _write_into(node, data, offset)
                node.mtime = now_ns()
                return len(data)

    def seek(self, offset: int, whence: int) -> int:
        with self.lock:
            with self.fs.lock:
                size = len(self.fs._get(self.path).data)
            if whence == 0:
                pos = offset
            elif whence == 1:
                pos = go_int64(self.pos + offset)
            elif whence == 2:
                pos = go_int64(size + offset)
            else:
                raise FsError(f"invalid whence: {whence}")
            if pos < 0:
                raise FsError("negative position")
            self.pos = pos
            return pos

    def stat(self) -> FileInfo:
        return self.fs.stat(self.path)
