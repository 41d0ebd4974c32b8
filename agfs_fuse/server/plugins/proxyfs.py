"""proxyfs: a mount that forwards every operation to another AGFS server.

Read from the Go plugin (``agfs-server/pkg/plugins/proxyfs``). The plugin adds nothing
of its own but a virtual ``/reload`` at its root, and that file is only half virtual:

- stat of ``/reload``: mode 0200, size 0, meta Type ``control``, mtime now, Content with
  ``description`` and ``remote-url``; the root listing appends it (mtime = the *first*
  listed entry's; an empty remote root makes Go panic, so the connection just drops);
- GET of ``/reload``: a help line (ranged), although the mode says write-only;
- PUT of ``/reload``: a new client for the same URL, its ``/health`` checked, swapped in
  only if that passes, else 500 ``reload failed: failed to connect after reload: ...``;
- everything else about ``/reload`` goes to the remote: DELETE, POST /files, a listing,
  a stream, the ``Open`` behind ``/digest``; the remote then answers for its own root.

Every stat from the remote gets ``remote-url`` (the configured text, not normalised) added
to its meta Content; listings pass through untouched. There is no handle API (501), no
truncate (500 ``filesystem does not support truncate``), and a write is a whole-file PUT
whatever the flags. Errors are the SDK client's (``agfs_remote``): 500, remote status
inside the text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agfs_fuse.server.errors import AbortConnection, FsError
from agfs_fuse.server.gojson import rfc3339nano
from agfs_fuse.server.plugins.agfs_remote import RemoteAgfs, RemoteError, RemoteFileInfo
from agfs_fuse.server.plugins.base import Bytes, FileInfo, FileSystem, now_ns
from agfs_fuse.server.plugins.proxyfs_config import ProxyConfigError, check_proxy_config

PLUGIN_NAME = "proxyfs"
RELOAD = "/reload"
#: What a GET of ``/reload`` answers (note "the", which the description lacks).
RELOAD_HELP = b"Write to this file to reload the proxy connection\n"
RELOAD_DESCRIPTION = "Write to this file to reload proxy connection"
RELOAD_MODE = 0o200


def _reload_info(mod_time: str, content: dict[str, str]) -> RemoteFileInfo:
    return RemoteFileInfo(
        "reload", 0, RELOAD_MODE, 0, False, "", "control", content, mod_time=mod_time
    )


class ProxyFS(FileSystem):
    """The filesystem of one proxyfs mount: a remote AGFS server behind ``base_url``."""

    supports_stream = True
    supports_truncate = False
    reads_report_eof = False

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._remote = RemoteAgfs(base_url)

    @classmethod
    def initialize(cls, config: dict[str, Any]) -> ProxyFS:
        """``Validate`` + ``Initialize``: a remote that fails its health check is not
        mounted (``ProxyConfigError`` with the Go text, which ``GET /mounts`` shows)."""
        base_url = check_proxy_config(config)
        fs = cls(base_url)
        try:
            fs._remote.health()
        except RemoteError as exc:
            fs._remote.close()
            raise ProxyConfigError(
                f"failed to connect to remote AGFS server at {base_url}: {exc.message}"
            ) from None
        return fs

    def reload(self) -> None:
        """A fresh client for the same URL, swapped in only when its ``/health`` passes."""
        fresh = RemoteAgfs(self.base_url)
        try:
            fresh.health()
        except RemoteError as exc:
            fresh.close()
            raise FsError(f"reload failed: failed to connect after reload: {exc.message}") from None
        self._remote = fresh  # the old client is left to requests still using it

    # -- the virtual /reload ------------------------------------------------------------

    def read(self, path: str, offset: int, size: int, allow_range: bool = False) -> Bytes:
        if path == RELOAD:
            offset = max(offset, 0)
            end = len(RELOAD_HELP) if size < 0 else offset + size
            return RELOAD_HELP[offset:end]
        return self._remote.read(path, offset, size)

    def write(self, path: str, data: Bytes, truncate: bool = True) -> int:
        if path == RELOAD:
            self.reload()
            return len(data)
        return self._remote.write(path, bytes(data))

    def read_dir(self, path: str) -> list[FileInfo]:
        infos: list[FileInfo] = list(self._remote.read_dir(path))
        if path == "/":
            if not infos:
                raise AbortConnection()  # Go indexes files[0] and panics
            first = infos[0]
            mod_time = first.mod_time if isinstance(first, RemoteFileInfo) else ""
            infos.append(_reload_info(mod_time, {"description": RELOAD_DESCRIPTION}))
        return infos

    def stat(self, path: str) -> FileInfo:
        if path == RELOAD:
            content = {"description": RELOAD_DESCRIPTION, "remote-url": self.base_url}
            return _reload_info(rfc3339nano(now_ns()), content)
        info = self._remote.stat(path)
        info.content = {**(info.content or {}), "remote-url": self.base_url}
        return info

    # -- forwarded as they are ----------------------------------------------------------

    def create(self, path: str) -> None:
        self._remote.create(path)

    def mkdir(self, path: str, perm: int) -> None:
        self._remote.mkdir(path, perm)

    def remove(self, path: str) -> None:
        self._remote.remove(path)

    def remove_all(self, path: str) -> None:
        self._remote.remove_all(path)

    def rename(self, old: str, new: str) -> None:
        self._remote.rename(old, new)

    def chmod(self, path: str, mode: int) -> None:
        self._remote.chmod(path, mode)

    def open_reader(self, path: str) -> Iterator[Bytes]:
        """Go's ``Open`` reads the whole remote file (``/reload`` included) up front."""
        return iter((self._remote.read(path, 0, -1),))

    def open_stream(self, path: str) -> Iterator[Bytes]:
        return self._remote.read_stream(path)

    def shutdown(self) -> None:
        self._remote.close()
