"""Async write-back (``-o async_upload``): the uploads a ``close`` no longer waits for.

In the default mode the last ``close`` of a file uploads it and reports the outcome. In
async mode it returns once the content is final in the local spool, and the spool is
handed to this uploader, which sends it in the background, ``CONCURRENCY`` at a time,
never two uploads to one path at once (so the newer content lands last). The writer stays
in the registry of pending writes meanwhile, so the mount keeps answering for the file
from its spool (size, reads, a new file's entry) until the server has it.

A failure a later try may not meet (``uploads.should_retry``) is tried again after
``RETRY_DELAYS``, ``RETRY_TRIES`` tries in all; any other failure, or the last try, keeps
the spool on disk with its reason (``agfs-fuse spools``) and is remembered for the next
``sync`` (``agfs-fuse sync``), which reports it and exits non-zero. ``sync`` also sends
every queued upload at once, whatever its backoff; ``drain`` (unmount, SIGTERM) does so
until nothing is left or the tries run out, then keeps what is left.

Nothing here knows HTTP or FUSE: a writer uploads itself (``SpoolWriter.flush``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .errors import AgfsError
from .uploads import RETRY_DELAYS, RETRY_TRIES, kept_reason, should_retry
from .writes import SpoolWriter

log = logging.getLogger(__name__)

CONCURRENCY = 4
"""Uploads in flight at once: enough to hide a round trip per file, few enough not to
starve the mount's own requests (reads, listings) of connections and bandwidth."""


@dataclass
class Queued:
    """One spool waiting for (or in) its upload."""

    due: float
    """Trio time before which it is not tried (its backoff after a failure)."""
    tries: int = 0
    """Failed tries so far."""
    attempts: int = 0
    """Finished tries, failed or not: how ``sync`` knows a try it waits for is over."""
    last_error: AgfsError | None = None


@dataclass(frozen=True)
class Failure:
    """An upload that failed: what ``sync`` reports, one line per path."""

    path: str
    error: str
    kept: bool
    """Given up: the spool is kept on disk (else it is still being retried)."""

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "error": self.error, "kept": self.kept}

    def line(self) -> str:
        then = "kept, see: agfs-fuse spools" if self.kept else "will be retried"
        return f"{self.path}: {self.error} ({then})"


Forget = Callable[[SpoolWriter], None]
"""Told a writer the uploader is done with (uploaded, dropped or kept): the registry of
pending writes lets go of it."""


