"""The ``/api/v1`` routes, with the real server's status codes and message texts.

Routing follows Go's ``ServeMux``: exact paths, the ``/api/v1/handles/`` subtree, a 301
from ``/api/v1/handles`` to ``/api/v1/handles/``, a 301 to the cleaned path for paths
like ``/api/v1//files``, the JSON banner at ``/`` and Go's plain-text ``404 page not
found`` for everything else. A wrong method on a known route is ``405 {"error":"method
not allowed"}`` except on ``/health`` (any method) and ``/handles/`` (400).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from agfs_fuse.server import BUILD_TIME, GIT_COMMIT, VERSION, gojson, pathutil
from agfs_fuse.server.errors import FsError
from agfs_fuse.server.goregex import Regex, RegexError, compile_go, search_line
from agfs_fuse.server.handles import HandleEntry
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import BodyError, BodyTooLarge, Request
from agfs_fuse.server.jsonbody import JSONBodyError, decode
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.plugins.base import Bytes, FileInfo, FileRange, now_ns
from agfs_fuse.server.status import MOUNTED, MountStatusTracker

log = logging.getLogger("agfs_fuse.server")

PREFIX = "/api/v1"
OCTET = "application/octet-stream"
STREAM_PIECE = 64 * 1024
_INT = re.compile(r"^[+-]?[0-9]+$")
_OCTAL = re.compile(r"^[0-7]+$")
_HANDLE_ID = re.compile(r"^/handles/[^/]+")

Handler = Callable[[Request], Response]


def json_response(status: int, obj: Any, close: bool = False) -> Response:
    """``writeJSON``."""
    return Response(status, gojson.encode(obj), close=close)


def error(status: int, message: str, close: bool = False) -> Response:
    """``writeError``: ``{"error": message}``."""
    return json_response(status, {"error": message}, close)


def fs_error(exc: FsError) -> Response:
    """``writeError(w, mapErrorToStatus(err), err.Error())``."""
    return error(exc.status, exc.message)


def parse_int(text: str, bits: int = 64) -> int | None:
    """``strconv.ParseInt(text, 10, bits)``; ``None`` when Go would fail."""
    if not _INT.match(text):
        return None
    value = int(text)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        return None
    return value


def parse_octal(text: str) -> int | None:
    """``strconv.ParseUint(text, 8, 32)``."""
    if not _OCTAL.match(text):
        return None
    value = int(text, 8)
    return value if value < 1 << 32 else None


METHOD_NOT_ALLOWED = "method not allowed"
PATH_REQUIRED = "path parameter is required"


class Api:
    """Every route; ``dispatch`` is the only entry point."""

    def __init__(
        self,
        mfs: MountableFS,
        tracker: MountStatusTracker,
        max_body: int,
        test_hooks: bool = False,
    ) -> None:
        self.mfs = mfs
        self.tracker = tracker
        self.max_body = max_body
        self.test_hooks = test_hooks
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        get, post = ("GET",), ("POST",)
        r: dict[str, dict[str, Handler] | Handler] = {
            "/health": self.health,
            "/ready": {"GET": self.ready},
            "/version": {"GET": self.version},
            "/capabilities": {"GET": self.capabilities},
            "/mkdir": {"POST": self.create_directory},
            "/write": {"POST": self.write_alias},
            "/list": {"GET": self.list_directory},
            "/files": {
                "POST": self.create_file,
                "GET": self.read_file,
                "PUT": self.write_file,
                "DELETE": self.delete,
            },
            "/directories": {
                "POST": self.create_directory,
                "GET": self.list_directory,
                "DELETE": self.delete,
            },
            "/stat": {"GET": self.stat},
            "/rename": {"POST": self.rename},
            "/chmod": {"POST": self.chmod},
            "/truncate": {"POST": self.truncate},
            "/grep": {"POST": self.grep},
            "/digest": {"POST": self.digest},
            "/touch": {"POST": self.touch},
            "/symlink": {"POST": self.symlink},
            "/readlink": {"GET": self.readlink},
            "/mounts": {"GET": self.mounts},
            "/handles/open": {"POST": self.open_handle},
        }
        if test_hooks:
            r["/_test/stats"] = {"GET": self.test_stats}
            r["/_test/reset"] = {"POST": self.test_reset}
        del get, post
        self.routes = {PREFIX + k: v for k, v in r.items()}

    # -- dispatch -----------------------------------------------------------------------

    def _count(self, req: Request) -> None:
        path = req.path
        if path.startswith(PREFIX + "/"):
            path = path[len(PREFIX) :]
            if path.startswith("/_test/") and self.test_hooks:
                return
            path = (
                _HANDLE_ID.sub("/handles/{id}", path)
                if not path.startswith("/handles/open")
                else path
            )
        with self._count_lock:
            self._counts[f"{req.method} {path}"] += 1

    def dispatch(self, req: Request) -> Response:
        """Route one request."""
        log.debug("%s %s%s", req.method, req.path, "?" + req.raw_query if req.raw_query else "")
        self._count(req)
        path = req.path
        cleaned = _clean_request_path(path)
        if path + "/" == PREFIX + "/handles/":
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
        if path.startswith(PREFIX + "/handles/"):
            return self.handle_subtree(req, path[len(PREFIX + "/handles/") :])
        if path == "/":
            return json_response(
                200, {"service": "AGFS Server", "status": "running", "version": VERSION}
            )
        return Response(
            404,
            b"404 page not found\n",
            "text/plain; charset=utf-8",
            [("X-Content-Type-Options", "nosniff")],
        )

    # -- helpers ------------------------------------------------------------------------

    def _too_large(self) -> Response:
        return error(413, f"request body exceeds maximum size of {self.max_body} bytes", True)

    def _body(self, req: Request, invalid: str) -> bytearray | Response:
        try:
            return req.body.read_all(self.max_body)
        except BodyTooLarge:
            return self._too_large()
        except (BodyError, OSError):
            return error(400, invalid, close=True)

    def _json(
        self, req: Request, struct: str, fields: dict[str, str], invalid: str, detail: bool = False
    ) -> dict[str, Any] | Response:
        raw = self._body(req, invalid)
        if isinstance(raw, Response):
            return raw
        try:
            return decode(raw, struct, fields)
        except JSONBodyError as exc:
            return error(400, f"{invalid}: {exc}" if detail else invalid)

    @staticmethod
    def _info(info: FileInfo) -> Response:
        return json_response(200, info.as_json())

    # -- server info --------------------------------------------------------------------

    def health(self, req: Request) -> Response:
        """GET /health: 200 whatever the state (and whatever the method)."""
        return json_response(200, self.tracker.health(VERSION, GIT_COMMIT, BUILD_TIME))

    def ready(self, req: Request) -> Response:
        """GET /ready: 503 until every configured mount is up."""
        body = self.tracker.health(VERSION, GIT_COMMIT, BUILD_TIME)
        ok = body["ready"] and not body["degraded"]
        return json_response(200 if ok else 503, body)

    def version(self, req: Request) -> Response:
        """GET /version (a Go map: keys sorted)."""
        return json_response(
            200, {"buildTime": BUILD_TIME, "gitCommit": GIT_COMMIT, "version": VERSION}
        )

    def capabilities(self, req: Request) -> Response:
        """GET /capabilities: a fixed feature list."""
        return json_response(
            200,
            {"version": VERSION, "features": ["handlefs", "grep", "digest", "stream", "touch"]},
        )

    def mounts(self, req: Request) -> Response:
        """GET /mounts: failed/pending configured mounts and live ones, by path."""
        infos: list[dict[str, Any]] = []
        tracked = {s.path: s for s in self.tracker.statuses()}
        for s in tracked.values():
            if s.status != MOUNTED:
                infos.append(s.as_json())
        for m in self.mfs.mounts():
            s = tracked.get(m.path)
            if s is not None:
                item = s.as_json()
                item["status"] = MOUNTED
            else:
                item = {"path": m.path, "pluginName": m.plugin_name, "status": MOUNTED}
                if m.config:
                    item["config"] = dict(sorted(m.config.items()))
            infos.append(item)
        infos.sort(key=lambda i: i["path"])
        return json_response(200, {"mounts": infos or None})

    # -- files and directories ----------------------------------------------------------

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
            try:
                chunks = self.mfs.open_stream(path)
            except FsError as exc:
                return error(404, exc.message)
            return Response(
                200,
                content_type=OCTET,
                headers=[("X-Content-Type-Options", "nosniff")],
                stream=_Pieces(chunks),
                hold_head=True,
            )
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

    def write_file(self, req: Request) -> Response:
        """PUT /files: the body replaces the whole file."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        data = self._body(req, "failed to read request body")
        if isinstance(data, Response):
            return data
        try:
            n = self.mfs.write(path, data)
        except FsError as exc:
            return fs_error(exc)
        return json_response(200, {"message": f"Written {n} bytes"})

    def write_alias(self, req: Request) -> Response:
        """POST /write: JSON ``{"data": ...}`` or a raw body."""
        if "application/json" not in req.headers.get("content-type", ""):
            return self.write_file(req)
        body = self._json(req, "struct { Data string }", {"data": "string"}, "invalid JSON body")
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

    def stat(self, req: Request) -> Response:
        """GET /stat."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        try:
            return self._info(self.mfs.stat(path))
        except FsError as exc:
            return fs_error(exc)

    def rename(self, req: Request) -> Response:
        """POST /rename with ``{"newPath": ...}``."""
        path = req.arg("path")
        if not path:
            return error(400, PATH_REQUIRED)
        body = self._json(
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
        body = self._json(req, "handlers.ChmodRequest", {"mode": "uint32"}, "invalid request body")
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
        body = self._json(
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

    def digest(self, req: Request) -> Response:
        """POST /digest: md5 only (xxh3 is answered 501 once the file opened)."""
        body = self._json(
            req,
            "handlers.DigestRequest",
            {"algorithm": "string", "path": "string"},
            "invalid request body",
            detail=True,
        )
        if isinstance(body, Response):
            return body
        algorithm, path = body["algorithm"], body["path"]
        if algorithm not in ("xxh3", "md5"):
            return error(400, f"unsupported algorithm: {algorithm} (supported: xxh3, md5)")
        if not path:
            return error(400, "path is required")
        try:
            chunks = self.mfs.open_reader(path)
            if algorithm == "xxh3":
                if hasattr(chunks, "close"):
                    chunks.close()  # type: ignore[union-attr]
                return error(
                    501, "xxh3 digests are not implemented by the agfs-fuse reference server"
                )
            md5 = hashlib.md5()
            for chunk in chunks:
                md5.update(chunk)
        except FsError as exc:
            return error(exc.status, "failed to calculate digest: " + exc.message)
        return json_response(200, {"algorithm": algorithm, "path": path, "digest": md5.hexdigest()})

    # -- grep ---------------------------------------------------------------------------

    def grep(self, req: Request) -> Response:
        """POST /grep: regex search in a file or (recursively) a directory."""
        body = self._json(
            req,
            "handlers.GrepRequest",
            {
                "path": "string",
                "pattern": "string",
                "recursive": "bool",
                "case_insensitive": "bool",
                "stream": "bool",
                "limit": "int",
            },
            "invalid request body",
            detail=True,
        )
        if isinstance(body, Response):
            return body
        if not body["path"]:
            return error(400, "path is required")
        if not body["pattern"]:
            return error(400, "pattern is required")
        try:
            regex = compile_go(body["pattern"], body["case_insensitive"])
        except RegexError as exc:
            return error(400, f"invalid regex pattern: {exc}")
        path = body["path"]
        try:
            info = self.mfs.stat(path)
        except FsError as exc:
            return error(exc.status, "failed to stat path: " + exc.message)
        if body["stream"]:
            return Response(
                200,
                content_type="application/x-ndjson",
                stream=self._grep_stream(path, regex, info.is_dir, body["recursive"]),
            )
        if info.is_dir and not body["recursive"]:
            return error(400, "path is a directory, use recursive=true to search")
        matches: list[dict[str, Any]] = []
        try:
            if info.is_dir:
                self._grep_dir(path, regex, matches.append, top=True)
            else:
                self._grep_file(path, regex, matches.append)
        except FsError as exc:
            return error(500, "grep failed: " + exc.message)
        return json_response(200, {"matches": matches or None, "count": len(matches)})

    def _grep_file(self, path: str, regex: Regex, emit: Callable[[dict], None]) -> None:
        data = self.mfs.read(path, 0, -1)
        raw = data.read_all() if isinstance(data, FileRange) else bytes(data)
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for n, line in enumerate(lines, 1):
            if len(line) > 64 * 1024:
                raise FsError("bufio.Scanner: token too long")
            line = line.removesuffix(b"\r")
            if search_line(regex, line):
                emit({"file": path, "line": n, "content": line.decode("utf-8", "surrogateescape")})

    def _grep_dir(
        self, path: str, regex: Regex, emit: Callable[[dict], None], top: bool = False
    ) -> None:
        for entry in self.mfs.read_dir(path):
            full = pathutil.join(path, entry.name)
            try:
                if entry.is_dir:
                    self._grep_dir(full, regex, emit)
                else:
                    self._grep_file(full, regex, emit)
            except FsError as exc:
                log.warning("grep: skipping %s: %s", full, exc.message)

    def _grep_stream(
        self, path: str, regex: Regex, is_dir: bool, recursive: bool
    ) -> Iterator[bytes]:
        if is_dir and not recursive:
            yield gojson.encode({"error": "path is a directory, use recursive=true to search"})
            return
        out: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        try:
            if is_dir:
                self._grep_dir(path, regex, out.append, top=True)
            else:
                self._grep_file(path, regex, out.append)
        except FsError as exc:
            summary["error"] = exc.message
        for m in out:
            yield gojson.encode(m)
        summary["count"] = len(out)
        summary["type"] = "summary"
        yield gojson.encode(dict(sorted(summary.items())))

    # -- handles ------------------------------------------------------------------------

    def open_handle(self, req: Request) -> Response:
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
                "lease": 60,
                "expires_at": gojson.rfc3339nano(now_ns() + 60_000_000_000),
            },
        )

    def handle_subtree(self, req: Request, rest: str) -> Response:
        """``/api/v1/handles/<id>[/<operation>]`` and the handle list."""
        handle_s, _, op = rest.partition("/")
        if handle_s == "":
            if req.method == "GET":
                return json_response(200, {"handles": [], "count": 0, "max": 10000})
            return error(400, "handle ID required")
        allowed = {
            "": ("GET", "DELETE"),
            "read": ("GET",),
            "write": ("PUT",),
            "seek": ("POST",),
            "sync": ("POST",),
            "stat": ("GET",),
            "stream": ("GET",),
        }
        if op not in allowed:
            return error(404, "unknown operation: " + op)
        if req.method not in allowed[op]:
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
        return getattr(self, "_handle_" + (op or "info"))(req, entry)

    def _handle_info(self, req: Request, entry: HandleEntry) -> Response:
        now = now_ns()
        return json_response(
            200,
            {
                "handle_id": entry.id,
                "path": entry.mount_path + entry.local.path,
                "flags": entry.local.flags,
                "lease": 60,
                "expires_at": gojson.rfc3339nano(now + 60_000_000_000),
                "created_at": gojson.rfc3339nano(now),
                "last_access": gojson.rfc3339nano(now),
            },
        )

    def _handle_read(self, req: Request, entry: HandleEntry) -> Response:
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

    def _handle_write(self, req: Request, entry: HandleEntry) -> Response:
        data = self._body(req, "failed to read request body")
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

    def _handle_seek(self, req: Request, entry: HandleEntry) -> Response:
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

    def _handle_sync(self, req: Request, entry: HandleEntry) -> Response:
        try:
            entry.local.sync()
        except FsError as exc:
            return error(500, exc.message)
        return json_response(200, {"message": "synced"})

    def _handle_stat(self, req: Request, entry: HandleEntry) -> Response:
        try:
            return self._info(entry.local.stat())
        except FsError as exc:
            return fs_error(exc)

    def _handle_stream(self, req: Request, entry: HandleEntry) -> Response:
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

        return Response(
            200,
            content_type=OCTET,
            headers=[("X-Content-Type-Options", "nosniff")],
            stream=chunks(),
            hold_head=True,
        )

    # -- test hooks (not AGFS) -----------------------------------------------------------

    def test_stats(self, req: Request) -> Response:
        """GET /_test/stats: request counts by ``METHOD /route`` and open handle ids."""
        with self._count_lock:
            counts = dict(sorted(self._counts.items()))
        return json_response(200, {"requests": counts, "open_handles": self.mfs.handles.ids()})

    def test_reset(self, req: Request) -> Response:
        """POST /_test/reset: zero the counters."""
        with self._count_lock:
            self._counts.clear()
        return json_response(200, {"message": "reset"})


class _Pieces:
    """Re-cut a stream into pieces of at most 64 KiB, flushed one by one (Go does).

    Empty chunks pass through (an idle streamfs reader's tick). ``close`` closes the
    source even if iteration never started, so a streamfs reader is always unregistered.
    """

    def __init__(self, chunks: Iterator[Bytes]) -> None:
        self.chunks = chunks
        self.view = memoryview(b"")

    def __iter__(self) -> _Pieces:
        return self

    def __next__(self) -> Bytes:
        if not len(self.view):
            chunk = next(self.chunks)
            if not len(chunk):
                return chunk
            self.view = memoryview(chunk)
        piece, self.view = self.view[:STREAM_PIECE], self.view[STREAM_PIECE:]
        return piece

    def close(self) -> None:
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()


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
