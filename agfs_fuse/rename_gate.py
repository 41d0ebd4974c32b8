"""Renames in flight, so that a lookup of their target waits instead of failing.

An emulated rename-over (``rename.ServerRename`` on memfs) is several requests: for a moment
the server has no target at all. Another client may see that gap; this mount must not, or
a program reading a file that an editor saves by "write a temporary, rename it over" gets
ENOENT. So while a rename runs, asking the server about its target (or anything below it)
waits until the rename is over, and then sees the new file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from . import paths


class RenameGate:
    """The targets of the renames now running, each with the event that ends it."""

    def __init__(self) -> None:
        self._running: dict[str, trio.Event] = {}

    @asynccontextmanager
    async def renaming(self, target: str) -> AsyncIterator[None]:
        """Mark ``target`` as being replaced for the duration of the block. A rename onto
        a name (or below a directory) being replaced first waits for that one to end: two
        renames onto one name (a program's and an upload moved into place) take turns."""
        await self.settled(target)
        done = trio.Event()
        self._running[target] = done
        try:
            yield
        finally:
            del self._running[target]
            done.set()

    async def settled(self, path: str) -> None:
        """Return once no running rename replaces ``path`` or a directory above it."""
        while True:
            pending = [
                event for target, event in self._running.items() if paths.is_within(path, target)
            ]
            if not pending:
                return
            for event in pending:
                await event.wait()

    def __len__(self) -> int:
        return len(self._running)
