"""localfs: a real local directory, with the real server's messages and Go mode numbers.

Faithful details: no handle API (open answers 501), ``stream=true`` works (64 KiB
chunks), rename replaces an existing target, ``mode`` is Go's ``os.FileMode`` number
(type bits high up: a 0755 dir is ``1<<31 | 0o755``), stat of the mount root keeps the
local directory's own name, and errors from the OS read like Go's ``*PathError``
(``"open /abs/path: permission denied"``). A ``ENOENT`` wrapped with ``%w`` in Go still
maps to 404 through ``errors.Is(err, os.ErrNotExist)``, so those become ``NotFound``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat as st
from collections.abc import Iterator

from agfs_fuse.server import pathutil
from agfs_fuse.server.errors import FsError, NotFound
from agfs_fuse.server.plugins.base import Bytes, FileInfo, FileRange, FileSystem
from agfs_fuse.server.rwlock import RWLock

PLUGIN_NAME = "localfs"

#: Reads bigger than this go out with sendfile instead of through memory.
RANGE_THRESHOLD = 256 * 1024
STREAM_CHUNK = 64 * 1024

# Go os.FileMode type bits.
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20


def go_file_mode(st_mode: int) -> int:
    """Unix ``st_mode`` to Go ``os.FileMode`` (os/stat_linux.go)."""
    mode = st_mode & 0o777
    kind = st.S_IFMT(st_mode)
    if kind == st.S_IFBLK:
        mode |= MODE_DEVICE
    elif kind == st.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif kind == st.S_IFDIR:
        mode |= MODE_DIR
    elif kind == st.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif kind == st.S_IFLNK:
        mode |= MODE_SYMLINK
    elif kind == st.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & st.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & st.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & st.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def go_syscall_mode(mode: int) -> int:
    """Go ``os.FileMode`` to the ``mode_t`` Go passes to chmod/mkdir (``syscallMode``)."""
    out = mode & 0o777
    if mode & MODE_SETUID:
        out |= st.S_ISUID
    if mode & MODE_SETGID:
        out |= st.S_ISGID
    if mode & MODE_STICKY:
        out |= st.S_ISVTX
    return out


#: What an ``os`` call on a client's path can raise: Python refuses a path with a NUL
#: byte with ``ValueError`` before any syscall, where Go's syscall layer answers
#: ``EINVAL`` ("invalid argument"); both must become the plugin's error, not a traceback.
OS_ERRORS = (OSError, ValueError)


def _errno(exc: OSError | ValueError) -> int | None:
    """The errno of a failed ``os`` call; ``EINVAL`` for a path with a NUL byte."""
    return exc.errno if isinstance(exc, OSError) else errno.EINVAL


def errno_text(code: int | None) -> str:
    """Go's text for an errno: glibc's with a lowercase first letter."""
    if code is None:
        return "unknown error"
    text = os.strerror(code)
    return text[:1].lower() + text[1:]


def os_error(prefix: str, op: str, path: str, exc: OSError | ValueError) -> FsError:
    """``fmt.Errorf("<prefix>: %w", &PathError{op, path, errno})``; ENOENT stays a 404."""
    msg = f"{prefix}: {op} {path}: {errno_text(_errno(exc))}"
    return NotFound(msg) if _errno(exc) == errno.ENOENT else FsError(msg)


def _exists(path: str) -> bool:
    try:
        os.stat(path)
        return True
    except OS_ERRORS:
        return False


def _missing(path: str) -> bool:
    """Go's ``os.IsNotExist(err)`` after ``os.Stat``."""
    try:
        os.stat(path)
        return False
    except OS_ERRORS as exc:
        return _errno(exc) == errno.ENOENT


