"""Mount lifecycle tracking behind /health, /ready and /mounts (Go ``MountStatusTracker``).

Configured mounts are tracked even when they fail, so a localfs whose ``local_dir`` is
missing leaves the server running but ``degraded``: /ready answers 503 and /mounts shows
the failure with its message.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from agfs_fuse.server import pathutil

PENDING = "pending"
MOUNTED = "mounted"
FAILED = "failed"


@dataclass
class MountStatus:
    """One configured mount's state."""

    path: str
    plugin_name: str
    instance: str
    status: str = PENDING
    error: str = ""
    config: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """``MountInfo`` with Go's ``omitempty`` fields left out when empty."""
        out: dict[str, Any] = {"path": self.path, "pluginName": self.plugin_name}
        if self.instance:
            out["instance"] = self.instance
        if self.status:
            out["status"] = self.status
        if self.error:
            out["error"] = self.error
        if self.config:
            out["config"] = dict(sorted(self.config.items()))
        return out


class MountStatusTracker:
    """Thread-safe path -> ``MountStatus``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statuses: dict[str, MountStatus] = {}

    def track(self, plugin: str, instance: str, path: str, config: dict[str, Any] | None) -> None:
        """Record a configured mount as pending."""
        path = pathutil.normalize(path)
        with self._lock:
            self._statuses[path] = MountStatus(
                path, plugin, instance, PENDING, "", dict(config) if config else None
            )

    def _update(self, path: str, status: str, error: str) -> None:
        path = pathutil.normalize(path)
        with self._lock:
            cur = self._statuses.setdefault(path, MountStatus(path, "", ""))
            cur.status, cur.error = status, error

    def set_mounted(self, path: str) -> None:
        """The mount is live."""
        self._update(path, MOUNTED, "")

    def set_failed(self, path: str, error: str) -> None:
        """The mount failed, with a user-visible reason."""
        self._update(path, FAILED, error)

    def statuses(self) -> list[MountStatus]:
        """All statuses sorted by path."""
        with self._lock:
            return [self._statuses[p] for p in sorted(self._statuses)]

    def summary(self) -> dict[str, int]:
        """``{"total","pending","mounted","failed"}`` counts."""
        out = {"total": 0, "pending": 0, "mounted": 0, "failed": 0}
        for s in self.statuses():
            out["total"] += 1
            out[s.status] = out.get(s.status, 0) + 1
        return out

    def health(self, version: str, commit: str, build: str) -> dict[str, Any]:
        """The /health and /ready body."""
        summary = self.summary()
        ready = summary["pending"] == 0 and summary["failed"] == 0
        degraded = summary["failed"] > 0
        status = "degraded" if degraded else ("starting" if not ready else "healthy")
        return {
            "status": status,
            "version": version,
            "gitCommit": commit,
            "buildTime": build,
            "ready": ready,
            "degraded": degraded,
            "mounts": summary,
        }