class AsyncUploads:
    """The background uploader of one mount."""

    def __init__(
        self,
        forget: Forget,
        *,
        concurrency: int = CONCURRENCY,
        delays: tuple[float, ...] = RETRY_DELAYS,
        tries: int = RETRY_TRIES,
    ) -> None:
        self._forget = forget
        self._limit = concurrency
        self._delays = delays
        self._tries = tries
        self._queue: dict[SpoolWriter, Queued] = {}
        self._in_flight: dict[SpoolWriter, str] = {}  # writer -> the path it uploads to
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._unreported: list[Failure] = []  # given up since the last sync
        self.failed: dict[str, Failure] = {}  # the last failure of paths not uploaded since
        self._for_fsync: dict[str, Failure] = {}  # given up, not yet told to an fsync
        self.last_sync_failures: list[Failure] = []
        self.uploaded = 0

    # -- what the registry hands over -----------------------------------------------

    def submit(self, writer: SpoolWriter) -> None:
        """The last handle of ``writer`` is closed with content to upload: queue it (due
        now; a spool queued already keeps its tries)."""
        entry = self._queue.get(writer)
        if entry is None:
            self._queue[writer] = Queued(due=trio.current_time())
        else:
            entry.due = min(entry.due, trio.current_time())
        writer.spool.record_closed()
        self._wake.set()

    def holds(self, writer: SpoolWriter) -> bool:
        """Whether ``writer`` is queued or uploading."""
        return writer in self._queue or writer in self._in_flight

    def queued_count(self) -> int:
        return sum(1 for writer in self._queue if writer not in self._in_flight)

    def in_flight_count(self) -> int:
        return len(self._in_flight)

    def uploading_paths(self) -> list[str]:
        """Where the uploads in flight go (their spools count as pending already)."""
        return list(self._in_flight.values())

    # -- running --------------------------------------------------------------------

    async def run(self) -> None:
        """In the background, for the mount's life: start what is due, at most
        ``concurrency`` at once, and sleep until the next backoff ends or work comes."""
        async with trio.open_nursery() as nursery:
            while True:
                self._wake = trio.Event()
                self._start(nursery, self._due(trio.current_time()))
                with trio.move_on_at(self._next_due()):
                    await self._wake.wait()

    def _due(self, now: float) -> list[SpoolWriter]:
        return [w for w, entry in self._queue.items() if entry.due <= now]

    def _next_due(self) -> float:
        now = trio.current_time()
        later = [e.due for w, e in self._queue.items() if e.due > now and w not in self._in_flight]
        return min(later, default=math.inf)

    def _start(self, nursery: trio.Nursery, candidates: list[SpoolWriter]) -> None:
        """Start uploads of ``candidates`` while there is room, never two to one path."""
        busy = set(self._in_flight.values())
        for writer in candidates:
            if len(self._in_flight) >= self._limit:
                return
            if writer in self._in_flight or writer.path in busy:
                continue
            busy.add(writer.path)
            self._in_flight[writer] = writer.path
            nursery.start_soon(self._attempt, writer)

    async def _attempt(self, writer: SpoolWriter) -> None:
        try:
            await self._upload(writer)
        finally:
            self._in_flight.pop(writer, None)
            self._wake.set()
            self._progress.set()
            self._progress = trio.Event()

    async def _upload(self, writer: SpoolWriter) -> None:
        entry = self._queue.get(writer)
        if entry is None:
            return
        if writer.has_handles:
            del self._queue[writer]  # opened again: its last close hands it back
            return
        if writer.unlinked or writer.broken is not None or not writer.dirty:
            self._done(writer)  # unlinked, torn, or uploaded by an fsync meanwhile
            return
        try:
            await writer.flush(last=True)
        except OSError:
            self._done(writer)  # the spool's own disk failed: flush logged it, never uploaded
            return
        except AgfsError as exc:
            self._failed(writer, entry, exc)
            return
        finally:
            entry.attempts += 1
        self.landed(writer.path)
        self.uploaded += 1
        if writer.has_handles:
            del self._queue[writer]  # opened again while it went up
        elif writer.dirty:
            entry.due = trio.current_time()  # changed meanwhile (a truncate by path)
        else:
            self._done(writer)

    def _done(self, writer: SpoolWriter) -> None:
        """Nothing more to upload: the spool goes, and the registry forgets the writer."""
        self._queue.pop(writer, None)
        writer.discard()
        self._forget(writer)

    def _failed(self, writer: SpoolWriter, entry: Queued, exc: AgfsError) -> None:
        entry.tries += 1
        entry.last_error = exc
        if should_retry(exc) and entry.tries < self._tries:
            delay = self._delays[min(entry.tries - 1, len(self._delays) - 1)]
            entry.due = trio.current_time() + delay
            self.failed[writer.path] = Failure(writer.path, str(exc), kept=False)
            log.warning(
                "background upload of %s failed (%s); trying again in %g s (try %d of %d)",
                writer.path,
                exc,
                delay,
                entry.tries,
                self._tries,
            )
            return
        self._give_up(writer, kept_reason(exc) + f" after {entry.tries} tries")

    def _give_up(self, writer: SpoolWriter, reason: str) -> None:
        """Keep the spool on disk with ``reason``; ``sync`` reports it."""
        self._queue.pop(writer, None)
        writer.keep(reason)
        failure = Failure(writer.path, reason, kept=True)
        self.failed[writer.path] = failure
        self._for_fsync[writer.path] = failure
        self._unreported.append(failure)
        self._forget(writer)
        log.error(
            "gave up the background upload of %s (%s); its content is kept in %s "
            "(see: agfs-fuse spools)",
            writer.path,
            reason,
            writer.spool_path(),
        )

    def landed(self, path: str) -> None:
        """A content of ``path`` reached the server (here or by a kept spool's upload):
        its earlier failures are history."""
        self.failed.pop(path, None)
        self._for_fsync.pop(path, None)

    def failure_for_fsync(self, path: str) -> Failure | None:
        """The given-up upload of ``path`` an ``fsync`` of the file has not reported yet
        (each is reported once, as the kernel reports a writeback error)."""
        return self._for_fsync.pop(path, None)

    # -- waiting for them -----------------------------------------------------------

    async def sync(self, *, report: bool = True) -> list[Failure]:
        """Send every queued upload now, backoff or not, and wait for that try of each
        (one running already counts); returns what failed in it, and what was given up
        since the last ``sync``. Works whether ``run`` runs or not (an unmount). Without
        ``report`` (a server switch, an unmount) only this try's failures are returned, and
        what was given up stays for the next ``sync`` to report."""
        started = {writer: entry.attempts for writer, entry in self._queue.items()}

        def waiting() -> list[SpoolWriter]:
            return [
                w
                for w, attempts in started.items()
                if w in self._queue and self._queue[w].attempts <= attempts and not w.has_handles
            ]

        async with trio.open_nursery() as nursery:
            while pending := waiting():
                progress = self._progress
                self._start(nursery, [w for w in pending if w not in self._in_flight])
                await progress.wait()
        failures = {f.path: f for f in self._unreported} if report else {}
        if report:
            self._unreported.clear()
        for writer in started:
            entry = self._queue.get(writer)
            if entry is not None and entry.last_error is not None and not writer.has_handles:
                failures[writer.path] = Failure(writer.path, str(entry.last_error), kept=False)
        if report:
            self.last_sync_failures = list(failures.values())
        return list(failures.values())

    async def drain(self) -> list[Failure]:
        """Unmount or SIGTERM: upload everything, retrying on the usual delays while tries
        remain; whatever is left (or cancelled by the caller's deadline) is kept. Returns
        what was given up meanwhile (also reported by a ``sync`` on the way out)."""
        given_up = len(self._unreported)
        try:
            await self.sync(report=False)
            while dues := [e.due for w, e in self._queue.items() if not w.has_handles]:
                # (files opened again are left to their handles)
                await trio.sleep(max(min(dues) - trio.current_time(), 0.0))
                await self.sync(report=False)
        finally:
            self.keep_all("unmounted before the server took the upload")
        return self._unreported[given_up:]

    def keep_all(self, reason: str) -> None:
        """Keep every spool still queued, with ``reason`` (and its last error)."""
        for writer, entry in list(self._queue.items()):
            if writer.has_handles or writer in self._in_flight:
                continue  # written to by a program, or still reading its spool
            last = f": {kept_reason(entry.last_error)}" if entry.last_error else ""
            self._give_up(writer, reason + last)

    def snapshot(self) -> dict[str, object]:
        """``.agfs-stats``'s ``async_uploads``: what is pending, and what failed."""
        return {
            "queued": self.queued_count(),
            "in_flight": self.in_flight_count(),
            "uploaded": self.uploaded,
            "failed": [failure.describe() for failure in self.failed.values()],
        }
