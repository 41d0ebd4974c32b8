"""The async AGFS client: one method per endpoint, built on ``AgfsSession``.

Every method returns domain objects (``FileInfo``, ``bytes``, ``int``) and raises the
typed errors of ``errors``; callers never see an HTTP answer. Paths are always
sent fully percent-encoded in the query string, because Go decodes a literal ``+`` in a
query as a space. How requests travel (routes, retries, error mapping) is ``session``'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

import httpx

from . import errors
from .models import FileInfo, Health, MountPoint
from .session import AgfsSession
from .transport import FileBody
from .wire import agfs_open_flags, parse_file_info

UPLOAD_CHUNK = 1 << 20
"""A spool up to this size is read at once and sent with the request head; larger ones
go from the file (by sendfile, or in pieces of this size over TLS or through httpx)."""


class HasFileno(Protocol):
    """What an upload streams from: its file descriptor (a spool is no Python file)."""

    def fileno(self) -> int: ...


class AgfsClient(AgfsSession):
    """One AGFS server's API, over one connection pool (see ``AgfsSession`` for the
    ``timeout``, transport and retry settings)."""

    # -- server ---------------------------------------------------------------------

    async def health(self) -> Health:
        body = await self._json("GET", "/health", idempotent=True)
        if not isinstance(body, dict) or "status" not in body:
            raise errors.ProtocolError(f"/health answer is not AGFS: {str(body)[:80]!r}")
        return Health(
            status=str(body.get("status")),
            version=str(body.get("version", "")),
            ready=bool(body.get("ready", True)),
            degraded=bool(body.get("degraded", False)),
        )

    async def mounts(self) -> list[MountPoint]:
        body = await self._json("GET", "/mounts", idempotent=True)
        items = body.get("mounts") if isinstance(body, dict) else None
        return [
            MountPoint(
                path=str(m.get("path", "")),
                plugin=str(m.get("pluginName", "")),
                status=str(m.get("status", "")),
            )
            for m in items or []
            if isinstance(m, dict)
        ]

    # -- metadata -------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        return _file_info(await self._json("GET", "/stat", path, idempotent=True), path)

    async def list(self, path: str) -> list[FileInfo]:
        body = await self._json("GET", "/directories", path, idempotent=True)
        if not isinstance(body, dict):
            raise errors.ProtocolError("/directories answer is not an object", path=path)
        files = body.get("files")
        if files is None:
            return []
        if not isinstance(files, list):
            raise errors.ProtocolError("'files' should be a list", path=path)
        return [_file_info(item, path) for item in files]

    # -- data -----------------------------------------------------------------------

    async def read(
        self, path: str, offset: int = 0, size: int = -1, *, idempotent: bool = True
    ) -> bytes:
        """Ranged read; a short (or empty) answer means end of file.

        ``idempotent=False`` for reads that change the server (a queue's ``dequeue``):
        such a read is never sent twice.
        """
        params = {"offset": offset, "size": size} if (offset or size >= 0) else None
        response = await self._send("GET", "/files", path, params=params, idempotent=idempotent)
        return response.content

    async def read_into(self, path: str, sink: Callable[[bytes], object]) -> int:
        """Stream the whole file into ``sink`` chunk by chunk; returns the byte count."""
        total = 0
        response = await self._stream("/files", path, idempotent=True)
        try:
            async for chunk in response.aiter_bytes():
                sink(chunk)
                total += len(chunk)
                self.stats.add_received(len(chunk))
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise errors.ServerUnreachable(
                f"connection lost while reading {path}: {exc!r}", path=path
            ) from exc
        finally:
            await response.aclose()
        return total

    async def follow(self, path: str, sink: Callable[[bytes], object]) -> None:
        """Follow ``stream=true`` (streamfs) into ``sink`` until the server or the caller
        ends it; there is no read deadline, since a stream may be quiet for hours."""
        response = await self._stream("/files", path, params={"stream": "true"}, follow=True)
        try:
            async for chunk in response.aiter_bytes():
                sink(chunk)
                self.stats.add_received(len(chunk))
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise errors.ServerUnreachable(
                f"connection lost while following {path}: {exc!r}", path=path
            ) from exc
        finally:
            await response.aclose()

    async def write(self, path: str, data: bytes, *, idempotent: bool = False) -> None:
        """``PUT`` ``data``: replaces a regular file, but appends to a stream or enqueues a
        message, so it is retried only when the caller says a repeat changes nothing."""
        await self._send("PUT", "/files", path, content=data, idempotent=idempotent)

    async def write_from(self, path: str, source: HasFileno, size: int) -> None:
        """Replace the whole file with ``size`` bytes streamed from ``source`` (from 0).

        The body goes with a Content-Length, so the server can refuse an oversized one
        (413 -> EFBIG) before reading it, and straight from the file (sendfile on plain
        HTTP), so a large spool never passes through memory. A small one (at most
        ``UPLOAD_CHUNK``) goes in one piece with the request head.
        """

        def shrank() -> errors.AgfsError:
            return errors.ServerError(f"spool for {path} shrank during upload", path=path)

        if size <= UPLOAD_CHUNK:
            data = os.pread(source.fileno(), size, 0)
            if len(data) != size:
                raise shrank()
            await self._send("PUT", "/files", path, content=data, idempotent=True)
            return
        await self._send(
            "PUT",
            "/files",
            path,
            content=FileBody(source.fileno(), size, shrank),
            headers={"Content-Length": str(size)},
            idempotent=True,  # spools hold regular files: a whole-file replace
        )

    # -- namespace ------------------------------------------------------------------

    async def create(self, path: str) -> None:
        await self._send("POST", "/files", path)

    async def mkdir(self, path: str, mode: int = 0o755) -> None:
        await self._send("POST", "/directories", path, params={"mode": format(mode & 0o7777, "o")})

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        await self._send(
            "DELETE", "/files", path, params={"recursive": "true"} if recursive else None
        )

    async def rmdir(self, path: str, *, recursive: bool = False) -> None:
        params = {"recursive": "true"} if recursive else None
        await self._send("DELETE", "/directories", path, params=params)

    async def rename(self, old: str, new: str) -> None:
        await self._send("POST", "/rename", old, json_body={"newPath": new})

    async def chmod(self, path: str, mode: int) -> None:
        mode_body = {"mode": mode & 0o7777}
        await self._send("POST", "/chmod", path, json_body=mode_body, idempotent=True)

    async def truncate(self, path: str, size: int) -> None:
        await self._send("POST", "/truncate", path, params={"size": size}, idempotent=True)

    async def touch(self, path: str) -> None:
        await self._send("POST", "/touch", path)

    async def symlink(self, target: str, link: str) -> None:
        await self._send("POST", "/symlink", link, json_body={"target": target})

    async def readlink(self, path: str) -> str:
        body = await self._json("GET", "/readlink", path, idempotent=True)
        target = body.get("target") if isinstance(body, dict) else None
        if not isinstance(target, str):
            raise errors.ProtocolError("/readlink answer has no target", path=path)
        return target

    # -- handles --------------------------------------------------------------------

    async def open_handle(self, path: str, os_flags: int, mode: int = 0o644) -> int:
        body = await self._json(
            "POST",
            "/handles/open",
            path,
            params={"flags": agfs_open_flags(os_flags), "mode": format(mode & 0o7777, "o")},
        )
        handle = body.get("handle_id") if isinstance(body, dict) else None
        if not isinstance(handle, int) or isinstance(handle, bool):
            raise errors.ProtocolError("/handles/open answer has no handle_id", path=path)
        return handle

    async def handle_read(self, handle: int, offset: int, size: int) -> bytes:
        response = await self._send(
            "GET",
            f"/handles/{handle}/read",
            params={"offset": offset, "size": size},
            idempotent=True,  # a pread
        )
        return response.content

    async def handle_write(self, handle: int, offset: int, data: bytes) -> int:
        """A pwrite: repeating it writes the same bytes at the same place (regular files
        only; a stream's handle appends, and streams are never written this way)."""
        body = await self._json(
            "PUT",
            f"/handles/{handle}/write",
            params={"offset": offset},
            content=data,
            idempotent=True,
        )
        written = body.get("bytes_written") if isinstance(body, dict) else None
        if not isinstance(written, int):
            raise errors.ProtocolError("handle write answer has no bytes_written")
        return written

    async def close_handle(self, handle: int) -> None:
        await self._send("DELETE", f"/handles/{handle}")


def _file_info(obj: object, path: str) -> FileInfo:
    """``parse_file_info``, with the path the answer was about named in its error."""
    try:
        return parse_file_info(obj)
    except errors.ProtocolError as exc:
        exc.path = exc.path or path
        raise
