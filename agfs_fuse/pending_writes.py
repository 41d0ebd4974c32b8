"""The registry of pending writes: every spool the mount holds, whoever holds it.

A file's new content lives in a spool from its first write until the server has it, and
in that time it passes through three hands: the open file's handles (found by the file's
key, shared by every handle), the parked uploads waiting for the server (``uploads``), and,
once given up, the spool directory as a kept spool for the user (``agfs-fuse spools``).
This registry is the one place that knows all three, so that it alone answers what is in
use, what is still to upload, and whether the kept ones leave room for new writes; and it
passes on what happens to a file's name (renamed, unlinked, uploaded anew) to every writer
that holds its content. It knows neither HTTP nor the kernel: the filesystem core gives it
a factory for new spool writers and a way to stat a path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from . import paths
from .async_uploads import AsyncUploads, Failure
from .cache import Clock
from .errors import AgfsError, InvalidArgument, NoSpace, NotFound
from .file_key import FileKey, FileKeys
from .landings import Landings
from .models import FileInfo
from .spool import KeptSpool, Spool, SpoolDir
from .uploads import ParkedUploads, StatOrNone, kept_reason
from .writes import SpoolWriter, Writer

log = logging.getLogger(__name__)

CAP_LOG_INTERVAL = 60.0
"""Seconds between two logs of the same refusal: every open would repeat it."""

AsyncFor = Callable[[str], bool]
"""Whether the upload of the file at a path is left to the background uploader
(``PathSettings.async_upload``: per backend in a federated mount)."""


def _everywhere(path: str) -> bool:
    return True


NewSpoolWriter = Callable[[str, FileInfo | None, Spool | None], SpoolWriter]
"""Make a spool writer for ``path`` over ``base`` (what the server holds now), or over a
kept spool taken up again."""


class PendingWrites:
    """Open spools by file key, parked uploads, kept spools, and the room they leave."""

    def __init__(
        self,
        spool_dir: SpoolDir,
        new_writer: NewSpoolWriter,
        stat_or_none: StatOrNone,
        *,
        max_kept: int,
        clock: Clock = time.monotonic,
        async_for: AsyncFor = _everywhere,
    ) -> None:
        """``clock``: monotonic seconds, for how often a refusal is logged; ``async_for``:
        which paths' uploads go to the background uploader once it is enabled."""
        self.spool_dir = spool_dir
        self.max_kept = max_kept
        self.mountpoint: str | None = None  # for the messages that name a command
        self._new_writer = new_writer
        self._stat_or_none = stat_or_none
        self._clock = clock
        self._async_for = async_for
        self._cap_logged_at: float | None = None
        self._keys = FileKeys()
        self._open: dict[FileKey, SpoolWriter] = {}
        # Spools whose last handle is closed and whose final upload is running: a new file
        # among them is still this mount's alone until that upload is done.
        self._closing: set[SpoolWriter] = set()
        # Every spool writer still alive (open, closing, parked): their running uploads.
        self._alive: weakref.WeakSet[SpoolWriter] = weakref.WeakSet()
        self.parked = ParkedUploads(stat_or_none)
        # The file keys of parked new files: a handle of the file (or an inode the kernel
        # looks up again) reads their content from the spool until the retry lands.
        self._parked_keys: dict[FileKey, SpoolWriter] = {}
        # Listings in flight, told of the new files that land in their directory.
        self.landings = Landings()
        # ``-o async_upload``: the last close hands a spool to this background uploader
        # (for the paths ``async_for`` names), and the writer stays in ``_open`` (with no
        # handle) until the server has it.
        self.background: AsyncUploads | None = None
        self._nursery: trio.Nursery | None = None  # ``run``'s, once it runs

    def enable_async_uploads(self) -> AsyncUploads:
        """Async write-back: ``close`` returns once the content is in the spool. Also
        while the mount runs (a backend mounted with ``async_upload``); once is enough."""
        if self.background is None:
            self.background = AsyncUploads(self._let_go)
            if self._nursery is not None:
                self._nursery.start_soon(self.background.run)
        return self.background

    def _let_go(self, writer: SpoolWriter) -> None:
        """The background uploader is done with ``writer`` (uploaded, dropped or kept)."""
        for key, held in list(self._open.items()):
            if held is writer and not writer.has_handles:
                del self._open[key]

    def _waiting(self) -> list[SpoolWriter]:
        """Spools whose last handle is closed and whose background upload is pending
        (none without the background uploader: then every stat skips the scan)."""
        if self.background is None:
            return []
        return [w for w in self._open.values() if not w.has_handles]

    def new_key(self, path: str | None = None) -> FileKey:
        """A key for a file that has none yet (see ``file_key``): the key of the spool
        waiting for its background upload at ``path``, if there is one (the kernel may
        have forgotten the inode that held it), else a new one."""
        if path is not None:
            for key, writer in self._open.items():
                if writer.path == path and not writer.has_handles and not writer.unlinked:
                    return key
            for key, writer in self._parked_new_files().items():
                if writer.path == path:
                    return key
        return self._keys.mint()

    def waiting_info(self, path: str, info: FileInfo) -> FileInfo:
        """``info`` (the server's) as the mount shows it while a spool of ``path`` waits
        for its background upload: the spool's size, the time of its last change."""
        for writer in self._waiting():
            if writer.path == path and not writer.unlinked and writer.dirty:
                size = writer.local_size()
                if size is not None:
                    return dataclasses.replace(info, size=size, mtime_ns=writer.changed_ns)
        return info

    @contextlib.asynccontextmanager
    async def uploads_held(self, *held: str, below: bool = True) -> AsyncIterator[None]:
        """No background upload of a file at ``held`` (and, with ``below``, under it) runs
        inside: one running is waited for, and none starts until the block is over (a
        rename, unlink or chmod is applied after the upload, never in the middle of it)."""

        def holds(path: str) -> bool:
            return any(paths.is_within(path, h) if below else path == h for h in held)

        writers = [w for w in self._waiting() if holds(w.path)]
        async with contextlib.AsyncExitStack() as stack:
            for writer in sorted(writers, key=id):  # one order for all: no deadlock
                await stack.enter_async_context(writer.uploads_held())
            yield

    async def upload_settled(self, path: str) -> None:
        """Return once no background upload of ``path`` runs (an open for writing must
        not change a spool an upload is reading; once it holds a handle, none starts),
        nor a retry of a parked new file there (the open takes it back: ``open_spool``).
        The caller opens at once, with no checkpoint in between."""
        async with self.uploads_held(path):
            pass
        if self._parked_new_file_at(path) is not None:
            await self.parked.settled()

    def mode_changed(self, path: str, perm: int) -> None:
        """A chmod of ``path`` reached the server: its pending uploads keep those bits."""
        for writer in self._open.values():
            if writer.path == path:
                writer.mode_changed(perm)

    # -- open files -----------------------------------------------------------------

    def open_spool(
        self, key: FileKey, path: str, base: FileInfo, *, truncating: bool = False
    ) -> SpoolWriter:
        """The spool of the file ``key`` for one more handle: the one its other handles
        share, a parked new file's (taken back from the retries: its next close uploads
        it), or a new one over ``base``. ``truncating``: the open empties it (O_TRUNC)."""
        writer = self._open.get(key)
        if writer is None:
            writer = self._take_back_parked(path, truncating)
        if writer is None:
            writer = self.new_spool(path, base)
            self._open[key] = writer
        elif not writer.has_handles:
            self._open[key] = writer
            # Taken back from the background uploader (or the retries): until its next
            # close, a crash must not upload it (the program may be halfway through a change).
            writer.spool.record_closed(False)
        writer.handle_opened()
        return writer

    def _take_back_parked(self, path: str, truncating: bool) -> SpoolWriter | None:
        """The parked new file at ``path``, out of the retries, for an open for writing:
        a spool has one owner. ``upload_settled`` made sure no retry of it is running."""
        writer = self._parked_new_file_at(path)
        if writer is None or not self.parked.take_back(writer):
            return None
        if truncating:
            log.info("dropped the parked upload of %s: an open with O_TRUNC replaces it", path)
        else:
            log.info("took the parked upload of %s back: it goes up at its next close", path)
        return writer

    def open_new_spool(self, key: FileKey, path: str, mode: int | None) -> SpoolWriter:
        """The spool of a file just created here with ``mode``, for its first handle: the
        file exists only here until the spool's first upload creates it on the server.
        ``mode`` None: the server has it already (empty), nothing to upload unless written."""
        writer = self.new_spool(path, None)
        if mode is not None:
            writer.start_new(mode)
        writer.handle_opened()
        self._open[key] = writer
        return writer

    # -- files created here, not on the server yet ----------------------------------

    def new_file(self, path: str) -> SpoolWriter | None:
        """The spool of the file created here at ``path`` that is not on the server yet
        (open, or uploading at its last close), if there is one."""
        for writer in self._live():
            if writer.path == path and writer.not_on_server_yet:
                return writer
        return None

    def _live(self) -> list[SpoolWriter]:
        """Open spools, those whose last close is uploading them, and parked ones: a new
        file whose upload waits for a retry stays this mount's (and visible) until the
        retry lands or is given up (kept spools are reported, not shown: see
        docs/SEMANTICS.md)."""
        return [*self._open.values(), *self._closing, *self.parked.writers]

    def _parked_new_files(self) -> dict[FileKey, SpoolWriter]:
        """The parked new files by key, once those that landed, were dropped or were
        given up are forgotten."""
        for key, writer in list(self._parked_keys.items()):
            if writer not in self.parked.writers or not writer.not_on_server_yet:
                del self._parked_keys[key]
        return self._parked_keys

    def _parked_new_file_at(self, path: str) -> SpoolWriter | None:
        for writer in self._parked_new_files().values():
            if writer.path == path:
                return writer
        return None

    def new_file_info(self, path: str) -> FileInfo | None:
        """What the mount shows for ``path`` when it is a file not on the server yet."""
        writer = self.new_file(path)
        return writer.local_info() if writer is not None else None

    def new_files_in(self, directory: str) -> list[FileInfo]:
        """The files not on the server yet whose parent is ``directory`` (for listings)."""
        return [
            writer.local_info()
            for writer in self._live()
            if writer.not_on_server_yet and paths.split(writer.path)[0] == directory
        ]

    def has_new_files_within(self, path: str) -> bool:
        """Whether a file not on the server yet lies at or below ``path`` (an ``rmdir``
        must not remove the directory its upload is going to)."""
        return any(w.not_on_server_yet and paths.is_within(w.path, path) for w in self._live())

    def spool_of(self, key: FileKey) -> SpoolWriter | None:
        """The spool that holds the content of the file ``key`` until the server has it:
        open (or waiting for its background upload), or a parked new file's."""
        return self._open.get(key) or self._parked_new_files().get(key)

    async def release(self, key: FileKey, writer: Writer) -> None:
        """A handle is closed. The last handle of a spool uploads and removes it; a spool
        that could not be uploaded is parked for a retry or kept on disk. Never raises:
        the kernel ignores errors from release, and the program saw them at close()."""
        if isinstance(writer, SpoolWriter):
            if not writer.handle_released():
                return
            if self._hand_over(writer):
                return
            self._open.pop(key, None)
            self._closing.add(writer)
        try:
            await writer.close()
        except AgfsError as exc:
            if isinstance(writer, SpoolWriter):
                self.parked.park(writer, exc)
                if writer in self.parked.writers and writer.not_on_server_yet:
                    self._parked_keys[key] = writer
            else:
                log.error("%s: what was written last was not delivered: %s", writer.path, exc)
        finally:
            if isinstance(writer, SpoolWriter):
                self._closing.discard(writer)

    def _hand_over(self, writer: SpoolWriter) -> bool:
        """Async mode (for its path): give a closed spool with content to upload to the
        background uploader (True); it stays in ``_open`` meanwhile, for reads, stats, a
        new open."""
        if self.background is None or writer.broken is not None:
            return False
        if not writer.dirty or writer.unlinked or not self._async_for(writer.path):
            return False
        self.background.submit(writer)
        return True

    # -- what happens to names ------------------------------------------------------

    def replaced(self, path: str, moved_in: str | None = None) -> None:
        """``path`` is gone from the server (unlinked, or replaced by a rename of
        ``moved_in``): like POSIX's orphaned inode, what is still open for writing under
        that name (below it, for a directory) keeps its writes to itself, and neither its
        close nor a parked retry may upload them over whatever holds the name now."""
        for writer in self._open.values():
            if paths.is_within(writer.path, path) and not (
                moved_in is not None and paths.is_within(writer.path, moved_in)
            ):
                writer.mark_unlinked()
        self.parked.unlinked(path)
        self.landings.removed(path)

    def renamed(self, old: str, new: str) -> None:
        """``old`` (and everything below it) is now ``new``: open and parked writers
        follow, and so does an upload's temporary in a renamed directory."""
        for writer in self._open.values():
            if paths.is_within(writer.path, old):
                writer.retarget(paths.rebase(writer.path, old, new))
            writer.directory_renamed(old, new)
        self.parked.renamed(old, new)
        self.landings.renamed(old, new)

    def created(self, path: str, info: FileInfo) -> None:
        """A file created here is on the server now, by its first upload: no longer
        answered for locally, so a listing in flight, which the server may have answered
        before that upload, is told (``landings``)."""
        self.landings.landed(path, info)

    def uploaded(self, path: str) -> None:
        """A newer version of ``path`` reached the server: parked older ones are stale."""
        self.parked.uploaded(path)
        if self.background is not None:
            self.background.landed(path)

    def failure_for_fsync(self, path: str) -> Failure | None:
        """A background upload of ``path`` given up since the last fsync of it."""
        return self.background.failure_for_fsync(path) if self.background else None

    def running_temporaries(self) -> set[str]:
        """The hidden names uploads through a temporary are writing right now."""
        return {w.temporary for w in self._alive if w.temporary is not None}

    # -- spools and the room they take ----------------------------------------------

    def new_spool(self, path: str, base: FileInfo | None, kept: Spool | None = None) -> SpoolWriter:
        """A spool writer for ``path``; a new spool only while kept ones leave room (a
        kept spool taken up again needs none)."""
        if kept is None:
            self.check_room_for(path)
        writer = self._new_writer(path, base, kept)
        writer.deferred = kept is None and self.background is not None and self._async_for(path)
        self._alive.add(writer)
        return writer

    def kept(self) -> list[KeptSpool]:
        """Spools on disk that nothing of this mount is using: failed uploads, crashes."""
        return self.spool_dir.kept(self._in_use())

    def _in_use(self) -> set[Path]:
        return {w.spool_path() for w in [*self._open.values(), *self.parked.writers]}

    def check_room_for(self, path: str) -> None:
        """Refuse new writes (ENOSPC) while kept spools use more than ``max_kept``: they
        are never deleted to make room, and must not fill the disk unnoticed. Writing a
        file that has a kept spool stays allowed: that is how one re-uploads it."""
        if self.spool_dir.kept_bytes(self._in_use()) <= self.max_kept:
            return
        kept = self.kept()
        used = sum(spool.size for spool in kept)
        if any(spool.meta is not None and spool.meta.remote_path == path for spool in kept):
            return
        now = self._clock()
        if self._cap_logged_at is None or now - self._cap_logged_at >= CAP_LOG_INTERVAL:
            self._cap_logged_at = now
            log.error(
                "%d spools kept after failed uploads use %d bytes, over max_kept=%d: new "
                "writes get ENOSPC until some are re-uploaded or discarded with "
                "'agfs-fuse spools %s'",
                len(kept),
                used,
                self.max_kept,
                self.mountpoint or "MOUNTPOINT",
            )
        raise NoSpace(f"kept spools use {used} bytes, over max_kept", path=path)

    async def kept_spool_command(self, text: str, server_url: str) -> None:
        """``/.agfs-spools``: ``upload ID`` re-uploads a kept spool (removed once the server
        has it, kept with the new reason if not), ``discard ID`` deletes it. Only a whole
        file written for ``server_url`` (the server this mount serves now) goes up."""
        verb, _, wanted = text.strip().partition(" ")
        if verb not in ("upload", "discard") or not wanted.strip():
            raise InvalidArgument(f"expected 'upload ID' or 'discard ID', got {text.strip()!r}")
        matches = [k for k in self.kept() if k.id == wanted.strip()]
        if not matches:
            raise NotFound(f"no kept spool {wanted.strip()!r}")
        kept = matches[0]
        if verb == "discard":
            kept.discard()
            log.warning("discarded the kept spool %s", kept.path)
            return
        meta = kept.meta
        if meta is None or meta.extents is not None:
            raise InvalidArgument(f"{kept.id} is not a whole file (no sidecar, or partial)")
        if meta.server_url != server_url:
            raise InvalidArgument(f"{kept.id} was written for {meta.server_url}, not {server_url}")
        current = await self._stat_or_none(meta.remote_path)  # its mode is kept
        writer = self.new_spool(meta.remote_path, current, Spool.reopen(kept.path, meta))
        try:
            await writer.close()
        except AgfsError as exc:
            writer.keep(kept_reason(exc))
            raise
        log.warning("uploaded %s from the kept spool %s", meta.remote_path, kept.path)

    # -- totals, and the end of a mount or a server ---------------------------------

    def open_count(self) -> int:
        """Files open here with a spool."""
        return len(self._open)

    def parked_count(self) -> int:
        return len(self.parked)

    def pending_count(self) -> int:
        """Contents not on the server yet: parked, or open and changed."""
        return len(self.parked) + sum(1 for w in self._open.values() if w.dirty)

    def pending_paths(self) -> list[str]:
        """The paths of ``pending_count``'s contents (a backend's unmount waits for its)."""
        dirty = [w.path for w in self._open.values() if w.dirty]
        return [w.path for w in self.parked.writers] + dirty

    async def run(self) -> None:
        """In the background, for the mount's life: retry the parked uploads, and run
        the background uploader in async mode."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.parked.run)
            if self.background is not None:
                nursery.start_soon(self.background.run)

    async def sync_all(self) -> list[Failure]:
        """``agfs-fuse sync``: upload what open files hold, retry the parked uploads and
        send every background one now; returns what is still not on the server."""
        failures: list[Failure] = []
        for writer in [w for w in self._open.values() if w.has_handles and w.dirty]:
            try:
                await writer.fsync()
            except (AgfsError, OSError) as exc:
                failures.append(Failure(writer.path, str(exc), kept=False))
        await self.parked.retry_all()
        failures += [Failure(w.path, "waiting for the server", False) for w in self.parked.writers]
        if self.background is not None:
            failures += await self.background.sync()
        return failures

    async def flush_all(self, *, final: bool = False) -> list[str]:
        """Upload every dirty and parked spool (unmount, server switch); returns the paths
        still not on the server. Never raises: at unmount it runs on the way to keeping
        what is pending and closing the mount, which must happen whatever fails here.
        ``final`` (unmount, SIGTERM): background uploads are retried on their delays and
        then kept; otherwise (a server switch) tried once and left queued on failure."""
        failed = []
        if self.background is not None:
            if final:
                failures = await self.background.drain()
            else:
                failures = await self.background.sync(report=False)
            failed += [failure.path for failure in failures]
        for writer in list(self._open.values()):
            try:
                await writer.flush(last=True)
            except AgfsError as exc:
                log.error("upload of %s failed: %s", writer.path, exc)
                failed.append(writer.path)
            except OSError as exc:
                # Torn by a local write error (the program was told): never uploaded, and
                # no reason to hold up an unmount or a server switch.
                log.error("%s is not uploaded: its spool is torn (%s)", writer.path, exc)
        await self.parked.retry_all()
        return failed + [writer.path for writer in self.parked.writers]

    def keep_all(self) -> None:
        """Unmounting: leave what could not be uploaded on disk for the next mount."""
        self.parked.keep_all()
        if self.background is not None:
            self.background.keep_all("unmounted before the server took the upload")
