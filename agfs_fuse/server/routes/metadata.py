"""One path's metadata and name: ``/stat``, ``/rename``, ``/chmod``, ``/truncate``,
``/touch``, ``/symlink`` and ``/readlink``."""

from __future__ import annotations

from agfs_fuse.server.errors import FsError
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.routes.bodies import BodyReader
from agfs_fuse.server.routes.params import parse_int
from agfs_fuse.server.routes.replies import PATH_REQUIRED, error, file_info, fs_error, json_response


class MetadataRoutes:
    """Routes that change or report what a path is, never its contents."""

    def __init__(self, mfs: MountableFS, bodies: BodyReader) -> None:
        self.mfs = mfs
        self.bodies = bodies

    def stat(self, req: Request) -> Response:
        """GET /stat."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            return file_info(self.mfs.stat(path))
        except FsError as exc:
            return fs_error(exc)

    def rename(self, req: Request) -> Response:
        """POST /rename with ``{"newPath": ...}``."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        body = self.bodies.json(
            req, "handlers.RenameRequest", {"newPath": "string"}, "invalid request body"
        )
        if isinstance(body, Response):
            return body
        if not body["newPath"]:
            return error(400, "newPath is required")
        try:
            self.mfs.rename(path, body["newPath"])
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": "renamed"})

    def chmod(self, req: Request) -> Response:
        """POST /chmod with ``{"mode": <decimal>}``."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        body = self.bodies.json(
            req, "handlers.ChmodRequest", {"mode": "uint32"}, "invalid request body"
        )
        if isinstance(body, Response):
            return body
        try:
            self.mfs.chmod(path, body["mode"])
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": "permissions changed"})

    def truncate(self, req: Request) -> Response:
        """POST /truncate: ``size`` required and >= 0."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        size_s = req.arg("size")
        if not size_s:
            return error(400, "size parameter is required")
        size = parse_int(size_s)
        if size is None:
            return error(400, "invalid size parameter")
        if size < 0:
            return error(400, "size must be non-negative")
        try:
            self.mfs.truncate(path, size)
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": "truncated"})

    def touch(self, req: Request) -> Response:
        """POST /touch: creates a missing file; an existing one fails with ``EOF``."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            self.mfs.touch(path)
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": "touched"})

    def symlink(self, req: Request) -> Response:
        """POST /symlink with ``{"target": ...}``: 201."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        body = self.bodies.json(
            req, "handlers.SymlinkRequest", {"target": "string"}, "invalid request body"
        )
        if isinstance(body, Response):
            return body
        if not body["target"]:
            return error(400, "target is required")
        try:
            self.mfs.symlink(body["target"], path)
        except FsError as exc:
            return fs_error(exc)
        return json_response(201, {"message": "symlink created"})

    def readlink(self, req: Request) -> Response:
        """GET /readlink."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            return json_response(200, {"target": self.mfs.readlink(path)})
        except FsError as exc:
            return fs_error(exc)
