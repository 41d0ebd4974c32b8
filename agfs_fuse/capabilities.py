"""What the server can do where: the plugin behind each path, and what it has taught us.

``GET /mounts`` names the plugin serving each mount point; the plugin decides how files
are read (volatile or not) and written (whole-file PUT, messages, appends, handles).
Two things are learned on the way and remembered until the next reload: mount points whose
plugin refused the handle API (501), and the server's request body limit (413).
"""

from __future__ import annotations

from . import paths
from .models import MountPoint

# Plugins implementing the handle API (docs/PROTOCOL.md, Handles); others answer 501.
HANDLE_PLUGINS = frozenset({"memfs", "queuefs", "streamfs", "sqlfs2"})
# Plugins whose every file has an untrusted size or destructive reads
# (docs/PROTOCOL.md, Volatile and stream files).
VOLATILE_PLUGINS = frozenset(
    {"queuefs", "streamfs", "streamrotatefs", "heartbeatfs", "serverinfofs", "sqlfs2"}
)
# Plugins where a PUT appends instead of replacing.
APPEND_PLUGINS = frozenset({"streamfs", "streamrotatefs"})
# A queue directory and the control files inside it.
QUEUE_PLUGIN = "queuefs"


class Capabilities:
    def __init__(self, mounts: list[MountPoint] | None = None) -> None:
        self.set_mounts(mounts or [])

    def set_mounts(self, mounts: list[MountPoint]) -> None:
        """A fresh view of the server (mount time, reload): forget what was learned."""
        self._mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)
        self._no_handles: set[str] = set()
        self.body_limit: int | None = None

    def mount_point(self, path: str) -> MountPoint | None:
        for mount in self._mounts:
            if paths.is_within(path, mount.path):
                return mount
        return None

    def plugin_for(self, path: str) -> str:
        mount = self.mount_point(path)
        return mount.plugin if mount else ""

    def handles(self, path: str) -> bool:
        """Whether to use the handle API for ``path``."""
        mount = self.mount_point(path)
        return (
            mount is not None
            and mount.plugin in HANDLE_PLUGINS
            and mount.path not in self._no_handles
        )

    def refuse_handles(self, path: str) -> None:
        """The plugin answered 501 to a handle request: stop asking under its mount."""
        mount = self.mount_point(path)
        if mount is not None:
            self._no_handles.add(mount.path)

    def learn_body_limit(self, refused_size: int) -> None:
        """A body of ``refused_size`` bytes was refused (413): the limit is below it."""
        if self.body_limit is None or refused_size <= self.body_limit:
            self.body_limit = max(0, refused_size - 1)

    def fits_one_request(self, size: int) -> bool:
        return self.body_limit is None or size <= self.body_limit

    def volatile(self, path: str) -> bool:
        return self.plugin_for(path) in VOLATILE_PLUGINS

    def appends(self, path: str) -> bool:
        return self.plugin_for(path) in APPEND_PLUGINS

    def is_queue(self, path: str) -> bool:
        return self.plugin_for(path) == QUEUE_PLUGIN
