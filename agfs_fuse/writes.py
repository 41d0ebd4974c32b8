"""Write strategies: how the bytes written to an open file travel to the server.

AGFS's ``PUT /files`` replaces a whole file, so the strategy is chosen per file:

- ``SpoolWriter`` (regular files): the whole new content lives in a spool on local disk,
  shared by every handle of the file, filled from the server first when an existing file
  is changed in place, and uploaded with one streamed PUT at flush/fsync/release.
- ``MessageWriter`` (write-only and control files, e.g. a queue's ``enqueue``): per handle,
  never filled; the bytes written since the last flush go as one PUT, so one ``echo`` is
  one message.

The handle API (``open_handle``/``handle_write``) is not a third strategy but a way
``SpoolWriter`` uploads: a sparse spool sends only its written ranges through a handle, and
a whole file over the server's body limit goes up through a handle to a hidden temporary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol

import trio

from . import asides, paths
from .capabilities import Capabilities
from .client import AgfsClient
from .errors import AgfsError, FileTooLarge, NotFound, NotSupported
from .extents import Extents
from .models import FileInfo
from .spool import Spool, SpoolDir, SpoolMeta, now

log = logging.getLogger(__name__)

SPARSE_MIN_SIZE = 1 << 20  # below this, fetching the whole file is cheaper than handles
HANDLE_CHUNK = 4 << 20  # one pwrite: well under the server's default 64 MiB body limit
MIN_HANDLE_CHUNK = 64 << 10
CLEANUP_GRACE = 10.0
"""Seconds a cancelled upload still gets to close its handle and remove its temporary."""
DEFAULT_NEW_FILE_MODE = 0o644
"""The mode a file made by ``PUT /files`` gets: memfs's fixed mode, and localfs's
``open(..., 0o644)`` under the usual 022 umask; a new file with another mode costs a chmod."""

Replace = Callable[[Callable[[], str], Callable[[], str]], Awaitable[None]]
"""Move a finished temporary upload over the real name (POSIX rename semantics). Both
names are given as callables, asked again at the move: a rename of the file, or of its
directory, may have moved either while the upload ran or waited for its turn."""


class Writer(Protocol):
    """What a file handle needs from its write strategy."""

    path: str

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int: ...

    async def read(self, offset: int, size: int) -> bytes | None:
        """Local bytes when the strategy holds the authoritative content, else None."""

    async def truncate(self, size: int) -> None: ...

    async def flush(self) -> None:
        """Send what was written; raises a typed error when the server refused it."""

    async def fsync(self) -> None:
        """Send what was written now, whatever the mode, and report its failure."""

    async def close(self) -> None:
        """The last handle using this writer is gone: send what is left."""

    def retarget(self, path: str) -> None:
        """The file was renamed."""

    def local_size(self) -> int | None:
        """The file's size as the writer sees it, when it knows better than the server."""


