"""``/grep`` and ``/digest``: the routes that read whole files for the client.

Grep runs Go's regex dialect on RE2 (see ``goregex``) and reads files the way Go's
``bufio.Scanner`` does: lines split on ``\\n``, a trailing ``\\r`` dropped, a line over
64 KiB an error. In a recursive grep, whatever cannot be read below the top is
logged and skipped rather than failing the search.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from agfs_fuse.server import gojson, pathutil
from agfs_fuse.server.errors import FsError
from agfs_fuse.server.goregex import Regex, RegexError, compile_go, search_line
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.plugins.base import FileRange
from agfs_fuse.server.routes.bodies import BodyReader
from agfs_fuse.server.routes.replies import error, json_response

log = logging.getLogger("agfs_fuse.server")

#: ``bufio.Scanner``'s default maximum token size.
MAX_LINE = 64 * 1024

_Emit = Callable[[dict[str, Any]], None]

_GREP_FIELDS = {
    "path": "string",
    "pattern": "string",
    "recursive": "bool",
    "case_insensitive": "bool",
    "stream": "bool",
    "limit": "int",
}
_DIRECTORY_NEEDS_RECURSIVE = "path is a directory, use recursive=true to search"


class SearchRoutes:
    """Content searches and checksums over the mounted filesystems."""

    def __init__(self, mfs: MountableFS, bodies: BodyReader) -> None:
        self.mfs = mfs
        self.bodies = bodies

    def digest(self, req: Request) -> Response:
        """POST /digest: md5 only (xxh3 is answered 501 once the file opened)."""
        body = self.bodies.json(
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
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
                return error(
                    501, "xxh3 digests are not implemented by the agfs-fuse reference server"
                )
            md5 = hashlib.md5()
            for chunk in chunks:
                md5.update(chunk)
        except FsError as exc:
            return error(exc.status, "failed to calculate digest: " + exc.message)
        return json_response(200, {"algorithm": algorithm, "path": path, "digest": md5.hexdigest()})

    def grep(self, req: Request) -> Response:
        """POST /grep: regex search in a file or (recursively) a directory."""
        body = self.bodies.json(
            req, "handlers.GrepRequest", _GREP_FIELDS, "invalid request body", detail=True
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
            return error(400, _DIRECTORY_NEEDS_RECURSIVE)
        matches: list[dict[str, Any]] = []
        try:
            self._grep_path(path, regex, info.is_dir, matches.append)
        except FsError as exc:
            return error(500, "grep failed: " + exc.message)
        return json_response(200, {"matches": matches or None, "count": len(matches)})

    def _grep_path(self, path: str, regex: Regex, is_dir: bool, emit: _Emit) -> None:
        if is_dir:
            self._grep_dir(path, regex, emit)
        else:
            self._grep_file(path, regex, emit)

    def _grep_file(self, path: str, regex: Regex, emit: _Emit) -> None:
        data = self.mfs.read(path, 0, -1)
        raw = data.read_all() if isinstance(data, FileRange) else bytes(data)
        lines = raw.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for n, line in enumerate(lines, 1):
            if len(line) > MAX_LINE:
                raise FsError("bufio.Scanner: token too long")
            line = line.removesuffix(b"\r")
            if search_line(regex, line):
                emit({"file": path, "line": n, "content": line.decode("utf-8", "surrogateescape")})

    def _grep_dir(self, path: str, regex: Regex, emit: _Emit) -> None:
        for entry in self.mfs.read_dir(path):
            full = pathutil.join(path, entry.name)
            try:
                self._grep_path(full, regex, entry.is_dir, emit)
            except FsError as exc:
                log.warning("grep: skipping %s: %s", full, exc.message)

    def _grep_stream(
        self, path: str, regex: Regex, is_dir: bool, recursive: bool
    ) -> Iterator[bytes]:
        """NDJSON: one line per match, then a summary (with the error, if one stopped it)."""
        if is_dir and not recursive:
            yield gojson.encode({"error": _DIRECTORY_NEEDS_RECURSIVE})
            return
        out: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        try:
            self._grep_path(path, regex, is_dir, out.append)
        except FsError as exc:
            summary["error"] = exc.message
        for m in out:
            yield gojson.encode(m)
        summary["count"] = len(out)
        summary["type"] = "summary"
        yield gojson.encode(dict(sorted(summary.items())))
