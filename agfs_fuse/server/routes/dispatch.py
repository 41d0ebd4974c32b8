"""The routing table and Go ``ServeMux``'s routing rules.

Routing follows Go's ``ServeMux``: exact paths, the ``/api/v1/handles/`` subtree, a 301
from ``/api/v1/handles`` to ``/api/v1/handles/``, a 301 to the cleaned path for paths
like ``/api/v1//files``, the JSON banner at ``/`` and Go's plain-text ``404 page not
found`` for everything else. A wrong method on a known route is ``405 {"error":"method
not allowed"}`` except on ``/health`` (any method) and ``/handles/`` (400).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import quote

from agfs_fuse.server import pathutil
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.routes.bodies import BodyReader
from agfs_fuse.server.routes.files import FileRoutes
from agfs_fuse.server.routes.handles import HandleRoutes
from agfs_fuse.server.routes.info import InfoRoutes
from agfs_fuse.server.routes.metadata import MetadataRoutes
from agfs_fuse.server.routes.replies import METHOD_NOT_ALLOWED, NOSNIFF, error
from agfs_fuse.server.routes.search import SearchRoutes
from agfs_fuse.server.routes.testhooks import TEST_PREFIX, RequestCounter
from agfs_fuse.server.status import MountStatusTracker

log = logging.getLogger("agfs_fuse.server")

PREFIX = "/api/v1"
HANDLES = PREFIX + "/handles/"

Handler = Callable[[Request], Response]
#: A route: one handler for every method, or a handler per allowed method.
Route = Handler | dict[str, Handler]


class Api:
    """Every route; ``dispatch`` is the only entry point."""

    def __init__(
        self,
        mfs: MountableFS,
        tracker: MountStatusTracker,
        max_body: int,
        test_hooks: bool = False,
    ) -> None:
        bodies = BodyReader(max_body)
        info = InfoRoutes(mfs, tracker)
        files = FileRoutes(mfs, bodies)
        meta = MetadataRoutes(mfs, bodies)
        search = SearchRoutes(mfs, bodies)
        self.handles = HandleRoutes(mfs, bodies)
        self.counter = RequestCounter(mfs, PREFIX, hooks_served=test_hooks)
        self.banner = info.banner
        table: dict[str, Route] = {
            "/health": info.health,
            "/ready": {"GET": info.ready},
            "/version": {"GET": info.version},
            "/capabilities": {"GET": info.capabilities},
            "/mkdir": {"POST": files.create_directory},
            "/write": {"POST": files.write_alias},
            "/list": {"GET": files.list_directory},
            "/files": {
                "POST": files.create_file,
                "GET": files.read_file,
                "PUT": files.write_file,
                "DELETE": files.delete,
            },
            "/directories": {
                "POST": files.create_directory,
                "GET": files.list_directory,
                "DELETE": files.delete,
            },
            "/stat": {"GET": meta.stat},
            "/rename": {"POST": meta.rename},
            "/chmod": {"POST": meta.chmod},
            "/truncate": {"POST": meta.truncate},
            "/grep": {"POST": search.grep},
            "/digest": {"POST": search.digest},
            "/touch": {"POST": meta.touch},
            "/symlink": {"POST": meta.symlink},
            "/readlink": {"GET": meta.readlink},
            "/mounts": {"GET": info.mounts},
            "/handles/open": {"POST": self.handles.open},
        }
        if test_hooks:
            table[TEST_PREFIX + "stats"] = {"GET": self.counter.stats}
            table[TEST_PREFIX + "reset"] = {"POST": self.counter.reset}
        self.routes = {PREFIX + path: route for path, route in table.items()}

    def dispatch(self, req: Request) -> Response:
        """Route one request."""
        log.debug("%s %s%s", req.method, req.path, "?" + req.raw_query if req.raw_query else "")
        self.counter.count(req)
        path = req.path
        cleaned = _clean_request_path(path)
        if path + "/" == HANDLES:
            return _redirect(req, path + "/")
        if cleaned != path:
            return _redirect(req, cleaned)
        route = self.routes.get(path)
        if route is not None:
            if callable(route):
                return route(req)
            handler = route.get(req.method)
            if handler is None:
                return error(405, METHOD_NOT_ALLOWED)
            return handler(req)
        if path.startswith(HANDLES):
            return self.handles.subtree(req, path[len(HANDLES) :])
        if path == "/":
            return self.banner()
        return Response(404, b"404 page not found\n", "text/plain; charset=utf-8", [NOSNIFF])


def _clean_request_path(path: str) -> str:
    """Go ``ServeMux``'s ``cleanPath``: cleaned, trailing slash kept."""
    if path == "":
        return "/"
    if not path.startswith("/"):
        path = "/" + path
    cleaned = pathutil.clean(path)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _redirect(req: Request, target: str) -> Response:
    """``http.Redirect(..., 301)`` as ``ServeMux`` issues it (query kept)."""
    url = quote(target, safe="/:@!$&'()*+,;=-._~")
    if req.raw_query:
        url += "?" + req.raw_query
    if req.method in ("GET", "HEAD"):
        escaped = url.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
        body = f'<a href="{escaped}">Moved Permanently</a>.\n\n'.encode()
        return Response(301, body, "text/html; charset=utf-8", [("Location", url)])
    return Response(301, b"", None, [("Location", url)])
