"""Uploads that failed and wait for the server: parked spools, retried in the background.

A ``close()`` that could not upload has already told the program; the bytes are still in
the spool on disk. When the failure was transient (server away, overloaded, garbled
answer), the spool is parked here and uploaded again, with backoff, until the server
takes it. A newer upload of the same file, or its removal, makes a parked one stale: it
is dropped, never written over newer data. A permanent failure (too large, forbidden)
leaves the spool on disk for the user.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from . import paths
from .errors import AgfsError, ProtocolError, RequestTimeout, ServerError, ServerUnreachable
from .models import FileInfo
from .writes import SpoolWriter

log = logging.getLogger(__name__)

# Failures that a later attempt may not meet: the server is away or overloaded.
TRANSIENT_ERRORS = (ServerUnreachable, RequestTimeout, ServerError, ProtocolError)
RETRY_FIRST = 1.0
RETRY_MAX = 30.0

StatOrNone = Callable[[str], Awaitable[FileInfo | None]]


class ParkedUploads:
    def __init__(self, stat_or_none: StatOrNone) -> None:
        self._stat_or_none = stat_or_none
        self.writers: list[SpoolWriter] = []
        self._changed = trio.Event()
        self._uploaded_at: dict[str, float] = {}
        # The background retries and an unmount's final flush must not both upload (or
        # drop) the same spool: one pass at a time.
        self._retrying = trio.Lock()

    def __len__(self) -> int:
        return len(self.writers)

    def park(self, writer: SpoolWriter, exc: AgfsError) -> None:
        """Take a spool whose last upload failed with ``exc``."""
        where = writer.spool.data_path
        if isinstance(exc, TRANSIENT_ERRORS):
            self.writers.append(writer)
            self._changed.set()
            log.warning(
                "will upload %s again when the server answers; its content is in %s",
                writer.path,
                where,
            )
        else:
            _give_up(writer, exc)

    def uploaded(self, path: str) -> None:
        """A newer version of ``path`` reached the server: older parked ones are stale."""
        self._uploaded_at[path] = trio.current_time()

    def unlinked(self, path: str) -> None:
        for writer in self.writers:
            if writer.path == path:
                writer.unlinked = True

    def renamed(self, old: str, new: str) -> None:
        for writer in self.writers:
            if paths.is_within(writer.path, old):
                writer.retarget(paths.rebase(writer.path, old, new))

    async def retry_all(self) -> bool:
        """Try every parked upload once; True when none is left waiting for the server."""
        async with self._retrying:
            return await self._retry_each()

    async def _retry_each(self) -> bool:
        for writer in list(self.writers):
            stale = self._uploaded_at.get(writer.path, -1.0) > (writer.failed_at or 0.0)
            if writer.unlinked or stale:
                self.writers.remove(writer)
                writer.spool.discard()
                log.info("dropped the parked upload of %s: the file changed since", writer.path)
                continue
            try:
                await self._warn_if_changed(writer)
                await writer.retry()
            except TRANSIENT_ERRORS:
                return False
            except AgfsError as exc:
                self.writers.remove(writer)
                _give_up(writer, exc)
                continue
            self.writers.remove(writer)
            log.warning("uploaded %s, which had failed before", writer.path)
        return True

    async def _warn_if_changed(self, writer: SpoolWriter) -> None:
        meta = writer.spool.meta
        if meta.base_size is None:
            return
        current = await self._stat_or_none(writer.path)
        if current is not None and (current.size, current.mtime_ns) != (
            meta.base_size,
            meta.base_mtime_ns,
        ):
            log.warning(
                "%s changed on the server since it was opened here; uploading the local "
                "version over it (last writer wins)",
                writer.path,
            )

    async def run(self) -> None:
        """In the background: retry with backoff until every parked upload is done."""
        delay = RETRY_FIRST
        while True:
            if not self.writers:
                await self._changed.wait()
                self._changed = trio.Event()
                delay = RETRY_FIRST
            await trio.sleep(delay)
            done = await self.retry_all()
            delay = RETRY_FIRST if done else min(delay * 2, RETRY_MAX)

    def keep_all(self) -> None:
        """Unmounting: leave what could not be uploaded on disk for the next mount."""
        for writer in self.writers:
            writer.keep()
            log.error(
                "%s was never uploaded; its content is kept in %s",
                writer.path,
                writer.spool.data_path,
            )
        self.writers.clear()


def _give_up(writer: SpoolWriter, exc: AgfsError) -> None:
    writer.keep()
    log.error(
        "gave up uploading %s (%s); its content is kept in %s",
        writer.path,
        exc,
        writer.spool.data_path,
    )