class SpoolWriter:
    """The spool strategy: one instance per open remote file, shared by its handles.

    Two ways to hold an existing file changed in place:

    - *filled*: the whole content is fetched into the spool before the first change and
      uploaded whole (one PUT) at flush. Right for small files and for plugins without
      the handle API.
    - *sparse*: on plugins with the handle API, a large file is not fetched; only the
      ranges written are kept (``Extents``) and only they are sent back, as pwrites through
      a handle, so a one-byte change to a big file costs a few requests, not two copies.

    A file too large for one request body (413) goes up through a handle in chunks.
    """

    def __init__(
        self,
        client: Callable[[], AgfsClient],
        spool_dir: SpoolDir,
        path: str,
        base: FileInfo | None,
        server_url: str,
        caps: Capabilities,
        on_uploaded: Callable[[str], object] | None = None,
        replace: Replace | None = None,
        spool: Spool | None = None,
        on_mode_given: Callable[[str, int], object] | None = None,
        on_created: Callable[[str, FileInfo], object] | None = None,
    ) -> None:
        """``base``: what the server holds now (its mode is kept); ``spool``: a kept spool
        taken up again, holding the whole new content; ``on_mode_given``: told the mode a
        new file's chmod gave it, which is then known without asking; ``on_created``:
        told a file created here once its first upload put it on the server, with what
        the mount showed of it (a listing in flight may lack it, see ``landings``)."""
        self._client = client
        self._caps = caps
        self._on_uploaded = on_uploaded
        self._on_created = on_created
        self._on_mode_given = on_mode_given
        self._replace = replace
        self._mode = base.perm if base is not None else None
        # A file created here is not on the server until its first upload: until then
        # this mount answers for it (``local_info``), with the mode it was made with.
        self.created_here = False
        # Created here and neither written nor truncated yet: a flush (a ``close`` of one
        # of several descriptors, as a shell's redirection does before the program writes)
        # does not upload it; the last close does.
        self._untouched = False
        # Renamed over a server file before its upload: that file goes if it is unlinked
        # or renamed away before the upload replaces it.
        self.replacing_server_file = False
        self.new_mode = DEFAULT_NEW_FILE_MODE
        self.changed_ns = time.time_ns()
        self.path = path
        self.spool: Spool = spool or spool_dir.new_spool(
            SpoolMeta(
                remote_path=path,
                server_url=server_url,
                base_size=base.size if base else None,
                base_mtime_ns=base.mtime_ns if base else None,
                created=now(),
            )
        )
        self._handles = 0  # open handles sharing this writer
        # Async write-back (``-o async_upload``): a flush (a ``close``) leaves the upload to
        # the background uploader; only fsync, sync and the last upload send it.
        self.deferred = False
        # The hidden name a whole-file upload through a handle goes to, while one runs.
        self.temporary: str | None = None
        # A brand-new file has nothing to fetch; a kept spool taken up holds it all.
        self.filled = base is None or spool is not None
        self.sparse = (
            not self.filled
            and base is not None
            and base.size >= SPARSE_MIN_SIZE
            and caps.handles(path)
        )
        if self.sparse:
            self.spool.record_partial()
        # Sparse bookkeeping: the server's size, the size below which its bytes still
        # count (after a local truncate), and the ranges written here.
        self._server_size = base.size if base else 0
        self._cut = self._server_size
        self._size = self._server_size
        self.extents = Extents()
        self.dirty = False
        self._unlinked = False
        self._lock = trio.Lock()
        self._version = 0  # bumped by every change, to know whether a retry can differ
        if spool is not None:
            self._changed()  # its content is what has to go up
        self._failed: tuple[int, AgfsError] | None = None  # (version, error) of the last try
        self._failed_at: float | None = None  # trio time of the last failed upload
        # A local write failed (the cache disk is full or broken): the program was told, and
        # the spool holds a torn content that must neither be uploaded nor kept.
        self.broken: OSError | None = None

    @contextlib.contextmanager
    def _local_io(self) -> Iterator[None]:
        """Spool I/O: a local error (ENOSPC of the cache disk) breaks this content for good."""
        try:
            yield
        except OSError as exc:
            self.broken = exc
            raise

    def _changed(self) -> None:
        self.dirty = True
        self._version += 1
        self.changed_ns = time.time_ns()
        self._untouched = False

    # -- a file created here, not on the server yet ---------------------------------

    def start_new(self, mode: int) -> None:
        """A file just created here: empty, and uploaded at close even if nothing is
        written (the upload is what creates it on the server)."""
        self.start_empty()
        self.created_here = True
        self._untouched = True
        self.set_new_mode(mode)

    def set_new_mode(self, mode: int) -> None:
        """The mode of a file not uploaded yet: given by the first upload's chmod (or the
        temporary's, over the body limit), and only when the server would not give it."""
        self.new_mode = mode & 0o7777
        self._mode = None if self.new_mode == DEFAULT_NEW_FILE_MODE else self.new_mode

    @contextlib.asynccontextmanager
    async def uploads_held(self) -> AsyncIterator[None]:
        """No upload of this content runs inside: one running now (a flush, the last
        close) is waited for first, since until it ends whether the server has the file
        is not known, and none starts until the block is over."""
        async with self._lock:
            yield

    @property
    def not_on_server_yet(self) -> bool:
        """Created here, neither uploaded nor unlinked since: this mount alone has it."""
        return self.created_here and not self._unlinked

    def local_info(self) -> FileInfo:
        """What the mount shows of a file not on the server yet: its spool's size, the
        mode it was made (or chmod'ed) with, the time of its last change."""
        return FileInfo(
            name=paths.split(self.path)[1],
            size=self.size(),
            perm=self.new_mode,
            is_dir=False,
            is_symlink=False,
            mtime_ns=self.changed_ns,
        )

    # -- what the registry of pending writes tells and asks (see ``pending_writes``) --

    def handle_opened(self) -> None:
        """One more open handle shares this writer."""
        self._handles += 1

    def handle_released(self) -> bool:
        """One handle is closed; True when it was the last, so the content is final."""
        self._handles -= 1
        return self._handles <= 0

    @property
    def has_handles(self) -> bool:
        """Whether a handle is open on it (a program may still write)."""
        return self._handles > 0

    def mode_changed(self, perm: int) -> None:
        """A chmod on the server reached the file: an upload through a temporary gives
        the temporary these bits, not the ones the file had when it was opened."""
        if not self.created_here:
            self._mode = perm

    def mark_unlinked(self) -> None:
        """The file's name is gone from the server (unlinked, or replaced by a rename):
        like an orphaned inode, what it holds is never uploaded over what holds the name
        now."""
        self._unlinked = True

    @property
    def unlinked(self) -> bool:
        return self._unlinked

    def failed_before(self, moment: float) -> bool:
        """Whether its last failed upload is older than ``moment`` (trio time): a newer
        version uploaded at ``moment`` makes this content stale."""
        return moment > (self._failed_at or 0.0)

    def base_version(self) -> tuple[int, int | None] | None:
        """(size, mtime_ns) of the server's copy this content started from; None for a
        file created here, which had none."""
        meta = self.spool.meta
        return None if meta.base_size is None else (meta.base_size, meta.base_mtime_ns)

    def spool_path(self) -> Path:
        """Where the content lives on local disk (what a log message or the user needs)."""
        return self.spool.data_path

    def discard(self) -> None:
        """Give the content up without uploading it (stale, or its file is gone)."""
        self.spool.discard()

    def start_empty(self) -> None:
        """O_TRUNC or a new file: the content is empty, whatever the server holds."""
        self.spool.truncate(0)
        self.filled = True
        self.sparse = False
        self._changed()

    async def _ensure_filled(self) -> None:
        if self.filled or self.sparse:
            return
        self.spool.truncate(0)
        await self._client().read_into(self.path, self.spool.append)
        self.filled = True

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        async with self._lock:
            with self._local_io():
                await self._ensure_filled()
                if append:  # the kernel's idea of the end of file may be stale
                    offset = self.size()
                written = self.spool.pwrite(offset, data)
            if self.sparse:
                self.extents.add(offset, offset + written)
                self._size = max(self._size, offset + written)
            self._changed()
            return written

    async def read(self, offset: int, size: int) -> bytes | None:
        if self.filled:
            return self.spool.pread(offset, size)
        if not self.sparse or not self.dirty:
            return None  # nothing local yet: the server has it all
        end = min(offset + size, self._size)
        if offset >= end:
            return b""
        if self.extents.covers(offset, end):
            return self.spool.pread(offset, end - offset)
        result = bytearray(end - offset)
        server_end = min(end, self._cut)
        if offset < server_end:
            remote = await self._client().read(self.path, offset, server_end - offset)
            result[: len(remote)] = remote
        for start, stop in self.extents.overlapping(offset, end):
            result[start - offset : stop - offset] = self.spool.pread(start, stop - start)
        return bytes(result)

    async def truncate(self, size: int) -> None:
        async with self._lock:
            with self._local_io():
                if size == 0:
                    self.filled = True
                    self.sparse = False
                else:
                    await self._ensure_filled()
                self.spool.truncate(size)
            if self.sparse:
                self.extents.truncate(size)
                self._cut = min(self._cut, size)
                self._size = size
            self._changed()

    def size(self) -> int:
        return self._size if self.sparse else self.spool.size

    def local_size(self) -> int | None:
        return self.size() if (self.filled or (self.sparse and self.dirty)) else None

    def retarget(self, path: str) -> None:
        self.path = path
        self.spool.retarget(path)

    def directory_renamed(self, old: str, new: str) -> None:
        """Directory ``old`` is now ``new``: a running upload's temporary in it moved too
        (so that it is moved into place, or removed, under its real name)."""
        if self.temporary is not None and paths.is_within(self.temporary, old):
            self.temporary = paths.rebase(self.temporary, old, new)
            self.spool.record_temporary(self.temporary)

    async def flush(self, *, last: bool = False, now: bool = False) -> None:
        """Upload what changed; ``last``: no handle will write any more (the last close,
        an unmount), so a new file nothing was written to goes up too; ``now``: upload
        even when ``deferred`` (fsync, sync)."""
        if self.deferred and not (last or now):
            if self.broken is not None:
                raise self.broken
            return  # the background uploader sends it once the last handle is closed
        async with self._lock:
            if self.broken is not None:
                raise self.broken  # the content is torn: never uploaded
            if not self.dirty or self._unlinked or (self._untouched and not last):
                return
            version = self._version
            try:
                await self._upload()
            except OSError as exc:  # the spool's own disk: nothing worth keeping
                self.broken = exc
                log.error("upload of %s failed on local disk: %s", self.path, exc)
                raise
            except AgfsError as exc:
                self._failed = (version, exc)
                self._failed_at = trio.current_time()
                path = self.spool.data_path
                log.error(
                    "upload of %s failed (%s); its content is kept in %s", self.path, exc, path
                )
                raise
            self.dirty = False
            self._failed = None
            if self.created_here:
                self.created_here = False
                if self._on_created is not None:
                    self._on_created(self.path, self.local_info())
            if self._on_uploaded is not None:
                self._on_uploaded(self.path)

    async def _upload(self) -> None:
        if self.sparse:
            try:
                await self._upload_changes()
                return
            except NotSupported:
                self._caps.refuse_handles(self.path)
                await self._materialize()
        size = self.spool.size
        if self._caps.fits_one_request(size) or not self._caps.handles(self.path):
            try:
                await self._client().write_from(self.path, self.spool, size)
                await self._give_new_file_its_mode()
                return
            except FileTooLarge:
                if not self._caps.handles(self.path):
                    raise
                self._caps.learn_body_limit(size)
                log.info(
                    "%s is over the server's body limit: uploading through a handle", self.path
                )
        await self._upload_through_temporary(size)

    async def _give_new_file_its_mode(self) -> None:
        """The first upload of a file created here made it with the server's default
        mode: one chmod when it was made (or chmod'ed) with another. A failed chmod does
        not fail the upload: the content is safe, only its mode is the default."""
        if not self.created_here or self._mode is None:
            return
        try:
            await self._client().chmod(self.path, self._mode)
        except AgfsError as exc:
            log.warning("%s is uploaded but its mode is not %o: %s", self.path, self._mode, exc)
            return
        if self._on_mode_given is not None:
            self._on_mode_given(self.path, self._mode)

    async def _upload_through_temporary(self, size: int) -> None:
        """The whole file through a handle, to a hidden name moved over the real one at the
        end: other clients see the old file or the new one, never a short or mixed one, and
        a crash halfway leaves the old content (and a hidden leftover), not a torn file."""
        if self._replace is None:
            raise NotSupported("no way to move a temporary upload into place", path=self.path)
        parent, _ = paths.split(self.path)
        self.temporary = paths.join(parent, asides.new_upload_name(time.time()))
        client = self._client()
        self.spool.record_temporary(self.temporary)
        left_behind = False
        try:
            ranges = _reaching(self.spool.data_ranges(), size)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            await self._handle_upload(self.temporary, ranges, flags)
            if self._mode is not None:
                await client.chmod(self.temporary, self._mode)
            await self._replace(self._temporary_now, self._path_now)
        except BaseException:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_GRACE):
                try:
                    await client.delete(self.temporary)
                except NotFound:
                    pass
                except AgfsError as exc:
                    # The sidecar keeps naming it: the next mount removes it.
                    left_behind = True
                    log.warning(
                        "could not remove the unfinished upload %s: %s", self.temporary, exc
                    )
            raise
        finally:
            if not left_behind:
                self.spool.record_temporary(None)
            self.temporary = None

    def _path_now(self) -> str:
        return self.path

    def _temporary_now(self) -> str:
        if self.temporary is None:
            raise RuntimeError("no upload through a temporary is running")
        return self.temporary

    async def _upload_changes(self) -> None:
        """Sparse flush: shrink if truncated, pwrite the written ranges, grow if extended."""
        client = self._client()
        if self._cut < self._server_size:
            await client.truncate(self.path, self._cut)
        await self._handle_upload(self.path, list(self.extents), os.O_WRONLY)
        reached = max(min(self._server_size, self._cut), self.extents.end)
        if self._size > reached:
            await client.truncate(self.path, self._size)
        self._server_size = self._cut = self._size
        self.extents.clear()

    async def _materialize(self) -> None:
        """The plugin has no handles after all: fetch the unwritten parts, go whole-file."""
        client = self._client()
        position = 0
        for start, stop in [*self.extents, (self._size, self._size)]:
            gap_end = min(start, self._cut)
            if position < gap_end:
                data = await client.read(self.path, position, gap_end - position)
                self.spool.pwrite(position, data)
            position = stop
        self.spool.truncate(self._size)
        self.sparse = False
        self.filled = True

    async def _handle_upload(self, target: str, ranges: list[tuple[int, int]], flags: int) -> None:
        """pwrite ``ranges`` of the spool to ``target`` through one handle, always closed
        afterwards, whatever fails in between (a full cache disk included)."""
        client = self._client()
        handle = await client.open_handle(target, flags)
        chunk = HANDLE_CHUNK
        limit = self._caps.body_limit  # halvings an earlier upload needed are not repeated
        while limit is not None and chunk > limit and chunk > MIN_HANDLE_CHUNK:
            chunk //= 2
        try:
            self.spool.record_handle(handle)  # for a crash: the next mount closes it
            for start, stop in ranges:
                offset = start
                while offset < stop:
                    length = min(chunk, stop - offset)
                    try:
                        await client.handle_write(handle, offset, self.spool.pread(offset, length))
                    except FileTooLarge:
                        self._caps.learn_body_limit(length)
                        if chunk <= MIN_HANDLE_CHUNK:
                            raise
                        chunk //= 2  # the body limit is below our chunk size
                        continue
                    offset += length
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEANUP_GRACE):
                try:
                    await client.close_handle(handle)
                except AgfsError as exc:
                    log.warning("could not close handle %s of %s: %s", handle, target, exc)
            self.spool.record_handle(None)

    async def fsync(self) -> None:
        """Upload now (also when ``deferred``); a running background upload of this
        content is waited for first, and a failure is raised."""
        await self.flush(now=True)

    async def close(self) -> None:
        """Last handle gone: upload if needed and remove the spool; raises if the content
        is not on the server (the caller parks the spool for a retry or keeps it).

        An upload that already failed for exactly this content is not repeated here: the
        program saw the error at close(), and a 413 or a dead server will not change in
        the moment between flush and release.
        """
        if self.broken is not None:
            self.spool.discard()
            log.error(
                "%s: a local write or upload failed (%s); the server keeps its old content",
                self.path,
                self.broken,
            )
            return
        if self.dirty and not self._unlinked:
            if self._failed is not None and self._failed[0] == self._version:
                raise self._failed[1]
            try:
                await self.flush(last=True)
            except OSError:
                self.spool.discard()  # flush set ``broken`` and logged it
                return
        self.spool.discard()

    async def retry(self) -> None:
        """Upload a parked spool again (the server is back); removes it on success."""
        self._failed = None
        await self.close()

    def keep(self, reason: str) -> None:
        """Give up on uploading: leave the spool and its sidecar (saying ``reason``) on
        disk for the user."""
        self.spool.keep(reason, self.extents if self.sparse else None)


