"""``/handles/open`` and the ``/handles/`` subtree: the AGFS handle API.

(The handle table itself is ``agfs_fuse.server.handles``; this module only speaks HTTP
for it.) Handles never expire, whatever ``lease`` and ``expires_at`` say; the handle
list is always empty, as in Go (docs/PROTOCOL.md, Handles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from agfs_fuse.server import gojson
from agfs_fuse.server.errors import FsError
from agfs_fuse.server.handles import HandleEntry
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.plugins.base import Bytes, now_ns
from agfs_fuse.server.routes.bodies import BodyReader
from agfs_fuse.server.routes.params import parse_int, parse_octal
from agfs_fuse.server.routes.pieces import STREAM_PIECE
from agfs_fuse.server.routes.replies import (
    METHOD_NOT_ALLOWED,
    NOSNIFF,
    OCTET,
    PATH_REQUIRED,
    error,
    file_info,
    fs_error,
    json_response,
)

LEASE_S = 60

#: ``/handles/<id>[/<operation>]``: the methods each operation accepts.
_METHODS: dict[str, tuple[str, ...]] = {
    "": ("GET", "DELETE"),
    "read": ("GET",),
    "write": ("PUT",),
    "seek": ("POST",),
    "sync": ("POST",),
    "stat": ("GET",),
    "stream": ("GET",),
}

_Operation = Callable[[Request, HandleEntry], Response]


class HandleRoutes:
    """Open, use and close handles; checks run in Go's order (operation, method, id)."""

    def __init__(self, mfs: MountableFS, bodies: BodyReader) -> None:
        self.mfs = mfs
        self.bodies = bodies
        self._operations: dict[str, _Operation] = {
            "": self._info,
            "read": self._read,
            "write": self._write,
            "seek": self._seek,
            "sync": self._sync,
            "stat": self._stat,
            "stream": self._stream,
        }

    def open(self, req: Request) -> Response:
        """POST /handles/open: AGFS flag values, octal ``mode`` (default 644)."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        flags = 0
        if req.arg("flags"):
            parsed = parse_int(req.arg("flags"), 32)
            if parsed is None:
                return error(400, "invalid flags parameter: must be a number")
            flags = parsed
        mode = 0o644
        if req.arg("mode"):
            parsed = parse_octal(req.arg("mode"))
            if parsed is None:
                return error(400, "invalid mode parameter")
            mode = parsed
        try:
            entry = self.mfs.open_handle(path, flags, mode)
        except FsError as exc:
            return fs_error(exc)
        return json_response(
            200,
            {
                "handle_id": entry.id,
                "path": entry.full_path,
                "flags": entry.local.flags,
                "lease": LEASE_S,
                "expires_at": gojson.rfc3339nano(now_ns() + LEASE_S * 1_000_000_000),
            },
        )

    def subtree(self, req: Request, rest: str) -> Response:
        """``/api/v1/handles/<id>[/<operation>]`` (``rest``) and the handle list."""
        handle_s, _, op = rest.partition("/")
        if handle_s == "":
            if req.method == "GET":
                return json_response(200, {"handles": [], "count": 0, "max": 10000})
            return error(400, "handle ID required")
        methods = _METHODS.get(op)
        if methods is None:
            return error(404, "unknown operation: " + op)
        if req.method not in methods:
            return error(405, METHOD_NOT_ALLOWED)
        handle_id = parse_int(handle_s)
        if handle_id is None:
            return error(400, "invalid handle ID: must be a number")
        if op == "" and req.method == "DELETE":
            try:
                self.mfs.handles.close(handle_id)
            except FsError as exc:
                return fs_error(exc)
            return json_response(200, {"message": "handle closed"})
        try:
            entry = self.mfs.handles.get(handle_id)
        except FsError as exc:
            return fs_error(exc)
        return self._operations[op](req, entry)

    def _info(self, req: Request, entry: HandleEntry) -> Response:
        now = now_ns()
        return json_response(
            200,
            {
                "handle_id": entry.id,
                "path": entry.mount_path + entry.local.path,
                "flags": entry.local.flags,
                "lease": LEASE_S,
                "expires_at": gojson.rfc3339nano(now + LEASE_S * 1_000_000_000),
                "created_at": gojson.rfc3339nano(now),
                "last_access": gojson.rfc3339nano(now),
            },
        )

    def _read(self, req: Request, entry: HandleEntry) -> Response:
        size = 4096
        if req.arg("size"):
            parsed = parse_int(req.arg("size"))
            if parsed is None:
                return error(400, "invalid size parameter")
            size = parsed if parsed >= 0 else 1024 * 1024
        try:
            if req.arg("offset"):
                offset = parse_int(req.arg("offset"))
                if offset is None:
                    return error(400, "invalid offset parameter")
                data = entry.local.read_at(size, offset)
            else:
                data = entry.local.read(size)
        except FsError as exc:
            return error(500, exc.message)
        return Response(200, data, OCTET, [("X-Bytes-Read", str(len(data)))])

    def _write(self, req: Request, entry: HandleEntry) -> Response:
        data = self.bodies.raw(req, "failed to read request body")
        if isinstance(data, Response):
            return data
        try:
            if req.arg("offset"):
                offset = parse_int(req.arg("offset"))
                if offset is None:
                    return error(400, "invalid offset parameter")
                n = entry.local.write_at(data, offset)
            else:
                n = entry.local.write(data)
        except FsError as exc:
            return error(500, exc.message)
        return json_response(200, {"bytes_written": n, "position": 0})

    def _seek(self, req: Request, entry: HandleEntry) -> Response:
        offset_s = req.arg("offset")
        if not offset_s:
            return error(400, "offset parameter is required")
        offset = parse_int(offset_s)
        if offset is None:
            return error(400, "invalid offset parameter")
        whence = 0
        if req.arg("whence"):
            parsed = parse_int(req.arg("whence"))
            if parsed is None or not 0 <= parsed <= 2:
                return error(400, "invalid whence parameter (must be 0, 1, or 2)")
            whence = parsed
        try:
            pos = entry.local.seek(offset, whence)
        except FsError as exc:
            return error(500, exc.message)
        return json_response(200, {"position": pos})

    def _sync(self, req: Request, entry: HandleEntry) -> Response:
        try:
            entry.local.sync()
        except FsError as exc:
            return error(500, exc.message)
        return json_response(200, {"message": "synced"})

    def _stat(self, req: Request, entry: HandleEntry) -> Response:
        try:
            return file_info(entry.local.stat())
        except FsError as exc:
            return fs_error(exc)

    def _stream(self, req: Request, entry: HandleEntry) -> Response:
        def chunks() -> Iterator[Bytes]:
            while True:
                try:
                    data, eof = entry.local.read_piece(STREAM_PIECE)
                except FsError:
                    return
                if len(data) or not eof:
                    yield data  # empty: nothing yet (the HTTP layer checks for a hang-up)
                if eof:
                    return

        return Response(200, content_type=OCTET, headers=[NOSNIFF], stream=chunks(), hold_head=True)
