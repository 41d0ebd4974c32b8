"""Uploads that failed and wait for the server: parked spools, retried in the background.

A ``close()`` that could not upload has already told the program; the bytes are still in
the spool on disk. What happens next depends on why it failed, and this is the one place
that decides (``should_retry``; the table is also in docs/SEMANTICS.md):

=====================================================  ========================================
failure                                                what happens
=====================================================  ========================================
server unreachable, timed out, unclassified 5xx        parked and retried: at most
(``ServerError``), garbled answer                      ``RETRY_TRIES`` tries in all, within
                                                       ``RETRY_WINDOW`` seconds, then kept
disk full on the server (ENOSPC), too large (EFBIG),   kept at once, reported at close()
permission, read-only, anything else
=====================================================  ========================================

*Kept* means the spool and its sidecar stay under the cache dir with the reason, for
``agfs-fuse spools`` to list, re-upload or discard; nothing is retried behind the user's
back after that. A newer upload of the same file, or its removal, makes a parked one stale:
it is dropped, never written over newer data (a removal drops it at once). A parked file
created here stays visible on the mount meanwhile (``pending_writes``).
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
RETRY_DELAYS = (2.0, 10.0, 60.0, 300.0)
"""Seconds between the passes over parked uploads while they keep failing."""
RETRY_TRIES = 5
"""Tries of one upload in all, the failed close() included."""
RETRY_WINDOW = 600.0
"""Seconds after its first failure when an upload is given up (kept), whatever the count."""

StatOrNone = Callable[[str], Awaitable[FileInfo | None]]


def should_retry(exc: AgfsError) -> bool:
    """The classification: True for a failure a later try may not meet (see the table)."""
    return isinstance(exc, TRANSIENT_ERRORS)


def kept_reason(exc: AgfsError) -> str:
    """The one line a kept spool's sidecar gives as its reason."""
    return f"{type(exc).__name__}: {exc}"


