"""POSIX rename on the server, where AGFS's own rename falls short.

AGFS's rename refuses an existing target on memfs, ignores symlinks (they live in the
server's memory, beside the plugin) and cannot move a link at all. So the target is looked
at first and each case is handled before the plugin sees it: a target is moved aside to a
hidden name (``asides``), links are re-made, and the links under a renamed directory are
moved with it. The target is never lost: before it is moved aside, an intent record is
written (``rename_journal``); if a step fails or its answer is lost, what the server now
has decides whether the rename is finished or undone (``rename_recovery``), and if the
mount dies in the middle, the next mount does the same from the record. What the mount
keeps locally (caches, spools) is the filesystem's business, around this.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from . import paths
from .asides import new_aside_name
from .client import AgfsClient
from .errors import (
    AgfsError,
    AlreadyExists,
    DirectoryNotEmpty,
    IsADirectory,
    NotADirectory,
    NotFound,
)
from .models import FileInfo
from .rename_journal import RenameIntent, RenameJournal
from .rename_recovery import Outcome, settle

log = logging.getLogger("agfs_fuse.filesystem")


@dataclass(frozen=True)
class KeptAside:
    """A replaced file kept under its aside name because it is still open on this mount
    (NFS calls it a silly rename): its readers go on reading the old file, as POSIX says.
    ``ServerRename.discard`` deletes it, and its intent record, when the last one closes."""

    aside: str
    record: Path | None


class ServerRename:
    """One rename, made of the requests the server understands."""

    def __init__(
        self,
        client: AgfsClient,
        stat: Callable[[str], Awaitable[FileInfo]],
        stat_or_none: Callable[[str], Awaitable[FileInfo | None]],
        *,
        journal: RenameJournal | None = None,
        keep_replaced: Callable[[], bool] | None = None,
    ) -> None:
        """``stat`` and ``stat_or_none`` ask the server (not a cache), and may cache.
        With a ``journal``, a target set aside is recorded there first, so that a crash
        in the middle is settled by the next mount. When ``keep_replaced`` says so at the
        end, a replaced file is not deleted but left in ``kept``, under its aside name."""
        self.client = client
        self._stat = stat
        self._stat_or_none = stat_or_none
        self._journal = journal
        self._keep_replaced = keep_replaced
        self.kept: KeptAside | None = None

    async def run(self, old: str, new: str, noreplace: bool) -> None:
        source, target = await self._look_at_both(old, new)
        if target is not None:
            if noreplace:
                raise AlreadyExists("file exists", path=new)
            await self._check_replaceable(source, target, new)
        if source.is_symlink:
            link_target = await self.client.readlink(old)
            async with self._target_set_aside(old, new, target):
                await self.client.symlink(link_target, new)
            await self.client.delete(old)
        elif target is not None and target.is_symlink:
            async with self._target_set_aside(old, new, target):
                await self.client.rename(old, new)
        else:
            links = await self._links_below(old) if source.is_dir else []
            try:
                await self.client.rename(old, new)
            except AlreadyExists:
                if target is None:
                    raise  # appeared meanwhile: someone else's file, not ours to remove
                async with self._target_set_aside(old, new, target):
                    await self.client.rename(old, new)
            await self._move_links(links, old, new)

    async def _look_at_both(self, old: str, new: str) -> tuple[FileInfo, FileInfo | None]:
        """The source's attributes and the target's (None: no target), asked at once: the
        two requests are independent, so they cost one round trip, not two. A failure
        of the source's is the one reported (ENOENT for a missing source comes first)."""
        found: dict[str, FileInfo | None] = {}
        failed: dict[str, AgfsError] = {}

        async def look(
            name: str, ask: Callable[[str], Awaitable[FileInfo | None]], path: str
        ) -> None:
            try:
                found[name] = await ask(path)
            except AgfsError as exc:
                failed[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(look, "source", self._stat, old)
            nursery.start_soon(look, "target", self._stat_or_none, new)
        for name in ("source", "target"):
            if name in failed:
                raise failed[name]
        source = found["source"]
        assert source is not None  # ``stat`` answers or raises
        return source, found["target"]

    async def _links_below(self, top: str) -> list[tuple[str, str]]:
        """Every symlink under directory ``top``, with its target.

        The server keeps links in a table of its own, keyed by path, which the plugin's
        rename does not touch: moving a directory would leave its links behind.
        """
        found: list[tuple[str, str]] = []
        pending = [top]
        while pending:
            directory = pending.pop()
            for info in await self.client.list(directory):
                child = paths.join(directory, info.name)
                if info.is_symlink:
                    found.append((child, await self.client.readlink(child)))
                elif info.is_dir:
                    pending.append(child)
        return found

    async def _move_links(self, links: list[tuple[str, str]], old: str, new: str) -> None:
        """Re-make the links of a renamed directory ``old`` under ``new``."""
        for link, link_target in links:
            moved = paths.rebase(link, old, new)
            try:
                await self.client.symlink(link_target, moved)
                await self.client.delete(link)
            except AgfsError as exc:
                log.error("renamed %s but could not move its link %s: %s", old, link, exc)

    async def _check_replaceable(self, source: FileInfo, target: FileInfo, new: str) -> None:
        """The errors POSIX rename gives when ``target`` cannot be replaced by ``source``."""
        source_is_dir = source.is_dir and not source.is_symlink
        target_is_dir = target.is_dir and not target.is_symlink
        if target_is_dir and not source_is_dir:
            raise IsADirectory("is a directory", path=new)
        if source_is_dir and not target_is_dir:
            raise NotADirectory("not a directory", path=new)
        if target_is_dir and await self.client.list(new):
            raise DirectoryNotEmpty("directory not empty", path=new)

    @asynccontextmanager
    async def _target_set_aside(
        self, old: str, new: str, target: FileInfo | None
    ) -> AsyncIterator[None]:
        """Get an existing target out of the way for the body, which puts ``old`` in its
        place; remove it once the body succeeded. A file or directory is renamed to a
        hidden name (its data never leaves the server); a link is remembered and re-made.
        """
        if target is None:
            yield
            return
        if target.is_symlink:
            link_target = await self.client.readlink(new)
            await self.client.delete(new)
            try:
                yield
            except AgfsError:
                try:
                    await self.client.symlink(link_target, new)
                except AgfsError as exc:
                    log.error("could not restore symlink %s -> %s: %s", new, link_target, exc)
                raise
            return
        parent, _ = paths.split(new)
        intent = RenameIntent(
            old, new, paths.join(parent, new_aside_name(time.time())), self.client.base_url
        )
        record = await self._record(intent)
        body_ran = False
        try:
            await self.client.rename(new, intent.aside)
            body_ran = True
            yield
        except AgfsError as exc:
            # Failed, or the answer was lost after the server did it: the server decides.
            if not await self._settled_after(intent, record, exc) or not body_ran:
                raise
            return  # the rename happened; only its answer was lost
        if self._keep_replaced is not None and not target.is_dir and self._keep_replaced():
            self.kept = KeptAside(intent.aside, record)
            return
        try:
            await self.client.delete(intent.aside, recursive=target.is_dir)
        except AgfsError as exc:
            log.warning(
                "replaced %s but could not delete its old copy %s: %s", new, intent.aside, exc
            )
            return  # the record stays: the next mount deletes it
        self._forget(record)

    async def _record(self, intent: RenameIntent) -> Path | None:
        """The intent record, written in a thread: its two fsyncs on a slow cache disk
        must not stall every other request of the mount."""
        if self._journal is None:
            return None
        return await trio.to_thread.run_sync(self._journal.record, intent)

    async def _settled_after(
        self, intent: RenameIntent, record: Path | None, exc: AgfsError
    ) -> bool:
        """Finish or undo a rename whose step failed with ``exc``; True when it turns out
        to be finished. A rename that cannot be settled now keeps its record."""
        try:
            outcome = await settle(self.client, intent)
        except AgfsError as again:
            log.error(
                "rename of %s over %s failed (%s) and cannot be settled now (%s); the old file"
                " is at %s",
                intent.source,
                intent.target,
                exc,
                again,
                intent.aside,
            )
            return False
        if outcome is not Outcome.NOTHING:
            log.warning(
                "rename of %s over %s failed (%s): %s",
                intent.source,
                intent.target,
                exc,
                outcome.value,
            )
        self._forget(record)
        return outcome is Outcome.FINISH

    async def discard(self, kept: KeptAside) -> None:
        """Delete a replaced file kept while it was open, once nothing reads it."""
        try:
            await self.client.delete(kept.aside)
        except NotFound:
            pass
        except AgfsError as exc:
            log.warning("could not delete the replaced file %s: %s", kept.aside, exc)
            return  # the record stays: the next mount deletes it
        self._forget(kept.record)

    def _forget(self, record: Path | None) -> None:
        if record is not None and self._journal is not None:
            self._journal.forget(record)
