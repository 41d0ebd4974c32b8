"""devfs: the ``/dev`` the real server always mounts, holding only ``null``."""

from __future__ import annotations

from collections.abc import Iterator

from agfs_fuse.server.errors import FsError, bare_not_found
from agfs_fuse.server.plugins.base import Bytes, FileInfo, FileSystem, now_ns

PLUGIN_NAME = "devfs"


def _null_info() -> FileInfo:
    return FileInfo("null", 0, 0o666, now_ns(), False, PLUGIN_NAME, "device")


class DevFS(FileSystem):
    """``/null`` reads empty and swallows writes; everything else is read-only."""

    def create(self, path: str) -> None:
        raise FsError("read-only filesystem")

    def mkdir(self, path: str, perm: int) -> None:
        raise FsError("read-only filesystem")

    def remove(self, path: str) -> None:
        raise FsError("read-only filesystem")

    def remove_all(self, path: str) -> None:
        raise FsError("read-only filesystem")

    def read(self, path: str, offset: int, size: int, allow_range: bool = False) -> Bytes:
        if path == "/null":
            return b""
        raise bare_not_found()

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        if path == "/null":
            return len(data)
        raise FsError("read-only filesystem")

    def read_dir(self, path: str) -> list[FileInfo]:
        if path == "/":
            return [_null_info()]
        raise FsError("not a directory")

    def stat(self, path: str) -> FileInfo:
        if path == "/null":
            return _null_info()
        if path == "/":
            return FileInfo("/", 0, 0o555, now_ns(), True, PLUGIN_NAME, "directory")
        raise bare_not_found()

    def rename(self, old: str, new: str) -> None:
        raise FsError("read-only filesystem")

    def chmod(self, path: str, mode: int) -> None:
        raise FsError("read-only filesystem")

    def truncate(self, path: str, size: int) -> None:
        if path != "/null":
            raise FsError("read-only filesystem")

    def open_reader(self, path: str) -> Iterator[Bytes]:
        if path == "/null":
            return iter(())
        raise bare_not_found()
