"""Several AGFS servers behind the interface of one: the client of a federated mount.

The filesystem core, its caches, spools and open files know one client; federation is
added here, below them, so none of them changes: ``/dc1/x`` goes to backend ``/dc1`` as
``<its root>/x``, over that backend's own connection. The mount root and each backend's
directory are made up here and never ask a server, so a backend that is down still shows
its directory (``ls -l`` of the root works) while everything under it fails with EIO by
itself; the others are not touched. A rename from one backend to another is
``CrossDevice`` (EXDEV), which makes ``mv`` copy and delete instead.
"""

from __future__ import annotations

import builtins
import errno
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import trio

from . import paths
from .backends import Backend, BackendTable
from .client import AgfsClient, HasFileno
from .errors import (
    AgfsError,
    AlreadyExists,
    CrossDevice,
    IsADirectory,
    NotFound,
    NotPermitted,
)
from .models import FileInfo, Health, MountPoint

log = logging.getLogger(__name__)

T = TypeVar("T")
DIRECTORY_MODE = 0o755


class BackendBusy(AgfsError):
    """A backend still has uploads to finish (its unmount is refused: EBUSY)."""

    errno = errno.EBUSY


class FederatedClient(AgfsClient):
    """An ``AgfsClient`` whose paths start with a backend's prefix.

    It is an ``AgfsClient`` by interface only (so the core takes it unchanged): every
    public method is routed to a backend's own client, and none of the session's
    plumbing is used; ``_request`` says so loudly if a method was forgotten.
    """

    def __init__(self, table: BackendTable, source: str) -> None:  # no session of its own
        self.table = table
        self.base_url = source
        """What spools, the rename journal and ``.agfs-stats`` record as the server: the
        federation's source (its config file, or ``agfs-federation``)."""
        self.stats = table.stats
        self.timeout = max((b.client.timeout for b in table.all()), default=30.0)
        self._started_ns = time.time_ns()
        self._handles: dict[int, tuple[Backend, AgfsClient, int]] = {}
        self._handle_ids = itertools.count(1)

    async def _request(self, *args: Any, **kw: Any) -> NoReturn:
        raise AssertionError("FederatedClient routes every call to a backend's client")

    # -- routing --------------------------------------------------------------------

    def _directory(self, name: str) -> FileInfo:
        return FileInfo(
            name=name,
            size=0,
            perm=DIRECTORY_MODE,
            is_dir=True,
            is_symlink=False,
            mtime_ns=self._started_ns,
        )

    def _backend(self, path: str) -> Backend:
        backend = self.table.find(path)
        if backend is None:
            if path == "/":
                raise NotPermitted(
                    "the root of a federated mount holds its backends only", path=path
                )
            raise NotFound("no such backend in this mount", path=path)
        return backend

    def _inside(self, path: str) -> tuple[Backend, str]:
        """The backend and server path of something a program may change: a backend's
        directory itself (or the root) is the mount's, not the server's."""
        backend = self._backend(path)
        if path == backend.prefix:
            raise NotPermitted(f"{path} is a backend of the mount; see .mounts", path=path)
        return backend, backend.remote(path)

    def _root_entry(self, path: str) -> NoReturn:
        """A new name in the root, which holds the backends only."""
        if paths.split(path)[0] == "/" and path in self.table:
            raise AlreadyExists("a backend of the mount", path=path)
        raise NotPermitted(
            "the root of a federated mount holds its backends only; add one in .mounts",
            path=path,
        )

    async def _on(self, backend: Backend, call: Awaitable[T]) -> T:
        """Await ``call`` (a request of ``backend``'s client), note whether the server
        answered, and name paths in errors as the mount shows them."""
        try:
            result = await call
        except AgfsError as exc:
            backend.noted(exc)
            if exc.path:
                exc.path = backend.mount_path(exc.path) or exc.path
            raise
        backend.noted(None)
        return result

    def _client_for(self, path: str) -> tuple[Backend, AgfsClient, str]:
        """The backend, its current client and the server path for a request about
        ``path``, which must be inside a backend (the root's names are the mount's)."""
        backend = self.table.find(path)
        if backend is None or path == backend.prefix:
            self._root_entry(path)
        return backend, backend.client, backend.remote(path)

    # -- server ---------------------------------------------------------------------

    async def health(self) -> Health:
        """Healthy when every backend is; degraded when some answer and others do not."""
        states: dict[str, Health | None] = {}

        async def ask(backend: Backend) -> None:
            try:
                states[backend.prefix] = await self._on(backend, backend.client.health())
            except AgfsError:
                states[backend.prefix] = None

        async with trio.open_nursery() as nursery:
            for backend in self.table.all():
                nursery.start_soon(ask, backend)
        up = [h for h in states.values() if h is not None]
        if len(up) == len(states):
            degraded = any(h.degraded for h in up)
            return Health("degraded" if degraded else "healthy", "", True, degraded)
        return Health("degraded" if up else "unreachable", "", bool(up), True)

    async def mounts(self) -> builtins.list[MountPoint]:
        """Each backend's plugin mounts, where the mount shows them (a plugin that
        covers a backend's root covers its whole directory). A backend that cannot
        answer is left out: its files are then taken for plain files."""
        found: list[MountPoint] = []

        async def ask(backend: Backend) -> None:
            try:
                mounts = await self._on(backend, backend.client.mounts())
            except AgfsError as exc:
                log.warning("cannot list the mounts of %s (%s)", backend.prefix, exc)
                return
            for mount in mounts:
                if paths.is_within(backend.spec.root, mount.path):
                    found.append(MountPoint(backend.prefix, mount.plugin, mount.status))
                    continue
                shown = backend.mount_path(mount.path)
                if shown is not None:
                    found.append(MountPoint(shown, mount.plugin, mount.status))

        async with trio.open_nursery() as nursery:
            for backend in self.table.all():
                nursery.start_soon(ask, backend)
        return found

    # -- metadata -------------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        if path == "/":
            return self._directory("")
        backend = self._backend(path)
        if path == backend.prefix:
            return self._directory(backend.spec.name)
        return await self._on(backend, backend.client.stat(backend.remote(path)))

    async def list(self, path: str) -> builtins.list[FileInfo]:
        if path == "/":
            return [self._directory(backend.spec.name) for backend in self.table.all()]
        backend = self._backend(path)
        return await self._on(backend, backend.client.list(backend.remote(path)))

    # -- data -----------------------------------------------------------------------

    async def read(
        self, path: str, offset: int = 0, size: int = -1, *, idempotent: bool = True
    ) -> bytes:
        backend, client, remote = self._client_for(path)
        return await self._on(backend, client.read(remote, offset, size, idempotent=idempotent))

    async def read_into(self, path: str, sink: Callable[[bytes], object]) -> int:
        backend, client, remote = self._client_for(path)
        return await self._on(backend, client.read_into(remote, sink))

    async def follow(self, path: str, sink: Callable[[bytes], object]) -> None:
        backend, client, remote = self._client_for(path)
        await self._on(backend, client.follow(remote, sink))

    async def write(self, path: str, data: bytes, *, idempotent: bool = False) -> None:
        backend, client, remote = self._client_for(path)
        with backend.uploading():
            await self._on(backend, client.write(remote, data, idempotent=idempotent))

    async def write_from(self, path: str, source: HasFileno, size: int) -> None:
        backend, client, remote = self._client_for(path)
        with backend.uploading():
            await self._on(backend, client.write_from(remote, source, size))

    # -- namespace ------------------------------------------------------------------

    async def create(self, path: str) -> None:
        backend, client, remote = self._client_for(path)
        await self._on(backend, client.create(remote))

    async def mkdir(self, path: str, mode: int = 0o755) -> None:
        backend, client, remote = self._client_for(path)
        await self._on(backend, client.mkdir(remote, mode))

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        backend, remote = self._inside(path)
        await self._on(backend, backend.client.delete(remote, recursive=recursive))

    async def rmdir(self, path: str, *, recursive: bool = False) -> None:
        backend, remote = self._inside(path)
        await self._on(backend, backend.client.rmdir(remote, recursive=recursive))

    async def rename(self, old: str, new: str) -> None:
        source, old_remote = self._inside(old)
        target = self._backend(new)
        if target is not source:
            raise CrossDevice(f"{old} and {new} are on different backends", path=new)
        _, new_remote = self._inside(new)
        await self._on(source, source.client.rename(old_remote, new_remote))

    async def chmod(self, path: str, mode: int) -> None:
        backend, remote = self._inside(path)
        await self._on(backend, backend.client.chmod(remote, mode))

    async def truncate(self, path: str, size: int) -> None:
        if path in self.table:
            raise IsADirectory("is a directory", path=path)
        backend, remote = self._inside(path)
        await self._on(backend, backend.client.truncate(remote, size))

    async def touch(self, path: str) -> None:
        backend, remote = self._inside(path)
        await self._on(backend, backend.client.touch(remote))

    async def symlink(self, target: str, link: str) -> None:
        backend, client, remote = self._client_for(link)
        await self._on(backend, client.symlink(target, remote))

    async def readlink(self, path: str) -> str:
        backend, remote = self._inside(path)
        return await self._on(backend, backend.client.readlink(remote))

    # -- handles (each answered by the client that opened it) --------------------------

    async def open_handle(self, path: str, os_flags: int, mode: int = 0o644) -> int:
        backend, client, remote = self._client_for(path)
        real = await self._on(backend, client.open_handle(remote, os_flags, mode))
        handle = next(self._handle_ids)
        self._handles[handle] = (backend, client, real)
        return handle

    def _handle(self, handle: int) -> tuple[Backend, AgfsClient, int]:
        try:
            return self._handles[handle]
        except KeyError:
            raise NotFound(f"handle {handle} is not open on this mount") from None

    async def handle_read(self, handle: int, offset: int, size: int) -> bytes:
        backend, client, real = self._handle(handle)
        return await self._on(backend, client.handle_read(real, offset, size))

    async def handle_write(self, handle: int, offset: int, data: bytes) -> int:
        backend, client, real = self._handle(handle)
        with backend.uploading():
            return await self._on(backend, client.handle_write(real, offset, data))

    async def close_handle(self, handle: int) -> None:
        backend, client, real = self._handle(handle)
        del self._handles[handle]
        await self._on(backend, client.close_handle(real))

    # -- lifecycle ------------------------------------------------------------------

    async def aclose(self) -> None:
        for backend in [*self.table.all(), *self.table.removed]:
            await backend.aclose()
