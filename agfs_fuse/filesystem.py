"""The filesystem core: POSIX semantics on top of AGFS, by remote path, without FUSE.

This is where AGFS's gaps are bridged: rename that replaces (memfs refuses), symlink
rename (links cannot be renamed), the choice of write strategy per file, fetch-once reads
of files whose size or reads cannot be trusted, and ``/reload``. It knows neither inodes
nor the kernel, so it can be tested by calling it directly. What is written but not yet on
the server (open spools, parked uploads, kept spools) is ``pending_writes``'s to keep; the
core names each file's pending writes by a ``FileKey`` it mints (see ``file_key``).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

from . import asides, names, paths
from .async_uploads import Failure
from .cache import AttrCache, Clock, DirListings, KnownModes
from .capabilities import Capabilities
from .client import AgfsClient
from .errors import (
    AgfsError,
    AlreadyExists,
    CrossDevice,
    DirectoryNotEmpty,
    InvalidArgument,
    NotFound,
    UploadsFailed,
)
from .file_key import FileKey
from .models import FileInfo
from .new_files import NewFiles
from .path_settings import DEFAULT_SETTINGS, PathSettings
from .pending_writes import PendingWrites
from .readahead import Budget, ReadAhead
from .rename import KeptAside, ServerRename
from .rename_gate import RenameGate
from .rename_journal import RenameJournal
from .spool import DEFAULT_MAX_KEPT, KeptSpool, Spool, SpoolDir
from .streams import StreamFollower
from .wire import shown_url
from .writes import DEFAULT_NEW_FILE_MODE, MessageWriter, SpoolWriter, Writer

if TYPE_CHECKING:
    from .federation_control import FederationControl

log = logging.getLogger(__name__)

MESSAGE_TYPES = frozenset({"control", "query", "ctl", "session-ctl"})

ClientFactory = Callable[[str], AgfsClient]
REPLACE_ATTEMPTS = 3

STAT_CONCURRENCY = 8  # stats in flight for the doubtful entries of one listing
REPORTED_MAX = 4096  # paths whose listing problem was logged, before logging them again


class ReloadFailed(AgfsError):
    """A reload could not reach the new server; the old client stays."""


class AgfsFilesystem:
    on_uploaded: Callable[[str], object] | None = None
    """Told each path whose new content reached the server (the inode table's owner)."""
    federation: FederationControl | None = None
    """A federated mount's backends (None: one server, the client's)."""

    def __init__(
        self,
        client: AgfsClient,
        spool_dir: SpoolDir,
        *,
        client_factory: ClientFactory,
        settings: PathSettings = DEFAULT_SETTINGS,
        clock: Clock | None = None,
        max_kept: int = DEFAULT_MAX_KEPT,
    ) -> None:
        """Where ``settings.async_upload`` says so, the last ``close`` of a file hands its
        spool to the background uploader (``async_uploads``) and returns once the content
        is in the local spool."""
        self.client = client
        self.spool_dir = spool_dir
        self._client_factory = client_factory
        self.settings = settings
        """The cache timeouts under each path (per backend in a federated mount)."""

        def attr(path: str) -> float:
            return settings.timeouts(path).attr

        def dir_cache(path: str) -> float:
            return settings.timeouts(path).dir_cache

        def negative(path: str) -> float:
            return settings.timeouts(path).negative

        self.attrs = AttrCache(attr, clock or time.monotonic)
        self.modes = KnownModes(attr, clock or time.monotonic)
        self.listings = DirListings(dir_cache, attr, clock or time.monotonic, burst_window=negative)
        self.caps = Capabilities()
        self.pending = PendingWrites(
            spool_dir,
            self._make_spool_writer,
            self._stat_or_none,
            max_kept=max_kept,
            clock=clock or time.monotonic,
            async_for=settings.async_upload,
        )
        if settings.any_async_upload():
            self.pending.enable_async_uploads()
        self.new_files = NewFiles(
            self.pending, self.current_client, self._stat_now_or_none, self._looked_up_or_none
        )
        self._retired: list[AgfsClient] = []
        self._reload_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.readahead_budget = Budget()
        self.names = names.EscapedNames()
        self._reported: set[str] = set()
        self.renames = RenameGate()
        self.rename_journal = RenameJournal(spool_dir.root / "renames")
        self._kept_asides: set[str] = set()  # replaced files kept while open (see rename)
        self.last_sync_failures: builtins.list[Failure] = []  # of the last ``sync_all``

    def attach(self, nursery: trio.Nursery) -> None:
        """The mount's nursery, for work that outlives one request (following streams,
        retrying parked uploads)."""
        self._nursery = nursery
        nursery.start_soon(self.pending.run)

    def nursery(self) -> trio.Nursery:
        if self._nursery is None:
            raise RuntimeError("filesystem used before attach()")
        return self._nursery

    def current_client(self) -> AgfsClient:
        return self.client

    @property
    def mountpoint(self) -> str | None:
        """Where the mount is, for the messages that name a command."""
        return self.pending.mountpoint

    @mountpoint.setter
    def mountpoint(self, mountpoint: str | None) -> None:
        self.pending.mountpoint = mountpoint

    # -- plugins --------------------------------------------------------------------

    async def refresh_mounts(self) -> None:
        """Learn which plugin serves which path; a server without /mounts is not fatal."""
        try:
            self.caps.set_mounts(await self.client.mounts())
        except AgfsError as exc:
            log.warning("cannot list the server's mounts (%s); assuming plain files", exc)
            self.caps.set_mounts([])

    def is_volatile(self, path: str, info: FileInfo) -> bool:
        """Size untrusted or reads destructive: read with one GET per open, no caching."""
        return not info.is_dir and (info.untrusted or self.caps.volatile(path))

    def is_stream(self, path: str, info: FileInfo) -> bool:
        """A never-ending stream: read by following ``stream=true``, not by ranges."""
        return not info.is_dir and (info.meta_type == "stream" or self.caps.appends(path))

    def wants_messages(self, path: str, info: FileInfo) -> bool:
        """Write-only, control and append-only files: each flush sends what was written."""
        return info.write_only or info.meta_type in MESSAGE_TYPES or self.is_stream(path, info)

    # -- metadata -------------------------------------------------------------------

    async def stat(self, path: str, *, fresh: bool = False) -> FileInfo:
        """``path``'s attributes; while this mount renames something over ``path``, what
        the server has once the rename is over (never the gap in the middle). A file
        created here and not uploaded yet is answered for locally."""
        local = self.new_files.info(path)
        if local is not None:
            return local
        await self.renames.settled(path)
        return self.pending.waiting_info(path, await self._stat(path, fresh=fresh))

    async def _stat(self, path: str, *, fresh: bool = False) -> FileInfo:
        if not fresh:
            cached = self.attrs.get(path) or await self._from_listing(path)
            if cached is not None:
                return cached
        since = self.attrs.mark()
        info = await self.client.stat(path)
        if not self.is_volatile(path, info):
            self.attrs.put(path, info, since)
        return info

    async def _from_listing(self, path: str) -> FileInfo | None:
        """Answer a lookup from the parent's listing: NotFound when a listing younger
        than ``attr_timeout`` (or ``dir_cache_timeout``, or a creation burst's
        ``negative_timeout``) lacks the name, or the directory was made here and is still
        known empty; after two lookups in one directory that nothing answered (one during
        a walk: see ``DirListings``), list it once instead of a stat per name. None when
        the server must be asked."""
        if path == "/":
            return None
        parent, name = paths.split(path)
        names = self.listings.names(parent)
        if names is None and self.listings.worth_listing(parent):
            try:
                await self.list(parent)
            except AgfsError:
                return None  # let the stat of the name itself say what is wrong
            names = self.listings.names(parent)
        if names is not None and name not in names and asides.aside_made_at(name) is None:
            # (a name the mount generated, a file kept aside while open or an upload's
            # temporary, may be missing from a listing made before it, yet be there)
            raise NotFound("no such file or directory", path=path)
        return self.attrs.get(path)  # None for links, whose listed size is not theirs

    async def list_for_reading(self, path: str) -> builtins.list[FileInfo]:
        """A directory's entries for ``readdir``: from a listing less than ``attr_timeout``
        old when the attributes of all its names are still cached (a second ``ls`` right
        after the first needs no request), else listed now."""
        cached = self._cached_listing(path)
        return cached if cached is not None else await self.list(path)

    async def entries_for_reading(self, path: str) -> builtins.list[tuple[str, FileInfo]]:
        """``list_for_reading`` with the name the mount shows for each entry (escaped where
        the kernel cannot take the real one), as recorded by the listing that fetched it,
        and with the files created here: those not uploaded yet, and those whose first
        upload landed while the listing was in flight (``landings``)."""
        with self.pending.landings.watch(path) as landed:
            listed = await self.list_for_reading(path)
            # No await from here to the merge: a file is either still local or landed.
            listed = self.new_files.with_new_files(path, listed + landed.missing_from(listed))
        return self.names.shown(path, listed)

    def _cached_listing(self, path: str) -> builtins.list[FileInfo] | None:
        names = self.listings.recent(path)
        if names is None:
            return None
        entries = []
        for name in names:
            info = self.attrs.peek(paths.join(path, name))
            if info is None:
                return None
            entries.append(info)
        return entries

    async def list(self, path: str) -> builtins.list[FileInfo]:
        since = self.attrs.mark(), self.listings.mark()
        with self.pending.landings.watch(path) as landed:
            entries = await self._trustworthy(path, await self.client.list(path))
            # Files made here whose first upload landed while the server listed: the
            # answer may predate them, but they are there (``landings``).
            late = [info.name for info in landed.missing_from(entries)]
        self.names.record(path, entries)
        for info in entries:
            if not info.is_symlink:  # listings report links with size 0
                self.attrs.put(paths.join(path, info.name), info, since[0])
        self.listings.put(path, [*(info.name for info in entries), *late], since[1])
        return entries

    async def _trustworthy(
        self, path: str, listed: builtins.list[FileInfo]
    ) -> builtins.list[FileInfo]:
        """The listing with one entry per name, each doubtful one (an on-disk link, a name
        listed twice or holding U+FFFD) replaced by what ``GET /stat`` says of its name, so
        that a read never serves a size other than the one shown. A doubtful name the
        server cannot stat (a dangling link, a name it could not spell) is left out and
        logged: it could be neither read nor removed through the mount."""
        entries, doubtful, repeated = names.sort_out(listed)
        for name in repeated:
            self._report(paths.join(path, name), "listed more than once; showing one entry")
        if not doubtful:
            return entries
        found: dict[str, FileInfo] = {}
        failures: builtins.list[AgfsError] = []
        limiter = trio.CapacityLimiter(STAT_CONCURRENCY)

        async def stat_one(name: str) -> None:
            async with limiter:
                try:
                    found[name] = await self.client.stat(paths.join(path, name))
                except NotFound:
                    pass
                except AgfsError as exc:
                    failures.append(exc)

        async with trio.open_nursery() as nursery:
            for name in doubtful:
                nursery.start_soon(stat_one, name)
        if failures:
            raise failures[0]
        kept = []
        for info in entries:
            if info.name not in doubtful:
                kept.append(info)
            elif info.name in found:
                kept.append(dataclasses.replace(found[info.name], name=info.name))
            else:
                why = "a dangling link" if info.is_disk_link else "the server cannot stat it"
                self._report(paths.join(path, info.name), f"left out of the listing: {why}")
        return kept

    def _report(self, path: str, problem: str) -> None:
        """A warning the first time a listing shows ``path``'s problem, then quiet."""
        if len(self._reported) >= REPORTED_MAX:
            self._reported.clear()
        if path not in self._reported:
            self._reported.add(path)
            log.warning("%r: %s", path, problem)

    def child_path(self, parent: str, name: str) -> str:
        """The remote path of ``name`` as the mount shows it in ``parent``: an escaped name
        leads back to the real one."""
        return paths.join(parent, self.names.real_name(parent, name) or name)

    async def lookup_path(self, parent: str, name: str) -> str:
        """``child_path`` for a lookup: a name shaped like an escaped one that no listing
        has shown yet (a path typed by hand, a map outlived by a rename) lists ``parent``
        once to learn what it stands for."""
        if self.names.real_name(parent, name) is None and names.looks_escaped(name):
            with contextlib.suppress(AgfsError):  # the plain name's lookup says what is wrong
                await self.list(parent)
        return self.child_path(parent, name)

    @contextmanager
    def _changing(self, *changed: str) -> Iterator[None]:
        """A mutation of ``changed`` (and everything below): their cached attributes go,
        both before (so the mutation's own checks ask the server) and after (so nothing
        those checks cached survives the change), whatever the outcome."""
        for path in changed:
            self.attrs.invalidate_tree(path)
            self.modes.forget_tree(path)
        try:
            yield
        except BaseException:
            for path in changed:  # whether it happened on the server is not known
                self.listings.forget_parent(path)
                self.listings.invalidate_tree(path)
            raise
        finally:
            for path in changed:
                self.attrs.invalidate_tree(path)
                self.modes.forget_tree(path)

    # -- namespace ------------------------------------------------------------------

    async def mkdir(self, path: str, mode: int) -> None:
        """Make a directory. Inside a plugin of plain files, its attributes are then known
        without a stat, and so is its emptiness: lookups in it and a listing of it need
        no request until something changes (elsewhere a new directory may hold entries
        of the plugin's own, as a queue does)."""
        with self._changing(path):
            await self.client.mkdir(path, mode)
            self.listings.created(path)
        if self._plain_files(path):
            self._made(path, perm=mode, is_dir=True)
            self.listings.made_empty(path)

    async def create(
        self, path: str, mode: int, *, exclusive: bool = False, keeps_content: bool = False
    ) -> None:
        """Make way for a new file at ``path`` (EEXIST when it exists here, or with
        ``exclusive`` on the server); ``open_new_file`` then opens it. A plain file is
        created on the server by its first upload (see ``new_files``); anywhere else it is
        created here and now (see ``_created_by_upload``).

        ``keeps_content``: the opener keeps what a file there holds (``O_CREAT`` without
        ``O_TRUNC``: ``touch``, ``>>``). The lookup that let the create through may have
        been answered by a listing up to ``attr_timeout`` old, and a file another client
        made since must be opened, not replaced by an empty upload: the server is asked
        (EEXIST when it has the name)."""
        await self.renames.settled(path)
        with self._changing(path):
            if self._created_by_upload(path):
                keeps = keeps_content and not exclusive  # O_EXCL: best effort (new_files)
                if keeps and await self._stat_now_or_none(path) is not None:
                    raise AlreadyExists("file exists", path=path)
                await self.new_files.make_way(path, exclusive=exclusive)
                given = False
            else:
                given = await self._create_on_server(path, mode)
            self.listings.created(path)
        if given:  # set by our chmod: known
            self.modes.remember(path, mode)

    def _created_by_upload(self, path: str) -> bool:
        """Whether a new file at ``path`` may wait for its first upload to exist: inside a
        plugin whose files are plain. Not where a PUT is a message (appending, volatile
        plugins), nor outside every plugin (the server's root refuses files: the create
        says so at once)."""
        return self._plain_files(path)

    def _plain_files(self, path: str) -> bool:
        """Whether ``path`` is inside a plugin of plain files and directories: what the
        mount makes there is what it asked for (no control files appear in a new
        directory, as in a queue), and a PUT replaces a file's content."""
        mount = self.caps.mount_point(path)
        return (
            mount is not None
            and mount.path != path
            and not self.caps.volatile(path)
            and not self.caps.appends(path)
        )

    def _same_plain_plugin(self, old: str, new: str) -> bool:
        """Whether a file not uploaded yet at ``old`` may move to ``new`` locally: the
        same plugin mount, where new files are made by their upload."""
        same = self.caps.mount_point(old) == self.caps.mount_point(new)
        return same and self._created_by_upload(new)

    async def _create_on_server(self, path: str, mode: int) -> bool:
        """Make the file now; whether a chmod gave it ``mode`` (the server's default mode
        is assumed to be ``DEFAULT_NEW_FILE_MODE``, not known: a umask of its own may
        differ)."""
        self.pending.check_room_for(path)  # before the server has an empty file to show for it
        await self.client.create(path)
        if mode & 0o7777 == DEFAULT_NEW_FILE_MODE:
            return False
        try:
            await self.client.chmod(path, mode)
        except AgfsError as exc:
            log.debug("chmod after create of %s failed: %s", path, exc)
            return False
        return True

    async def unlink(self, path: str) -> None:
        with self._changing(path):
            if not await self.new_files.unlink(path):
                async with self.pending.uploads_held(path):  # after a background upload
                    await self._unlink(path)
            self.listings.removed(path)

    async def _unlink(self, path: str) -> None:
        if self.caps.is_queue(path):
            info = await self._stat_or_none(path)
            if info is not None and info.meta_type in ("control", "status"):
                # A queue's control files come and go with the queue (rmdir), so that
                # `rm -r queue` works; removing one alone means nothing.
                log.debug("unlink of queue control file %s: nothing to do", path)
                return
        await self.client.delete(path)
        self._replaced(path)

    def _replaced(self, path: str, moved_in: str | None = None) -> None:
        """``path`` is gone from the server (unlinked, or replaced by a rename of
        ``moved_in``): its pending writes must never be uploaded over it."""
        self.pending.replaced(path, moved_in)

    async def rmdir(self, path: str) -> None:
        with self._changing(path):
            await self._rmdir(path)
            self.listings.removed(path)
            self.listings.invalidate_tree(path)

    async def _rmdir(self, path: str) -> None:
        if self.pending.has_new_files_within(path):  # their uploads go into it
            raise DirectoryNotEmpty("directory not empty", path=path)
        if self.caps.is_queue(path):
            info = await self._stat_or_none(path)
            if info is not None and info.meta_type == "queue":
                # queuefs deletes a queue only as a tree; its entries are control files.
                await self.client.rmdir(path, recursive=True)
                return
        # AGFS keeps symlinks beside the plugin: a directory holding only links is empty
        # to the plugin, which would delete it and leave the links dangling in the air.
        if await self.client.list(path):
            raise DirectoryNotEmpty("directory not empty", path=path)
        await self.client.rmdir(path)

    async def symlink(self, target: str, link: str) -> None:
        with self._changing(link):
            await self.client.symlink(target, link)
            self.listings.created(link)
        # AGFS keeps links beside the plugins: a new one is the same everywhere.
        self._made(link, perm=0o777, is_symlink=True, size=len(target.encode()))

    def _made(
        self, path: str, *, perm: int, is_dir: bool = False, is_symlink: bool = False, size: int = 0
    ) -> None:
        """Cache the attributes of what this mount just made at ``path`` (as stale as any
        cached attribute): the stat that would follow (``tar`` sets a new directory's
        mode, owner and times) needs no request."""
        name = paths.split(path)[1]
        kind = "symlink" if is_symlink else ""  # as the server's stat of an AGFS link says
        info = FileInfo(name, size, perm & 0o7777, is_dir, is_symlink, time.time_ns(), "", kind)
        self.attrs.made(path, info)

    async def readlink(self, path: str) -> str:
        return await self.client.readlink(path)

    async def chmod(self, path: str, mode: int) -> None:
        """Change the permission bits; what was cached of the file stays, with the new bits,
        so the stat that follows every setattr needs no request. Bits the file is known
        to have already (an untar sets the mode it made the file with) need no request
        either: known from attributes or from this mount's own create or chmod, younger
        than ``attr_timeout`` (as stale as any cached attribute). A file not uploaded yet
        takes the bits locally (``new_files``)."""
        if await self.new_files.chmod(path, mode):
            self.attrs.invalidate(path)
            return
        perm = mode & 0o7777
        cached = self.attrs.peek(path)
        known = self.attrs.perm(path)
        if perm == (known if known is not None else self.modes.get(path)):
            return
        # After a background upload of the file; of files under a directory only when
        # the new bits take the owner's write away (the server may then refuse them).
        async with self.pending.uploads_held(path, below=not perm & 0o200):
            with self._changing(path):
                await self.client.chmod(path, mode)
            self.pending.mode_changed(path, perm)
        self.modes.remember(path, perm)
        if cached is not None:
            self.attrs.put(path, dataclasses.replace(cached, perm=perm))

    async def _stat_or_none(self, path: str) -> FileInfo | None:
        try:
            return await self.stat(path, fresh=True)
        except NotFound:
            return None

    async def _looked_up_or_none(self, path: str) -> FileInfo | None:
        """What a lookup of ``path`` finds on the server, from the caches when they know."""
        try:
            return await self._stat(path)
        except NotFound:
            return None

    async def server_info(self, path: str) -> FileInfo | None:
        """What the server has at ``path`` now (None: nothing), never a local answer."""
        return await self._stat_now_or_none(path)

    async def _stat_now_or_none(self, path: str) -> FileInfo | None:
        """The server's answer even in the middle of a rename (the rename's own checks)."""
        try:
            return await self._stat(path, fresh=True)
        except NotFound:
            return None

    async def rename(
        self,
        old: str,
        new: str,
        *,
        noreplace: bool = False,
        keep_replaced: Callable[[], bool] | None = None,
    ) -> KeptAside | None:
        """POSIX rename: replaces ``new`` even where the plugin refuses, never loses it.
        ``ServerRename`` makes it of requests the server understands; here the mount's own
        state follows (open spools, parked uploads, caches). While it runs, lookups of
        ``old`` and ``new`` on this mount wait for it. A replaced file that
        ``keep_replaced`` says is still open is kept aside: the caller discards it later."""
        if old == new:
            return None
        if paths.is_within(new, old):
            raise InvalidArgument("cannot move a directory into itself", path=new)
        if await self._rename_new_file(old, new, noreplace):
            return None  # nothing on the server moved: its upload goes to ``new``
        # After the background uploads of both names (and below): one to ``old`` landing
        # after the move would bring ``old`` back; one to ``new``, replace what moved in.
        # Taken before the rename gate, which an upload through a temporary needs.
        async with self.pending.uploads_held(old, new):
            return await self._rename_on_server(old, new, noreplace, keep_replaced)

    async def _rename_on_server(
        self, old: str, new: str, noreplace: bool, keep_replaced: Callable[[], bool] | None
    ) -> KeptAside | None:
        async with self.renames.renaming(old, new):
            with self._changing(old, new):
                rename = self.server_rename(keep_replaced)
                await rename.run(old, new, noreplace)
                self._replaced(new, old)
                self.pending.renamed(old, new)
                self.listings.removed(old)
                self.listings.invalidate_tree(old)
                self.listings.invalidate_tree(new)
                self.listings.added(new)
                if rename.kept is not None:
                    self._kept_asides.add(rename.kept.aside)
                return rename.kept

    async def _rename_new_file(self, old: str, new: str, noreplace: bool) -> bool:
        """Rename ``old`` locally if it is a file not on the server yet (True). Outside
        the rename gate: it may wait for an upload of the file, which may itself need the
        gate to move a temporary into place."""
        if self.new_files.info(old) is None:
            return False
        if not self._same_plain_plugin(old, new):
            raise CrossDevice("rename across AGFS mounts", path=new)  # as on the server
        with self._changing(old, new):
            if not await self.new_files.rename(old, new, noreplace=noreplace):
                return False  # uploaded meanwhile: a rename on the server
            self.listings.removed(old)
            self.listings.added(new)
        return True

    async def discard_kept(self, kept: KeptAside) -> None:
        """A replaced file kept while open is closed for good: delete it."""
        self.attrs.invalidate(kept.aside)
        self._kept_asides.discard(kept.aside)
        await self.server_rename().discard(kept)

    def hidden(self, parent: str, name: str, now: float) -> bool:
        """Whether a listing of ``parent`` leaves ``name`` out: a name the mount generated
        (``asides``) that is young at ``now`` (wall clock), or that this mount knows is in
        use whatever its age: a replaced file kept while open, an upload's temporary."""
        if asides.aside_made_at(name) is None:
            return False
        return asides.is_hidden(name, now) or paths.join(parent, name) in self._live_generated()

    def _live_generated(self) -> set[str]:
        running = self.pending.running_temporaries()
        return self._kept_asides | running

    def server_rename(self, keep_replaced: Callable[[], bool] | None = None) -> ServerRename:
        """A ``ServerRename`` that checks the server directly (not through the rename
        gate, which its own rename holds) and records its intent in the journal."""
        fresh_stat = functools.partial(self._stat, fresh=True)
        return ServerRename(
            self.client,
            fresh_stat,
            self._stat_now_or_none,
            journal=self.rename_journal,
            keep_replaced=keep_replaced,
        )

    # -- data -----------------------------------------------------------------------

    async def read(self, path: str, offset: int, size: int) -> bytes:
        return await self.client.read(path, offset, size)

    async def settled_path(self, path_now: Callable[[], str | None]) -> str | None:
        """A file's path (``path_now()`` follows renames) once no rename changes it: in
        the middle of one, the server has the file under neither name, or another's."""
        while (path := path_now()) is not None:
            await self.renames.settled(path)
            if path_now() == path:
                return path
        return None

    def read_ahead(self, path_now: Callable[[], str | None], info: FileInfo) -> ReadAhead:
        """Prefetching for a handle of a plain file; ``path_now`` follows renames."""

        async def fetch(offset: int, size: int) -> bytes:
            path = await self.settled_path(path_now)
            if path is None:
                raise NotFound("file was removed")
            return await self.client.read(path, offset, size)

        return ReadAhead(fetch, info.size, self.nursery(), self.readahead_budget)

    def follow_stream(self, path: str) -> StreamFollower:
        """Reading for a handle of a never-ending stream: it follows through whichever
        client is current (a reload swaps it), started at the handle's first read."""
        return StreamFollower(self.current_client, path)

    async def fetch_all(self, path: str) -> bytes:
        """One GET for the whole content: for files whose size or reads are untrusted."""
        return await self.client.read(path, idempotent=False)

    async def truncate(self, key: FileKey, path: str, size: int) -> None:
        """Set a file's size. A full PUT is the only thing every plugin honours."""
        with self._changing(path):
            await self._truncate(key, path, size)

    async def _truncate(self, key: FileKey, path: str, size: int) -> None:
        # A parked new file's retry may be landing (then its spool goes): wait for it, and
        # the truncate holds the spool before the next one can start.
        await self.pending.upload_settled(path)
        writer = self.pending.spool_of(key)
        if writer is not None:
            await writer.truncate(size)
            return
        info = await self.stat(path)
        if self.wants_messages(path, info):
            return  # truncating a control file would send an empty message
        if size == 0:
            await self.client.write(path, b"")
            self._uploaded(path)
            return
        temporary = self.pending.new_spool(path, info)
        await temporary.truncate(size)
        await temporary.close()

    @property
    def url(self) -> str:
        return self.client.base_url

    # -- pending writes (kept in ``pending``; these are its doors) -------------------

    def new_file_key(self, path: str | None = None) -> FileKey:
        """A key for a file's pending writes (see ``file_key``): that of a spool at
        ``path`` waiting for its background upload, else one never given before."""
        return self.pending.new_key(path)

    async def upload_settled(self, path: str) -> None:
        """Once no background upload of ``path`` runs (before an open for writing)."""
        await self.pending.upload_settled(path)

    async def fsync_file(self, writer: Writer | None, path: str | None) -> None:
        """``fsync`` of a handle: upload what ``writer`` holds (the handle's own, or the
        spool of its file waiting for its background upload) now, in any mode, and raise
        its failure; with nothing to upload, report a background upload of ``path`` that
        was given up since the last fsync (EIO)."""
        if writer is not None:
            self.attrs.invalidate(writer.path)
            await writer.fsync()
            return
        failure = self.pending.failure_for_fsync(path) if path is not None else None
        if failure is not None:
            raise UploadsFailed(f"the background upload failed: {failure.line()}", path=path)

    async def sync_all(self) -> builtins.list[Failure]:
        """``/.agfs-sync`` (``agfs-fuse sync``): every pending upload sent and waited for;
        returns the failures (given up since the last sync, or failed now)."""
        self.last_sync_failures = await self.pending.sync_all()
        return self.last_sync_failures

    def open_writer(self, key: FileKey, path: str, info: FileInfo, flags: int) -> Writer:
        """The write strategy for a handle opened for writing on ``path``."""
        if self.wants_messages(path, info):
            return MessageWriter(self.current_client, path)
        writer = self.pending.open_spool(key, path, info, truncating=bool(flags & os.O_TRUNC))
        if flags & os.O_TRUNC:
            writer.start_empty()
        return writer

    def open_new_file(self, key: FileKey, path: str, mode: int = DEFAULT_NEW_FILE_MODE) -> Writer:
        """A file ``create`` just made way for: empty, nothing to fetch; its first upload
        creates it on the server with ``mode``."""
        if self.caps.appends(path):
            return MessageWriter(self.current_client, path)  # a second PUT would append again
        if not self._created_by_upload(path):  # ``create`` made it on the server already
            return self.pending.open_new_spool(key, path, None)
        return self.pending.open_new_spool(key, path, mode)

    def spool_of(self, key: FileKey) -> SpoolWriter | None:
        return self.pending.spool_of(key)

    async def release_writer(self, key: FileKey, writer: Writer) -> None:
        """A handle is closed: the last one of a spool uploads it (see
        ``PendingWrites.release``). Never raises."""
        self.attrs.invalidate(writer.path)
        await self.pending.release(key, writer)

    def kept_spools(self) -> builtins.list[KeptSpool]:
        """Spools on disk that nothing of this mount is using: failed uploads, crashes."""
        return self.pending.kept()

    async def kept_spool_command(self, text: str) -> None:
        """``/.agfs-spools``: ``upload ID`` or ``discard ID``, for this mount's server."""
        await self.pending.kept_spool_command(text, self.url)

    def pending_uploads(self) -> int:
        return self.pending.pending_count()

    async def flush_all(self, *, final: bool = False) -> builtins.list[str]:
        """Upload every dirty and parked spool (unmount, server switch); returns the paths
        still not on the server. Never raises. ``final``: the mount ends (unmount,
        SIGTERM): background uploads get their retries, then are kept."""
        return await self.pending.flush_all(final=final)

    def keep_pending(self) -> None:
        """Unmounting: leave what could not be uploaded on disk for the next mount."""
        self.pending.keep_all()

    def _make_spool_writer(
        self, path: str, base: FileInfo | None, kept: Spool | None
    ) -> SpoolWriter:
        """A spool writer that uploads through whichever client is current and moves
        whole-file uploads into place through this core's renames."""
        return SpoolWriter(
            self.current_client,
            self.spool_dir,
            path,
            base,
            self.url,
            self.caps,
            on_uploaded=self._uploaded,
            replace=self._move_upload_into_place,
            spool=kept,
            on_mode_given=self.modes.remember,
            on_created=self.pending.created,
        )

    async def _move_upload_into_place(
        self, temporary_now: Callable[[], str], path_now: Callable[[], str]
    ) -> None:
        """A whole file uploaded to ``temporary_now()`` replaces ``path_now()``: by POSIX
        rename, so other clients see the old file or the new one (on memfs, briefly
        neither), and lookups on this mount wait for it; the rename's intent is journalled
        like any other.

        Another client's upload may land on the path between our look and our move (memfs
        then refuses with EEXIST), or move the old file away just before we do (ENOENT
        with our temporary still there): we try again, since the last close wins."""
        for attempt in range(1, REPLACE_ATTEMPTS + 1):
            try:
                path = await self._move_once(temporary_now, path_now)
                break
            except (AlreadyExists, NotFound) as exc:
                if attempt == REPLACE_ATTEMPTS:
                    raise
                if isinstance(exc, NotFound) and not await self._stat_now_or_none(temporary_now()):
                    raise  # our upload itself is gone: nothing to move
                log.info("%s was replaced meanwhile by another client; replacing again", path_now())
        self.listings.invalidate_tree(path)
        self.listings.added(path)

    async def _move_once(
        self, temporary_now: Callable[[], str], path_now: Callable[[], str]
    ) -> str:
        """One move of the temporary, at the names it has once this mount's renames of
        them are over (a rename that held the gate may have moved the file or its
        directory meanwhile); returns the path it replaced."""
        while True:
            temporary, path = temporary_now(), path_now()
            async with self.renames.renaming(temporary, path):
                if (temporary_now(), path_now()) != (temporary, path):
                    continue  # moved while we waited for our turn: go to the new names
                with self._changing(temporary, path):
                    await self.server_rename().run(temporary, path, False)
                return path

    def _uploaded(self, path: str) -> None:
        """The server has a new version of ``path``: what was cached of it is stale, and a
        listing of its directory taken before (a new file's first upload) lacks it."""
        self.attrs.invalidate(path)
        if self.pending.background is not None and self.settings.async_upload(path):
            self.listings.landed(path)  # from the background, all through a burst
        else:
            self.listings.added(path)
        self.pending.uploaded(path)
        if self.on_uploaded is not None:
            self.on_uploaded(path)

    # -- reload ---------------------------------------------------------------------

    async def reload(self, text: str) -> str:
        """``/reload``: a fresh client for the same URL, or a switch to a new server (in a
        federated mount: every backend reconnected, a URL refused)."""
        if self.federation is not None:
            await self.federation.reconnect_all(text)
            return self.url
        request = text.strip()
        if request and not request.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"reload expects nothing or an http(s) URL, got {shown_url(request)}"
            )
        async with self._reload_lock:
            fresh = self._client_factory(request or self.url)
            switching = fresh.base_url != self.url
            try:
                health = await fresh.health()
            except AgfsError as exc:
                await fresh.aclose()
                raise ReloadFailed(f"reload failed: {exc}") from exc
            if health.status not in ("healthy", "degraded", "starting"):
                await fresh.aclose()
                raise ReloadFailed(f"reload failed: server says {health.status!r}")
            if switching and await self.flush_all():
                await fresh.aclose()
                raise ReloadFailed("reload failed: pending writes could not be uploaded")
            self._retired.append(self.client)
            self.client = fresh
            await self.server_changed()
            log.info("reloaded: now serving %s", self.url)
            return self.url

    async def server_changed(self) -> None:
        """A server was reconnected, switched, added or removed: what was cached of it
        may be another's, and its plugins are to be learned again."""
        self.attrs.clear()
        self.modes.clear()
        self.listings.clear()
        await self.refresh_mounts()

    async def reload_backend(self, prefix: str, text: str) -> str:
        """A federated mount's ``/dc1/reload``: reconnect or switch that backend only."""
        if self.federation is None:
            raise NotFound("a backend's reload exists in a federated mount only")
        return await self.federation.reload_backend(prefix, text)

    async def change_backends(self, text: str) -> str:
        """A federated mount's ``/.mounts`` write; returns the prefix mounted or unmounted."""
        if self.federation is None:
            raise NotFound(".mounts exists in a federated mount only")
        return await self.federation.command(text)

    def backends_listing(self) -> bytes:
        """What reading ``/.mounts`` shows: each backend, its URL, state and uploads."""
        return self.federation.listing() if self.federation is not None else b""

    def snapshot(self) -> dict[str, object]:
        """What ``/.agfs-stats`` reports about the connection, caches and uploads."""
        attrs = self.attrs
        lookups = attrs.hits + attrs.misses
        return {
            "url": self.url,
            **self.client.stats.snapshot(),
            "attr_cache": {
                "hits": attrs.hits,
                "misses": attrs.misses,
                "hit_rate": round(attrs.hits / lookups, 3) if lookups else 0.0,
            },
            "open_spools": self.pending.open_count(),
            "pending_uploads": self.pending_uploads(),
            "parked_uploads": self.pending.parked_count(),
            **self._async_snapshot(),
            "last_sync_failures": [failure.describe() for failure in self.last_sync_failures],
            "spool_dir": str(self.spool_dir.root),
            "max_kept": self.pending.max_kept,
            "kept_spools": [spool.describe() for spool in self.kept_spools()],
            **({"backends": self.federation.snapshot()} if self.federation else {}),
        }

    def _async_snapshot(self) -> dict[str, object]:
        background = self.pending.background
        return {"async_uploads": background.snapshot()} if background is not None else {}

    async def aclose(self) -> None:
        for client in [*self._retired, self.client]:
            await client.aclose()
