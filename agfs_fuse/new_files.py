"""Files created here that the server does not have yet, answered for from local state.

A new file is created on the server by its first upload (at ``close``), not at ``open``:
a small file then costs one request (the ``PUT``) instead of a create, a ``PUT`` and a
``chmod``. Until that upload this mount alone knows the file, and answers for it from its
spool (``PendingWrites.new_file``): a lookup or stat shows the spool's size and the mode it
was made with, a listing of its directory shows it, a second open shares its spool, and
rename, unlink, chmod and truncate change the local state only. Other clients see nothing
at its path before the upload.

A first upload that fails at ``close`` and is parked for a retry leaves the file this
mount's as before (visible, readable, renamed or unlinked locally: the retry follows the
name, or is dropped; an open for writing takes the spool back from the retries) until the
retry lands; one given up is kept and no longer shown (see
docs/SEMANTICS.md, "Failure behaviour").

AGFS has no exclusive create: ``O_EXCL`` is exclusive within the mount (a file not uploaded
yet counts) and, across clients, only as good as a lookup just before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from .client import AgfsClient
from .errors import AlreadyExists, IsADirectory, NotFound
from .models import FileInfo
from .pending_writes import PendingWrites
from .writes import SpoolWriter

ServerStat = Callable[[str], Awaitable[FileInfo | None]]
"""What the server has at a path (None: nothing), never a local answer."""


class NewFiles:
    """The namespace of files created here and not uploaded yet."""

    def __init__(
        self,
        pending: PendingWrites,
        client: Callable[[], AgfsClient],
        server_stat: ServerStat,
        lookup: ServerStat | None = None,
    ) -> None:
        """``server_stat`` asks the server now; ``lookup`` may answer from what a lookup
        would (the attribute cache, a listing during a creation burst): the O_EXCL check,
        no staler than the kernel's own negative entry that let the create through."""
        self._pending = pending
        self._client = client
        self._server_stat = server_stat
        self._lookup = lookup or server_stat

    def info(self, path: str) -> FileInfo | None:
        """``path``'s attributes when it is a file not on the server yet."""
        return self._pending.new_file_info(path)

    async def make_way(self, path: str, *, exclusive: bool) -> None:
        """Check that a new file may be created at ``path``: EEXIST when this mount has a
        file not uploaded yet there, or (``exclusive``) when a lookup finds one on the
        server; ENOSPC while kept spools are over their cap. Sends nothing else: the
        file's first upload creates it."""
        if self._pending.new_file(path) is not None:
            raise AlreadyExists("file exists", path=path)
        self._pending.check_room_for(path)
        if exclusive and await self._lookup(path) is not None:
            raise AlreadyExists("file exists", path=path)

    def with_new_files(self, directory: str, listed: list[FileInfo]) -> list[FileInfo]:
        """A listing of ``directory`` with its files not on the server yet: in place of a
        listed entry of the same name (which their upload will replace), else added."""
        local = {info.name: info for info in self._pending.new_files_in(directory)}
        if not local:
            return listed
        merged = [local.pop(info.name, info) for info in listed]
        return merged + sorted(local.values(), key=lambda info: info.name)

    async def unlink(self, path: str) -> bool:
        """Unlink ``path`` if it is a file not on the server yet (True): nothing of it is
        ever uploaded; a server file it was to replace (after a rename over it) goes."""
        writer = self._pending.new_file(path)
        if writer is None:
            return False
        async with writer.uploads_held():
            if not writer.not_on_server_yet:
                return False  # its upload just put it there: the server's to unlink
            await self._leave_name(writer)
            self._pending.replaced(path)
        return True

    async def rename(self, old: str, new: str, *, noreplace: bool) -> bool:
        """Rename ``old`` if it is a file not on the server yet (True): its upload goes to
        ``new``, which it replaces (a file there on the server until then, for other
        clients, and a local one at once). EEXIST with ``noreplace`` when ``new`` exists;
        EISDIR when ``new`` is a directory."""
        writer = self._pending.new_file(old)
        if writer is None:
            return False
        async with writer.uploads_held():
            if not writer.not_on_server_yet:
                return False  # its upload just put it there: the server's to rename
            target = self._pending.new_file(new)
            info = target.local_info() if target is not None else await self._server_stat(new)
            if info is not None and noreplace:
                raise AlreadyExists("file exists", path=new)
            if info is not None and info.is_dir:
                raise IsADirectory("is a directory", path=new)
            replacing = target.replacing_server_file if target is not None else info is not None
            await self._leave_name(writer)
            self._pending.replaced(new, old)
            self._pending.renamed(old, new)
            writer.replacing_server_file = replacing
        return True

    async def chmod(self, path: str, mode: int) -> bool:
        """Give ``path`` ``mode`` if it is a file not on the server yet (True): applied at
        its upload, by one chmod only when it is not the server's default."""
        writer = self._pending.new_file(path)
        if writer is None:
            return False
        async with writer.uploads_held():
            if not writer.not_on_server_yet:
                return False  # its upload just put it there: the server's to chmod
            writer.set_new_mode(mode)
        return True

    async def _leave_name(self, writer: SpoolWriter) -> None:
        """``writer``'s file leaves its name: a server file it was to replace there (it
        was renamed over one) is removed now, as the rename meant."""
        if writer.replacing_server_file:
            with contextlib.suppress(NotFound):
                await self._client().delete(writer.path)
            writer.replacing_server_file = False
