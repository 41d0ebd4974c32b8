"""New files whose first upload lands while a listing of their directory is in flight.

Until its first upload a new file is this mount's alone, and a listing shows it by adding
it to what the server answered (``NewFiles.with_new_files``). A listing is a request,
though: sent while the file is still local, answered by the server before the upload, it
can come back after the upload has landed, when the file is no longer local. Merged then,
the listing would show the file nowhere, although its ``close()`` returned before the
``ls`` began (the kernel sends ``release``, which uploads an empty new file, after
``close()`` has returned). So a listing watches its directory while it waits: what lands
meanwhile is added to its answer, and what this mount unlinks or renames meanwhile is
followed, so the answer shows what the mount knows at the moment it is merged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

from . import paths
from .models import FileInfo


class Landed:
    """What landed in one directory while one listing of it was in flight."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._files: dict[str, FileInfo] = {}  # path -> what the mount showed of it

    def add(self, path: str, info: FileInfo) -> None:
        if paths.split(path)[0] == self.directory:
            self._files[path] = info

    def drop(self, path: str) -> None:
        """``path`` (and everything below it) is gone from the server."""
        for landed in [p for p in self._files if paths.is_within(p, path)]:
            del self._files[landed]

    def move(self, old: str, new: str) -> None:
        """``old`` (and everything below it) is now ``new``: kept when still in the
        watched directory."""
        moved = {p: i for p, i in self._files.items() if paths.is_within(p, old)}
        for path in moved:
            del self._files[path]
        for path, info in moved.items():
            now = paths.rebase(path, old, new)
            self.add(now, dataclasses.replace(info, name=paths.split(now)[1]))

    def missing_from(self, listed: list[FileInfo]) -> list[FileInfo]:
        """The landed files a listing answered before their upload lacks, by name."""
        names = {info.name for info in listed}
        found = [info for info in self._files.values() if info.name not in names]
        return sorted(found, key=lambda info: info.name)


class Landings:
    """The listings in flight, each told of the new files that land in its directory."""

    def __init__(self) -> None:
        self._watching: list[Landed] = []

    @contextmanager
    def watch(self, directory: str) -> Iterator[Landed]:
        """Collect the new files that land in ``directory`` while the block runs."""
        landed = Landed(directory)
        self._watching.append(landed)
        try:
            yield landed
        finally:
            self._watching.remove(landed)

    def landed(self, path: str, info: FileInfo) -> None:
        """A new file's first upload put it at ``path`` on the server."""
        for landed in self._watching:
            landed.add(path, info)

    def removed(self, path: str) -> None:
        """``path`` is gone from the server through this mount (unlinked, replaced)."""
        for landed in self._watching:
            landed.drop(path)

    def renamed(self, old: str, new: str) -> None:
        for landed in self._watching:
            landed.move(old, new)