def _reaching(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """``ranges`` to pwrite into an emptied file so that it ends up ``size`` bytes long:
    when the spool ends in a hole, its last (zero) byte is sent too, and the plugin fills
    the gap with zeros (memfs's WriteAt extends a file so)."""
    if size and (not ranges or ranges[-1][1] < size):
        ranges.append((size - 1, size))
    return ranges


class MessageWriter:
    """The message strategy: per handle; each flush sends what was written since the last."""

    def __init__(self, client: Callable[[], AgfsClient], path: str) -> None:
        self._client = client
        self.path = path
        self._buffer = bytearray()

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        self._buffer += data
        return len(data)

    async def read(self, offset: int, size: int) -> bytes | None:
        return None

    async def truncate(self, size: int) -> None:
        """Truncating a control file means nothing; ``echo x > enqueue`` sends O_TRUNC."""

    def local_size(self) -> int | None:
        return None

    def retarget(self, path: str) -> None:
        self.path = path

    async def flush(self) -> None:
        if not self._buffer:
            return
        message = bytes(self._buffer)
        self._buffer.clear()
        try:
            await self._client().write(self.path, message)
        except AgfsError:
            self._buffer[:0] = message  # keep it for the retry at release
            raise

    async def fsync(self) -> None:
        await self.flush()

    async def close(self) -> None:
        await self.flush()
