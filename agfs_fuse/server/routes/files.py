"""``/files`` and ``/directories``, with their aliases ``/mkdir``, ``/write`` and ``/list``."""

from __future__ import annotations

from agfs_fuse.server.errors import FsError
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.plugins.base import FileRange
from agfs_fuse.server.routes.bodies import BodyReader
from agfs_fuse.server.routes.params import parse_int, parse_octal
from agfs_fuse.server.routes.pieces import Pieces
from agfs_fuse.server.routes.replies import (
    NOSNIFF,
    OCTET,
    PATH_REQUIRED,
    error,
    fs_error,
    json_response,
)


class FileRoutes:
    """Whole-file reads and writes, creation, deletion and listing."""

    def __init__(self, mfs: MountableFS, bodies: BodyReader) -> None:
        self.mfs = mfs
        self.bodies = bodies

    def create_file(self, req: Request) -> Response:
        """POST /files: 201 ``file created``."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            self.mfs.create(path)
        except FsError as exc:
            return fs_error(exc)
        return json_response(201, {"message": "file created"})

    def create_directory(self, req: Request) -> Response:
        """POST /directories: ``mode`` is an octal string, default 755."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        mode_s = req.arg("mode")
        mode = 0o755
        if mode_s:
            parsed = parse_octal(mode_s)
            if parsed is None:
                return error(400, "invalid mode")
            mode = parsed
        try:
            self.mfs.mkdir(path, mode)
        except FsError as exc:
            return fs_error(exc)
        return json_response(201, {"message": "directory created"})

    def read_file(self, req: Request) -> Response:
        """GET /files: ranged read, or ``stream=true``."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        if req.arg("stream") == "true":
            return self._stream(path)
        offset, size = 0, -1
        if req.arg("offset"):
            parsed = parse_int(req.arg("offset"))
            if parsed is None:
                return error(400, "invalid offset parameter")
            offset = parsed
        if req.arg("size"):
            parsed = parse_int(req.arg("size"))
            if parsed is None:
                return error(400, "invalid size parameter")
            size = parsed
        try:
            data = self.mfs.read(path, offset, size, allow_range=True)
        except FsError as exc:
            return fs_error(exc)
        if isinstance(data, FileRange):
            return Response(200, content_type=OCTET, file_range=data)
        return Response(200, data, OCTET)

    def _stream(self, path: str) -> Response:
        """``stream=true``: the head waits for the first piece; any failure is a 404."""
        try:
            chunks = self.mfs.open_stream(path)
        except FsError as exc:
            return error(404, exc.message)
        return Response(
            200, content_type=OCTET, headers=[NOSNIFF], stream=Pieces(chunks), hold_head=True
        )

    def write_file(self, req: Request) -> Response:
        """PUT /files: the body replaces the whole file."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        data = self.bodies.raw(req, "failed to read request body")
        if isinstance(data, Response):
            return data
        try:
            n = self.mfs.write(path, data)
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": f"Written {n} bytes"})

    def write_alias(self, req: Request) -> Response:
        """POST /write: JSON ``{"data": ...}`` or a raw body.

        The JSON body is read before ``path`` is checked, as Go does.
        """
        if "application/json" not in req.headers.get("content-type", ""):
            return self.write_file(req)
        body = self.bodies.json(
            req, "struct { Data string }", {"data": "string"}, "invalid JSON body"
        )
        if isinstance(body, Response):
            return body
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            n = self.mfs.write(path, body["data"].encode("utf-8", "surrogateescape"))
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": f"Written {n} bytes"})

    def delete(self, req: Request) -> Response:
        """DELETE /files or /directories (``recursive=true`` for a tree)."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            if req.arg("recursive") == "true":
                self.mfs.remove_all(path)
            else:
                self.mfs.remove(path)
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": "deleted"})

    def list_directory(self, req: Request) -> Response:
        """GET /directories: ``{"files": null}`` for an empty directory."""
        path = req.arg("path") or "/"
        try:
            infos = self.mfs.read_dir(path)
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"files": [i.as_json() for i in infos] or None})
