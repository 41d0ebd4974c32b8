"""Go's ``MountableFS``: the virtual root, mount resolution and virtual symlinks.

- Mounts are found by the longest *string* prefix, then the boundary is checked; like
  Go, ``/devices`` with ``/dev`` mounted resolves to nothing even if ``/`` is mounted.
- ``/`` and directories above mount points are synthesised (0755, mtime now). Creating
  there is refused with the real messages (403 for create/mkdir, 404 for write/touch).
- Symlinks live in a server-memory table, never in a plugin. Most operations resolve
  them component by component; a few (truncate, touch, recursive delete, stream, open
  handle, rename) do not, exactly where Go does not.
- Stat of a mount point is the plugin root renamed after the mount (only when the plugin
  calls its root ``/``; localfs keeps its directory's name).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agfs_fuse.server import pathutil
from agfs_fuse.server.errors import (
    FsError,
    GoEOF,
    already_exists,
    not_found,
    not_supported,
    permission_denied,
)
from agfs_fuse.server.handles import HandleEntry, HandleTable
from agfs_fuse.server.plugins.base import Bytes, FileInfo, FileRange, FileSystem, now_ns

MAX_LINK_DEPTH = 10


@dataclass
class Mount:
    """A mounted plugin instance."""

    path: str
    plugin_name: str
    instance: str
    fs: FileSystem
    config: dict[str, Any] | None = field(default=None)


class MountableFS:
    """The namespace every route talks to."""

    def __init__(self) -> None:
        self._mounts: dict[str, Mount] = {}
        self._mount_lock = threading.Lock()
        self._links: dict[str, str] = {}
        self._link_lock = threading.Lock()
        self.handles = HandleTable()

    # -- mounts -------------------------------------------------------------------------

    def mount(self, mount: Mount) -> None:
        """Add a mount; ``mount already exists: <path>`` (409) when taken."""
        path = pathutil.normalize(mount.path)
        with self._mount_lock:
            if path in self._mounts:
                raise already_exists("mount", path)
            mount.path = path
            mounts = dict(self._mounts)
            mounts[path] = mount
            self._mounts = dict(sorted(mounts.items()))

    def mounts(self) -> list[Mount]:
        """Mounts sorted by path."""
        return list(self._mounts.values())

    def find_mount(self, path: str) -> tuple[Mount, str] | None:
        """``findMount``: (mount, path relative to it) or ``None``."""
        path = pathutil.normalize(path)
        best: Mount | None = None
        for mpath, mount in self._mounts.items():
            if path.startswith(mpath) and (best is None or len(mpath) > len(best.path)):
                best = mount
        if best is None:
            return None
        mpath = best.path
        if len(path) == len(mpath):
            return best, "/"
        if mpath == "/":
            return best, path
        if path[len(mpath)] == "/":
            return best, path[len(mpath) :]
        return None

    def _has_mount_below(self, prefix: str) -> bool:
        return any(m.startswith(prefix) for m in self._mounts)

    # -- symlinks -----------------------------------------------------------------------

    def _resolve_link(self, path: str) -> tuple[str, bool]:
        path = pathutil.normalize(path)
        with self._link_lock:
            target = self._links.get(path)
        if target is None:
            return path, False
        if not target.startswith("/"):
            return pathutil.normalize(pathutil.join(pathutil.dirname(path), target)), True
        return pathutil.normalize(target), True

    def resolve(self, path: str, depth: int = MAX_LINK_DEPTH) -> str:
        """``resolvePathWithSymlinks``: follow links in every component."""
        if depth <= 0:
            raise FsError("too many levels of symbolic links")
        path = pathutil.normalize(path)
        if path == "/" or not self._links:
            return path
        current = ""
        for part in path.strip("/").split("/"):
            current = pathutil.normalize(current + "/" + part)
            resolved, is_link = self._resolve_link(current)
            if is_link:
                current = self.resolve(resolved, depth - 1)
        return current

    def _link_is_dir(self, link: str) -> bool:
        try:
            return self._stat_no_link(self.resolve(link)).is_dir
        except FsError:
            return False

    def symlink(self, target: str, link: str) -> None:
        """Create a virtual link; 409 ``symlink already exists: <link>`` when taken."""
        link = pathutil.normalize(link)
        with self._link_lock:
            if link in self._links:
                raise already_exists("symlink", link)
        try:
            self.stat(link)
        except FsError:
            pass
        else:
            raise already_exists("symlink", link)
        parent = pathutil.dirname(link)
        if parent not in ("/", "."):
            resolved = self.resolve(parent)
            try:
                self.stat(resolved)
            except FsError:
                raise FsError(f"parent directory does not exist: {parent}") from None
        with self._link_lock:
            self._links[link] = target

    def readlink(self, link: str) -> str:
        """The stored target, or 404 ``readlink: <link>: not found``."""
        link = pathutil.normalize(link)
        with self._link_lock:
            target = self._links.get(link)
        if target is None:
            raise not_found("readlink", link)
        return target

    def _links_in(self, directory: str) -> list[str]:
        with self._link_lock:
            links = sorted(self._links)
        return [lk for lk in links if pathutil.normalize(pathutil.dirname(lk)) == directory]

    # -- operations ---------------------------------------------------------------------

    def _in_mount(self, path: str) -> tuple[Mount, str] | None:
        return self.find_mount(self.resolve(path))

    def create(self, path: str) -> None:
        """POST /files."""
        found = self._in_mount(path)
        if found is None:
            raise permission_denied(
                "create", path, "not allowed to create file in rootfs, use mount instead"
            )
        found[0].fs.create(found[1])

    def mkdir(self, path: str, perm: int) -> None:
        """POST /directories."""
        found = self._in_mount(path)
        if found is None:
            raise permission_denied(
                "mkdir", path, "not allowed to create directory in rootfs, use mount instead"
            )
        found[0].fs.mkdir(found[1], perm)

    def remove(self, path: str) -> None:
        """DELETE: a link is removed from the table; anything else goes to the plugin."""
        path = pathutil.normalize(path)
        with self._link_lock:
            if self._links.pop(path, None) is not None:
                return
        found = self._in_mount(path)
        if found is None:
            raise not_found("remove", path)
        found[0].fs.remove(found[1])

    def remove_all(self, path: str) -> None:
        """DELETE ``recursive=true``: no link table, no link resolution."""
        found = self.find_mount(path)
        if found is None:
            raise not_found("removeall", path)
        found[0].fs.remove_all(found[1])

    def read(
        self, path: str, offset: int, size: int, allow_range: bool = False
    ) -> Bytes | FileRange:
        """GET /files (ranged)."""
        found = self._in_mount(path)
        if found is None:
            raise not_found("read", path)
        return found[0].fs.read(found[1], offset, size, allow_range)

    def write(self, path: str, data: Bytes) -> int:
        """PUT /files: whole-file replace."""
        found = self._in_mount(path)
        if found is None:
            raise not_found("write", path)
        return found[0].fs.write(found[1], data)

    def read_dir(self, path: str) -> list[FileInfo]:
        """GET /directories, with nested mount points and links merged in."""
        path = pathutil.normalize(path)
        resolved = self.resolve(path)
        found = self.find_mount(resolved)
        now = now_ns()
        if found is not None:
            infos = found[0].fs.read_dir(found[1])
            names = {i.name for i in infos}
            prefix = path if path.endswith("/") else path + "/"
            for mpath in self._mounts:
                if mpath.startswith(prefix):
                    rel = mpath[len(prefix) :]
                    if rel and "/" not in rel and rel not in names:
                        names.add(rel)
                        infos.append(FileInfo(rel, 0, 0o755, now, True, "", "mount-point"))
        else:
            infos = []
            names = set()
            prefix = resolved if resolved.endswith("/") else resolved + "/"
            for mpath in self._mounts:
                if mpath.startswith(prefix):
                    rel = mpath[len(prefix) :]
                    if not rel:
                        continue
                    top = rel.split("/", 1)[0]
                    if top not in names:
                        names.add(top)
                        infos.append(FileInfo(top, 0, 0o755, now, True, "rootfs", "mount-point"))
        for link in self._links_in(path):
            name = pathutil.basename(link)
            if name not in names:
                names.add(name)
                infos.append(FileInfo(name, 0, 0o777, now, self._link_is_dir(link), "", "symlink"))
        if found is None and not infos:
            raise not_found("readdir", path)
        return infos

    def stat(self, path: str) -> FileInfo:
        """GET /stat: root, links and synthesised directories included."""
        path = pathutil.normalize(path)
        if path == "/":
            return FileInfo("/", 0, 0o755, now_ns(), True, "", "root")
        with self._link_lock:
            target = self._links.get(path)
        if target is not None:
            return FileInfo(
                pathutil.basename(path),
                len(target.encode("utf-8", "surrogateescape")),
                0o777,
                now_ns(),
                self._link_is_dir(path),
                "",
                "symlink",
            )
        return self._stat_no_link(path)

    def _stat_no_link(self, path: str) -> FileInfo:
        path = pathutil.normalize(path)
        found = self.find_mount(self.resolve(path))
        if found is not None:
            mount, rel = found
            info = mount.fs.stat(rel)
            if path == mount.path and info.name == "/":
                info.name = pathutil.basename(path) if path != "/" else "/"
            return info
        prefix = path if path.endswith("/") else path + "/"
        if self._has_mount_below(prefix):
            name = path[1:].rsplit("/", 1)[-1] or "/"
            return FileInfo(name, 0, 0o755, now_ns(), True, "", "mount-point")
        raise not_found("stat", path)

    def rename(self, old: str, new: str) -> None:
        """POST /rename: same mount only, no link resolution."""
        a = self.find_mount(old)
        b = self.find_mount(new)
        if a is not None and b is not None:
            if a[0] is not b[0]:
                raise FsError("cannot rename across different mounts")
            a[0].fs.rename(a[1], b[1])
            return
        raise FsError("cannot rename: paths not in same mounted filesystem")

    def chmod(self, path: str, mode: int) -> None:
        """POST /chmod."""
        found = self._in_mount(path)
        if found is None:
            raise not_found("chmod", path)
        found[0].fs.chmod(found[1], mode)

    def truncate(self, path: str, size: int) -> None:
        """POST /truncate (no link resolution)."""
        found = self.find_mount(path)
        if found is None:
            raise not_found("truncate", path)
        mount, rel = found
        if not mount.fs.supports_truncate:
            raise FsError(f"filesystem does not support truncate: {path}")
        mount.fs.truncate(rel, size)

    def touch(self, path: str) -> None:
        """POST /touch, Go's fallback: an existing file is read back and written again.
        memfs and localfs report EOF on that read, so touching their existing files fails
        with 500 ``EOF``; proxyfs reads without EOF and rewrites the file."""
        found = self.find_mount(path)
        if found is None:
            raise not_found("touch", path)
        fs, rel = found[0].fs, found[1]
        try:
            info = fs.stat(rel)
        except FsError:
            fs.write(rel, b"", truncate=False)
            return
        if info.is_dir:
            raise FsError("cannot touch directory")
        result = fs.read(rel, 0, -1)
        if isinstance(result, FileRange):
            result.close()
        elif not fs.reads_report_eof:
            fs.write(rel, result)
            return
        raise GoEOF()

    def open_reader(self, path: str) -> Iterator[Bytes]:
        """Go's ``Open`` (for /digest)."""
        found = self._in_mount(path)
        if found is None:
            raise not_found("open", path)
        return found[0].fs.open_reader(found[1])

    def open_stream(self, path: str) -> Iterator[Bytes]:
        """``stream=true``: only streaming plugins; every failure here is a 404."""
        found = self.find_mount(path)
        if found is None:
            raise not_found("openstream", path)
        mount, rel = found
        if not mount.fs.supports_stream:
            raise FsError(f"filesystem does not support streaming: {path}")
        return mount.fs.open_stream(rel)

    # -- handles ------------------------------------------------------------------------

    def open_handle(self, path: str, flags: int, mode: int) -> HandleEntry:
        """POST /handles/open; 501 ``openhandle: <path>: operation not supported``."""
        found = self.find_mount(path)
        if found is None:
            raise not_found("openhandle", path)
        mount, rel = found
        if not mount.fs.supports_handles:
            raise not_supported("openhandle", path)
        local = mount.fs.open_handle(rel, flags, mode)
        return self.handles.add(mount.path, local, path)