class LocalFS(FileSystem):
    """A local directory behind a readers-writer lock, like the Go plugin's RWMutex.

    Reads share the lock: a GET of a FIFO inside ``local_dir`` blocks in ``open`` until a
    writer comes (in Go too, holding its ``RLock``), and stats and listings go on meanwhile.
    """

    supports_stream = True

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)
        self.lock = RWLock()

    def _local(self, path: str) -> str:
        rel = pathutil.clean(pathutil.clean("/" + path)[1:])
        if rel == ".":
            return self.base
        return pathutil.join(self.base, rel)

    def _stat_or_raise(self, local: str, missing_msg: str) -> os.stat_result:
        try:
            return os.stat(local)
        except OS_ERRORS as exc:
            if _errno(exc) == errno.ENOENT:
                raise FsError(missing_msg) from None
            raise os_error("failed to stat", "stat", local, exc) from None

    def create(self, path: str) -> None:
        local = self._local(path)
        with self.lock.write():
            if _exists(local):
                raise FsError(f"file already exists: {path}")
            if _missing(os.path.dirname(local)):
                raise FsError(f"parent directory does not exist: {pathutil.dirname(path)}")
            try:
                fd = os.open(local, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
            except OS_ERRORS as exc:
                raise os_error("failed to create file", "open", local, exc) from None
            os.close(fd)

    def mkdir(self, path: str, perm: int) -> None:
        local = self._local(path)
        with self.lock.write():
            if _exists(local):
                raise FsError(f"directory already exists: {path}")
            if _missing(os.path.dirname(local)):
                raise FsError(f"parent directory does not exist: {pathutil.dirname(path)}")
            try:
                os.mkdir(local, go_syscall_mode(perm))
            except OS_ERRORS as exc:
                raise os_error("failed to create directory", "mkdir", local, exc) from None

    def remove(self, path: str) -> None:
        local = self._local(path)
        with self.lock.write():
            info = self._stat_or_raise(local, f"no such file or directory: {path}")
            if st.S_ISDIR(info.st_mode):
                try:
                    empty = not os.listdir(local)
                except OS_ERRORS as exc:
                    raise os_error("failed to read directory", "open", local, exc) from None
                if not empty:
                    raise FsError(f"directory not empty: {path}")
            try:
                if st.S_ISDIR(os.lstat(local).st_mode):
                    os.rmdir(local)
                else:
                    os.unlink(local)
            except OS_ERRORS as exc:
                raise os_error("failed to remove", "remove", local, exc) from None

    def remove_all(self, path: str) -> None:
        # Like Go's os.RemoveAll this removes the named path itself, so a recursive
        # delete of the mount root removes the local directory (the real server does).
        local = self._local(path)
        with self.lock.write():
            if _missing(local):
                raise FsError(f"no such file or directory: {path}")
            try:
                if os.path.isdir(local) and not os.path.islink(local):
                    shutil.rmtree(local)
                else:
                    os.unlink(local)
            except OS_ERRORS as exc:
                raise os_error("failed to remove", "unlinkat", local, exc) from None

    def read(
        self, path: str, offset: int, size: int, allow_range: bool = False
    ) -> Bytes | FileRange:
        local = self._local(path)
        with self.lock.read():
            info = self._stat_or_raise(local, f"no such file: {path}")
            if st.S_ISDIR(info.st_mode):
                raise FsError(f"is a directory: {path}")
            try:
                fd = os.open(local, os.O_RDONLY)
            except OS_ERRORS as exc:
                raise os_error("failed to open file", "open", local, exc) from None
            file_size = info.st_size
            offset = max(offset, 0)
            if offset >= file_size:
                os.close(fd)
                return b""
            length = file_size - offset if size < 0 or offset + size > file_size else size
            if allow_range and length > RANGE_THRESHOLD:
                return FileRange(fd, offset, length)
            try:
                return _pread_full(fd, length, offset)
            except OS_ERRORS as exc:
                raise os_error("failed to read", "read", local, exc) from None
            finally:
                os.close(fd)

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        local = self._local(path)
        with self.lock.write():
            try:
                if st.S_ISDIR(os.stat(local).st_mode):
                    raise FsError(f"is a directory: {path}")
            except OS_ERRORS:
                pass
            if _missing(os.path.dirname(local)):
                raise FsError(f"parent directory does not exist: {pathutil.dirname(path)}")
            flags = os.O_WRONLY | os.O_CREAT
            if truncate:  # the PUT path: create + truncate
                flags |= os.O_TRUNC
            try:
                fd = os.open(local, flags, 0o644)
            except OS_ERRORS as exc:
                raise os_error("failed to open file", "open", local, exc) from None
            try:
                view = memoryview(data).cast("B")
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:])
            except OS_ERRORS as exc:
                raise os_error("failed to write", "write", local, exc) from None
            finally:
                os.close(fd)
            return len(data)

    def read_dir(self, path: str) -> list[FileInfo]:
        local = self._local(path)
        with self.lock.read():
            info = self._stat_or_raise(local, f"no such directory: {path}")
            if not st.S_ISDIR(info.st_mode):
                raise FsError(f"not a directory: {path}")
            try:
                entries = list(os.scandir(local))
            except OS_ERRORS as exc:
                raise os_error("failed to read directory", "open", local, exc) from None
            entries.sort(key=lambda e: os.fsencode(e.name))
            out = []
            for entry in entries:
                try:
                    est = entry.stat(follow_symlinks=False)
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OS_ERRORS:
                    continue
                out.append(
                    FileInfo(
                        entry.name,
                        est.st_size,
                        go_file_mode(est.st_mode),
                        est.st_mtime_ns,
                        is_dir,
                        PLUGIN_NAME,
                        "local",
                    )
                )
            return out

    def stat(self, path: str) -> FileInfo:
        local = self._local(path)
        with self.lock.read():
            info = self._stat_or_raise(local, f"no such file or directory: {path}")
            return FileInfo(
                pathutil.basename(local),
                info.st_size,
                go_file_mode(info.st_mode),
                info.st_mtime_ns,
                st.S_ISDIR(info.st_mode),
                PLUGIN_NAME,
                "local",
                {"local_path": local},
            )

    def rename(self, old: str, new: str) -> None:
        old_local, new_local = self._local(old), self._local(new)
        with self.lock.write():
            if _missing(old_local):
                raise FsError(f"no such file or directory: {old}")
            if _missing(os.path.dirname(new_local)):
                raise FsError(f"parent directory does not exist: {pathutil.dirname(new)}")
            try:
                _go_rename(old_local, new_local)
            except OS_ERRORS as exc:
                msg = f"failed to rename: rename {old_local} {new_local}: {errno_text(_errno(exc))}"
                raise (NotFound(msg) if _errno(exc) == errno.ENOENT else FsError(msg)) from None

    def chmod(self, path: str, mode: int) -> None:
        local = self._local(path)
        with self.lock.write():
            if _missing(local):
                raise FsError(f"no such file or directory: {path}")
            try:
                os.chmod(local, go_syscall_mode(mode))
            except OS_ERRORS as exc:
                raise os_error("failed to chmod", "chmod", local, exc) from None

    def truncate(self, path: str, size: int) -> None:
        local = self._local(path)
        with self.lock.write():
            info = self._stat_or_raise(local, f"no such file: {path}")
            if st.S_ISDIR(info.st_mode):
                raise FsError(f"is a directory: {path}")
            try:
                os.truncate(local, size)
            except OS_ERRORS as exc:
                raise os_error("failed to truncate", "truncate", local, exc) from None

    def open_reader(self, path: str) -> Iterator[Bytes]:
        """Go's ``Open`` holds the read lock across the open only (a FIFO waiting there
        keeps writers out); the chunks are read after it is released."""
        local = self._local(path)
        with self.lock.read():
            try:
                fd = os.open(local, os.O_RDONLY)
            except OS_ERRORS as exc:
                if _errno(exc) == errno.ENOENT:
                    raise FsError(f"no such file: {path}") from None
                raise os_error("failed to open file", "open", local, exc) from None
        return _read_chunks(fd, local)

    def open_stream(self, path: str) -> Iterator[Bytes]:
        local = self._local(path)
        with self.lock.read():
            info = self._stat_or_raise(local, f"no such file: {path}")
            if st.S_ISDIR(info.st_mode):
                raise FsError(f"is a directory: {path}")
            try:
                fd = os.open(local, os.O_RDONLY)
            except OS_ERRORS as exc:
                raise os_error("failed to open file", "open", local, exc) from None
        return _stream_chunks(fd)


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _read_chunks(fd: int, local: str) -> Iterator[Bytes]:
    """Go's ``io.Reader`` loop over an ``*os.File`` (for /digest)."""
    try:
        while True:
            try:
                chunk = os.read(fd, STREAM_CHUNK)
            except OS_ERRORS as exc:
                raise FsError(
                    f"error reading file: read {local}: {errno_text(_errno(exc))}"
                ) from None
            if not chunk:
                return
            yield chunk
    finally:
        os.close(fd)


