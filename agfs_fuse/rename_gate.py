"""Renames in flight, so that a lookup of their target waits instead of failing.

An emulated rename-over (``rename.ServerRename`` on memfs) is several requests: for a moment
the server has no target at all. Another client may see that gap; this mount must not, or
a program reading a file that an editor saves by "write a temporary, rename it over" gets
ENOENT. So while a rename runs, asking the server about its source or target (or anything
below them) waits until the rename is over, and then sees the outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from . import paths


class RenameGate:
    """The names the renames now running change, each with the event that ends it."""

    def __init__(self) -> None:
        self._running: dict[str, trio.Event] = {}

    @asynccontextmanager
    async def renaming(self, *names: str) -> AsyncIterator[None]:
        """Mark the ``names`` a rename changes (its source and target) for the duration
        of the block. A rename of a name (or below a directory) another one is changing
        first waits for that one to end: two renames onto one name (a program's and an
        upload moved into place) take turns; so does a rename of a directory while one
        below it runs (a renamed directory would otherwise take the other's source away,
        and its target would land under the old name, hidden)."""
        while conflicts := [event for name in names for event in self._overlapping(name)]:
            for event in conflicts:
                await event.wait()
        done = trio.Event()
        for name in names:
            self._running[name] = done
        try:
            yield
        finally:
            for name in names:
                del self._running[name]
            done.set()

    async def settled(self, path: str) -> None:
        """Return once no running rename changes ``path`` or a directory above it."""
        while pending := self._pending(path):
            for event in pending:
                await event.wait()

    def _pending(self, path: str) -> list[trio.Event]:
        """Renames changing ``path`` or a directory above it: what a lookup waits for."""
        return [event for name, event in self._running.items() if paths.is_within(path, name)]

    def _overlapping(self, path: str) -> list[trio.Event]:
        """Renames changing ``path``, a directory above it or anything below it: what
        another rename of ``path`` waits for."""
        return [
            event
            for name, event in self._running.items()
            if paths.is_within(path, name) or paths.is_within(name, path)
        ]

    def __len__(self) -> int:
        return len(self._running)
