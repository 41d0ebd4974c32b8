"""Request counting and the ``/_test/*`` routes: what tests ask the server, not AGFS.

Tests prove "this read went out once" or "no handle leaked" by asking the server what it
saw. Every request is counted by ``METHOD /route``, handle ids folded into ``{id}`` so the
counts stay comparable; the hooks' own requests are not counted while they are served.
"""

from __future__ import annotations

import re
import threading
from collections import Counter

from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.routes.replies import json_response

TEST_PREFIX = "/_test/"
_HANDLE_ID = re.compile(r"^/handles/[^/]+")


class RequestCounter:
    """Thread-safe counts of the requests served, and the routes that expose them."""

    def __init__(self, mfs: MountableFS, prefix: str, hooks_served: bool) -> None:
        self.mfs = mfs
        self.prefix = prefix
        self.hooks_served = hooks_served
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, req: Request) -> None:
        """Count ``req`` under ``METHOD /route`` (paths outside the API: as they came)."""
        path = req.path
        if path.startswith(self.prefix + "/"):
            path = path[len(self.prefix) :]
            if path.startswith(TEST_PREFIX) and self.hooks_served:
                return
            if not path.startswith("/handles/open"):
                path = _HANDLE_ID.sub("/handles/{id}", path)
        with self._lock:
            self._counts[f"{req.method} {path}"] += 1

    def stats(self, req: Request) -> Response:
        """GET /_test/stats: request counts by ``METHOD /route`` and open handle ids."""
        with self._lock:
            counts = dict(sorted(self._counts.items()))
        return json_response(200, {"requests": counts, "open_handles": self.mfs.handles.ids()})

    def reset(self, req: Request) -> Response:
        """POST /_test/reset: zero the counters."""
        with self._lock:
            self._counts.clear()
        return json_response(200, {"message": "reset"})
