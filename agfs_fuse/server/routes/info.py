"""What the server says about itself: ``/health``, ``/ready``, ``/version``,
``/capabilities``, ``/mounts`` and the JSON banner at ``/``."""

from __future__ import annotations

from typing import Any

from agfs_fuse.server import BUILD_TIME, GIT_COMMIT, VERSION
from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import Request
from agfs_fuse.server.mountable import MountableFS
from agfs_fuse.server.routes.replies import json_response
from agfs_fuse.server.status import MOUNTED, MountStatusTracker


class InfoRoutes:
    """Server state as the tracker and the mount table see it."""

    def __init__(self, mfs: MountableFS, tracker: MountStatusTracker) -> None:
        self.mfs = mfs
        self.tracker = tracker

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
        for status in tracked.values():
            if status.status != MOUNTED:
                infos.append(status.as_json())
        for m in self.mfs.mounts():
            configured = tracked.get(m.path)
            if configured is not None:
                item = configured.as_json()
                item["status"] = MOUNTED
            else:
                item = {"path": m.path, "pluginName": m.plugin_name, "status": MOUNTED}
                if m.config:
                    item["config"] = dict(sorted(m.config.items()))
            infos.append(item)
        infos.sort(key=lambda i: i["path"])
        return json_response(200, {"mounts": infos or None})

    @staticmethod
    def banner() -> Response:
        """GET / (any method): the service banner."""
        return json_response(
            200, {"service": "AGFS Server", "status": "running", "version": VERSION}
        )
