"""The global handle table of Go's ``MountableFS``.

Ids are increasing integers shared by every mount, starting at 1. Handles never expire
(whatever the ``lease`` field of the open answer says); only DELETE removes them, and an
unknown or closed id answers 404 ``not found``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agfs_fuse.server.errors import bare_not_found
from agfs_fuse.server.plugins.base import FileHandle


@dataclass
class HandleEntry:
    """One open handle: where it was opened and the plugin's own handle."""

    id: int
    mount_path: str
    local: FileHandle
    full_path: str


class HandleTable:
    """Thread-safe id -> handle map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._handles: dict[int, HandleEntry] = {}

    def add(self, mount_path: str, local: FileHandle, full_path: str) -> HandleEntry:
        """Register a freshly opened handle under a new id."""
        with self._lock:
            self._next += 1
            entry = HandleEntry(self._next, mount_path, local, full_path)
            self._handles[entry.id] = entry
            return entry

    def get(self, handle_id: int) -> HandleEntry:
        """The handle, or 404 ``not found``."""
        with self._lock:
            entry = self._handles.get(handle_id)
        if entry is None:
            raise bare_not_found()
        return entry

    def close(self, handle_id: int) -> None:
        """Forget the handle and close it, or 404 ``not found``."""
        with self._lock:
            entry = self._handles.pop(handle_id, None)
        if entry is None:
            raise bare_not_found()
        entry.local.close()

    def ids(self) -> list[int]:
        """Ids of every open handle, ascending."""
        with self._lock:
            return sorted(self._handles)