def _stream_chunks(fd: int) -> Iterator[Bytes]:
    """``localFSStreamReader``: 64 KiB reads; a short read ends the stream."""
    buf = bytearray(STREAM_CHUNK)
    view = memoryview(buf)
    try:
        while True:
            try:
                n = os.readv(fd, [buf])
            except OS_ERRORS:
                return
            if n:
                yield view[:n]
            if n < STREAM_CHUNK:
                return
    finally:
        os.close(fd)


def check_local_dir(local_dir: object) -> str:
    """The plugin's ``Validate``: returns the absolute directory or raises ``ValueError``."""
    if not isinstance(local_dir, str) or local_dir == "":
        raise ValueError("local_dir is required in configuration")
    path = os.path.abspath(local_dir)
    try:
        info = os.stat(path)
    except OS_ERRORS as exc:
        if _errno(exc) == errno.ENOENT:
            raise ValueError(f"base path does not exist: {path}") from None
        raise ValueError(
            f"failed to stat base path: stat {path}: {errno_text(_errno(exc))}"
        ) from None
    if not st.S_ISDIR(info.st_mode):
        raise ValueError(f"base path is not a directory: {path}")
    return path


def _go_rename(old: str, new: str) -> None:
    """``os.Rename`` as Go has it on Unix: it refuses to replace an existing directory
    (EEXIST, even an empty one, where rename(2) would replace it), unless both names are
    the same file under different spellings."""
    try:
        target = os.lstat(new)
    except OSError:
        target = None
    if target is not None and st.S_ISDIR(target.st_mode):
        source = os.lstat(old)
        if new == old or not os.path.samestat(source, target):
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), new)
    os.rename(old, new)
