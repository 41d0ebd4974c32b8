"""POSIX rename on the server, where AGFS's own rename falls short.

AGFS's rename refuses an existing target on memfs, ignores symlinks (they live in the
server's memory, beside the plugin) and cannot move a link at all. So the target is looked
at first and each case is handled before the plugin sees it: a target is moved aside to a
hidden name (and moved back if the rename fails, so it is never lost), links are re-made,
and the links under a renamed directory are moved with it. What the mount keeps locally
(caches, spools) is the filesystem's business, around this.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from . import paths
from .client import AgfsClient
from .errors import (
    AgfsError,
    AlreadyExists,
    DirectoryNotEmpty,
    IsADirectory,
    NotADirectory,
)
from .models import FileInfo

log = logging.getLogger("agfs_fuse.filesystem")

ASIDE_PREFIX = ".agfs-fuse-replaced-"
"""A target moved aside during a rename; a crash may leave one, found at the next mount."""


class ServerRename:
    """One rename, made of the requests the server understands."""

    def __init__(
        self,
        client: AgfsClient,
        stat: Callable[[str], Awaitable[FileInfo]],
        stat_or_none: Callable[[str], Awaitable[FileInfo | None]],
    ) -> None:
        """``stat`` and ``stat_or_none`` ask the server (not a cache), and may cache."""
        self.client = client
        self._stat = stat
        self._stat_or_none = stat_or_none

    async def run(self, old: str, new: str, noreplace: bool) -> None:
        source = await self._stat(old)
        target = await self._stat_or_none(new)
        if target is not None:
            if noreplace:
                raise AlreadyExists("file exists", path=new)
            await self._check_replaceable(source, target, new)
        if source.is_symlink:
            link_target = await self.client.readlink(old)
            async with self._target_set_aside(new, target):
                await self.client.symlink(link_target, new)
            await self.client.delete(old)
        elif target is not None and target.is_symlink:
            async with self._target_set_aside(new, target):
                await self.client.rename(old, new)
        else:
            links = await self._links_below(old) if source.is_dir else []
            try:
                await self.client.rename(old, new)
            except AlreadyExists:
                if target is None:
                    raise  # appeared meanwhile: someone else's file, not ours to remove
                async with self._target_set_aside(new, target):
                    await self.client.rename(old, new)
            await self._move_links(links, old, new)

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
    async def _target_set_aside(self, new: str, target: FileInfo | None) -> AsyncIterator[None]:
        """Get an existing target out of the way for the body; put it back if the body
        fails, remove it once the body succeeded. A file or directory is renamed to a
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
        aside = paths.join(parent, f"{ASIDE_PREFIX}{uuid.uuid4().hex[:12]}")
        await self.client.rename(new, aside)
        try:
            yield
        except AgfsError:
            await self.client.rename(aside, new)
            raise
        try:
            await self.client.delete(aside, recursive=target.is_dir)
        except AgfsError as exc:
            log.warning("replaced %s but could not delete its old copy %s: %s", new, aside, exc)
