"""The answers every route group builds: Go's ``writeJSON`` and ``writeError``.

Message texts shared by several groups live here so that a wording fix (clients parse
these texts; docs/PROTOCOL.md, Errors) happens in one place.
"""

from __future__ import annotations

from typing import Any

from agfs_fuse.server import gojson
from agfs_fuse.server.errors import FsError
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.plugins.base import FileInfo

OCTET = "application/octet-stream"
#: Sent, as the real server sends it, on streamed answers and on the plain-text 404 page.
NOSNIFF = ("X-Content-Type-Options", "nosniff")
METHOD_NOT_ALLOWED = "method not allowed"
PATH_REQUIRED = "path parameter is required"


def json_response(status: int, obj: Any, close: bool = False) -> Response:
    """``writeJSON``."""
    return Response(status, gojson.encode(obj), close=close)


def error(status: int, message: str, close: bool = False) -> Response:
    """``writeError``: ``{"error": message}``."""
    return json_response(status, {"error": message}, close)


def fs_error(exc: FsError) -> Response:
    """``writeError(w, mapErrorToStatus(err), err.Error())``."""
    return error(exc.status, exc.message)


def file_info(info: FileInfo) -> Response:
    """A ``FileInfo`` as /stat and the handle ``stat`` answer it."""
    return json_response(200, info.as_json())