class ParkedUploads:
    """Spools whose last upload failed in a way a later try may not meet, retried in the
    background by ``run``; what happens to their names comes through ``unlinked``,
    ``renamed`` and ``uploaded``, as told by the registry of pending writes."""

    def __init__(self, stat_or_none: StatOrNone) -> None:
        self._stat_or_none = stat_or_none
        self.writers: list[SpoolWriter] = []
        self._changed = trio.Event()
        self._uploaded_at: dict[str, float] = {}
        self._tries: dict[SpoolWriter, int] = {}
        self._parked_at: dict[SpoolWriter, float] = {}
        # The background retries and an unmount's final flush must not both upload (or
        # drop) the same spool: one pass at a time.
        self._retrying = trio.Lock()
        self._in_flight: SpoolWriter | None = None  # the one being retried now

    def __len__(self) -> int:
        return len(self.writers)

    def park(self, writer: SpoolWriter, exc: AgfsError) -> None:
        """Take a spool whose last upload failed with ``exc``."""
        if should_retry(exc):
            self.writers.append(writer)
            self._tries[writer] = 1
            self._parked_at[writer] = trio.current_time()
            self._changed.set()
            log.warning(
                "will upload %s again when the server answers; its content is in %s",
                writer.path,
                writer.spool_path(),
            )
        else:
            _give_up(writer, exc)

    def uploaded(self, path: str) -> None:
        """A newer version of ``path`` reached the server: older parked ones are stale."""
        self._uploaded_at[path] = trio.current_time()

    def unlinked(self, path: str) -> None:
        """``path`` is gone (unlinked, or replaced by a rename): its parked upload is
        dropped now, never sent; one being retried right now is dropped when that try
        ends (its upload is skipped: ``close`` uploads nothing of an unlinked file)."""
        for writer in list(self.writers):
            if writer.path == path:
                writer.mark_unlinked()
                if writer is not self._in_flight:
                    self._drop(writer, "its file was removed")

    def renamed(self, old: str, new: str) -> None:
        for writer in self.writers:
            if paths.is_within(writer.path, old):
                writer.retarget(paths.rebase(writer.path, old, new))
            writer.directory_renamed(old, new)  # a retry may be uploading right now

    async def retry_all(self) -> bool:
        """Try every parked upload once; True when none is left waiting for the server."""
        async with self._retrying:
            return await self._retry_each()

    async def settled(self) -> None:
        """Return once no retry runs (one running is waited for)."""
        async with self._retrying:
            pass

    def take_back(self, writer: SpoolWriter) -> bool:
        """An open for writing takes ``writer`` out of the retries (True); not while a try
        of it runs (False: it may be landing, and then the server has the file)."""
        if writer not in self.writers or writer is self._in_flight:
            return False
        self._forget(writer)
        return True

    async def _retry_each(self) -> bool:
        for writer in list(self.writers):
            if writer not in self.writers:
                continue  # dropped while an earlier one was retried
            if not await self._retry_one(writer):
                return False  # the server is still away: the others will fail too
        return True

    async def _retry_one(self, writer: SpoolWriter) -> bool:
        """One try of ``writer``; False when it failed and stays parked."""
        stale = writer.failed_before(self._uploaded_at.get(writer.path, -1.0))
        if writer.unlinked or stale:
            self._drop(writer, "the file changed since")
            return True
        self._in_flight = writer
        try:
            self._tries[writer] += 1
            await self._warn_if_changed(writer)
            await writer.retry()
        except AgfsError as exc:
            if should_retry(exc) and not self._exhausted(writer):
                return False
            tries = self._tries[writer]
            self._forget(writer)
            _give_up(writer, exc, tries)
            return True
        finally:
            self._in_flight = None
        self._forget(writer)
        if writer.unlinked:  # removed while its try waited: nothing was sent
            log.info("dropped the parked upload of %s: its file was removed", writer.path)
        else:
            log.warning("uploaded %s, which had failed before", writer.path)
        return True

    def _drop(self, writer: SpoolWriter, why: str) -> None:
        self._forget(writer)
        writer.discard()
        log.info("dropped the parked upload of %s: %s", writer.path, why)

    def _exhausted(self, writer: SpoolWriter) -> bool:
        age = trio.current_time() - self._parked_at[writer]
        return self._tries[writer] >= RETRY_TRIES or age >= RETRY_WINDOW

    def _forget(self, writer: SpoolWriter) -> None:
        self.writers.remove(writer)
        self._tries.pop(writer, None)
        self._parked_at.pop(writer, None)

    async def _warn_if_changed(self, writer: SpoolWriter) -> None:
        base = writer.base_version()
        if base is None:
            return
        current = await self._stat_or_none(writer.path)
        if current is not None and (current.size, current.mtime_ns) != base:
            log.warning(
                "%s changed on the server since it was opened here; uploading the local "
                "version over it (last writer wins)",
                writer.path,
            )

    async def run(self) -> None:
        """In the background: retry on ``RETRY_DELAYS`` until every parked upload is done
        or given up."""
        failed_passes = 0
        while True:
            if not self.writers:
                await self._changed.wait()
                self._changed = trio.Event()
                failed_passes = 0
            await trio.sleep(RETRY_DELAYS[min(failed_passes, len(RETRY_DELAYS) - 1)])
            done = await self.retry_all()
            failed_passes = 0 if done else failed_passes + 1

    def keep_all(self) -> None:
        """Unmounting: leave what could not be uploaded on disk for the next mount."""
        for writer in self.writers:
            writer.keep("unmounted before the server took the upload")
            log.error(
                "%s was never uploaded; its content is kept in %s",
                writer.path,
                writer.spool_path(),
            )
        self.writers.clear()
        self._tries.clear()
        self._parked_at.clear()


def _give_up(writer: SpoolWriter, exc: AgfsError, tries: int | None = None) -> None:
    after = f" after {tries} tries" if tries else ""
    writer.keep(kept_reason(exc) + after)
    log.error(
        "gave up uploading %s%s (%s); its content is kept in %s (see: agfs-fuse spools)",
        writer.path,
        after,
        exc,
        writer.spool_path(),
    )
