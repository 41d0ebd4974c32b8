"""A federated mount's backends changed while it runs: reloads, ``.mounts`` lines.

- ``/dc1/reload``: empty reconnects that backend, a URL switches it; the new server's
  health is checked first, and before a switch the pending writes are uploaded (the
  ones under ``/dc1`` must all make it), as the root ``reload`` of a one-server mount.
- the root ``reload`` (and SIGHUP) reconnects every backend; a URL is refused (EINVAL):
  which backend should it switch?
- ``/.mounts``: ``mount /dc3 URL [key=value ...]`` adds a backend once its server
  answers; ``unmount /dc3`` removes one once its uploads are done, waiting up to
  ``unmount_wait`` seconds, else EBUSY and the backend stays. Reading it lists the
  backends.

Each change ends with ``server_changed``: what the core cached may be another server's.
What the kernel cached is the FUSE layer's to drop (``operations``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from . import control_files, paths
from .backends import Backend
from .client import AgfsClient
from .connect import ConnectError
from .errors import AgfsError, AlreadyExists, InvalidArgument, NotFound
from .federated_client import BackendBusy, FederatedClient
from .federation_config import FederationError, check_prefix, parse_mount_line
from .filesystem import ReloadFailed
from .options import MountOptions
from .wire import shown_url

if TYPE_CHECKING:
    from .filesystem import AgfsFilesystem

log = logging.getLogger(__name__)

UNMOUNT_WAIT = 60.0
"""Seconds an unmount of a backend waits for its pending uploads before EBUSY."""
UNMOUNT_POLL = 0.1
HEALTHY = ("healthy", "degraded", "starting")


async def check_health(client: AgfsClient) -> None:
    """``ReloadFailed`` unless ``client``'s server says it is well."""
    try:
        health = await client.health()
    except AgfsError as exc:
        raise ReloadFailed(f"{client.base_url}: {exc.message}") from exc
    if health.status not in HEALTHY:
        raise ReloadFailed(f"{client.base_url}: server says {health.status!r}")


async def checked_client(make: Callable[[str], AgfsClient], url: str) -> AgfsClient:
    """A client for ``url`` whose server answered its health check (else ``ReloadFailed``,
    with nothing left open)."""
    fresh = make(url)
    try:
        await check_health(fresh)
    except ReloadFailed:
        await fresh.aclose()
        raise
    return fresh


def _wait_word(words: list[str]) -> list[float]:
    """``unmount``'s optional ``wait=SECONDS`` (0 to ``UNMOUNT_WAIT``)."""
    if not words:
        return []
    key, _, value = words[0].partition("=")
    try:
        seconds = float(value) if key == "wait" else -1.0
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= UNMOUNT_WAIT:
        raise FederationError(f"expected wait=SECONDS (0 to {UNMOUNT_WAIT:g}), got {words[0]!r}")
    return [seconds]


def _logged(exc: AgfsError) -> AgfsError:
    """A refused ``.mounts`` line: its reason goes to the log here, once (also for the
    errnos the FUSE boundary logs quietly, such as EEXIST)."""
    log.warning(".mounts: %s", exc)
    exc.quiet = True
    return exc


async def check_root(backend: Backend) -> None:
    """``InvalidArgument`` unless the backend's ``root`` is a directory on its server."""
    root = backend.spec.root
    try:
        info = await backend.client.stat(root)
    except AgfsError as exc:
        raise InvalidArgument(f"backend {backend.prefix}: root {root}: {exc.message}") from None
    if not info.is_dir:
        raise InvalidArgument(f"backend {backend.prefix}: root {root} is not a directory")


def _uploads(backend: Backend) -> str:
    """How ``.mounts`` shows when a backend's closed files are uploaded."""
    return "async" if backend.spec.options.async_upload else "at-close"


class FederationControl:
    """The run-time side of a federated mount; the core calls it for every change."""

    def __init__(
        self,
        fs: AgfsFilesystem,
        client: FederatedClient,
        defaults: MountOptions,
        *,
        unmount_wait: float = UNMOUNT_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``defaults``: the mount-wide options a backend mounted at run time starts from."""
        self.fs = fs
        self.client = client
        self.table = client.table
        self.defaults = defaults
        self.unmount_wait = unmount_wait
        self._clock = clock
        self._lock = trio.Lock()
        control_files.enable_federation()
        for backend in self.table.all():
            control_files.add_backend_reload(backend.prefix)

    async def check_all(self) -> list[str]:
        """At mount time: ask every backend's server for its health. Returns the ones
        that did not answer (they are mounted anyway, and show EIO until they answer);
        raises ``InvalidArgument`` for a ``root`` that is not a directory there."""
        down: list[str] = []
        wrong: list[InvalidArgument] = []

        async def check(backend: Backend) -> None:
            try:
                await backend.client.health()
                backend.up = True
            except AgfsError as exc:
                backend.up = False
                down.append(backend.prefix)
                log.warning("backend %s (%s) does not answer: %s", backend.prefix, backend.url, exc)
                return
            try:
                await check_root(backend)  # a typo in root= is an error, not a down server
            except InvalidArgument as exc:
                wrong.append(exc)

        async with trio.open_nursery() as nursery:
            for backend in self.table.all():
                nursery.start_soon(check, backend)
        if wrong:
            raise wrong[0]
        return sorted(down)

    # -- reload ---------------------------------------------------------------------

    async def reconnect_all(self, text: str) -> None:
        """The root ``reload``: every backend gets a fresh connection to its URL. A backend
        that does not answer keeps its old client; the error names it."""
        if text.strip():
            raise InvalidArgument(
                "the root reload of a federated mount only reconnects every backend; "
                "switch one with its own reload (echo URL > /mnt/dc1/reload)"
            )
        async with self._lock:
            failed = []
            for backend in self.table.all():
                try:
                    backend.swap(await checked_client(backend.make_client, backend.url))
                except ReloadFailed as exc:
                    backend.up = False
                    failed.append(f"{backend.prefix}: {exc.message}")
            await self.fs.server_changed()
        if failed:
            raise ReloadFailed("reload failed for " + "; ".join(failed))
        log.info("reloaded every backend")

    async def reload_backend(self, prefix: str, text: str) -> str:
        """``/dc1/reload``: a fresh client for the backend's URL, or a switch to a new one."""
        request = text.strip()
        if request and not request.startswith(("http://", "https://")):
            raise InvalidArgument(
                f"reload expects nothing or an http(s) URL, got {shown_url(request)}"
            )
        async with self._lock:
            backend = self.table.get(prefix)
            try:
                fresh = await checked_client(backend.make_client, request or backend.url)
            except (AgfsError, ValueError) as exc:
                raise ReloadFailed(f"reload of {prefix} failed: {exc}") from exc
            if fresh.base_url != backend.url and self._not_uploaded(
                prefix, await self.fs.flush_all()
            ):
                await fresh.aclose()
                raise ReloadFailed(
                    f"reload of {prefix} failed: pending writes could not be uploaded"
                )
            backend.swap(fresh)
            await self.fs.server_changed()
            log.info("reloaded %s: now serving %s", prefix, backend.url)
            return backend.url

    @staticmethod
    def _not_uploaded(prefix: str, failed: list[str]) -> list[str]:
        return [path for path in failed if paths.is_within(path, prefix)]

    # -- .mounts ----------------------------------------------------------------------

    async def command(self, text: str) -> str:
        """One ``.mounts`` line; returns the prefix it mounted or unmounted."""
        words = text.split()
        verb = words[0] if words else ""
        try:
            if verb == "mount":
                return await self.mount(words[1:])
            if verb == "unmount" and len(words) in (2, 3):
                return await self.unmount(words[1], *_wait_word(words[2:]))
        except FederationError as exc:
            raise _logged(InvalidArgument(str(exc))) from None
        except AgfsError as exc:
            raise _logged(exc) from None
        message = "expected 'mount /PREFIX URL [key=value ...]' or 'unmount /PREFIX [wait=S]'"
        raise _logged(InvalidArgument(f"{message}, got {text.strip()[:80]!r}"))

    async def mount(self, words: list[str]) -> str:
        """``mount /dc3 URL [key=value ...]``: a new backend, once its server answers."""
        if words and words[0].rstrip("/") in self.table:
            raise AlreadyExists(f"{words[0].rstrip('/')} is already mounted")
        spec = parse_mount_line(words, self.defaults, self.table.prefixes())
        async with self._lock:
            if spec.prefix in self.table:
                raise AlreadyExists(f"{spec.prefix} is already mounted")
            try:
                backend = self.table.build(spec)
            except ConnectError as exc:
                raise InvalidArgument(f"{spec.prefix}: {exc}") from None
            try:
                await check_health(backend.client)
                await check_root(backend)
            except ReloadFailed as exc:
                await backend.aclose()
                raise ReloadFailed(f"mount of {spec.prefix} failed: {exc.message}") from None
            except AgfsError:
                await backend.aclose()
                raise
            self.table.add(backend)
            if spec.options.async_upload:
                self.fs.pending.enable_async_uploads()  # if no backend needed it so far
            control_files.add_backend_reload(spec.prefix)
            await self.fs.server_changed()
        log.info("mounted backend %s: %s", spec.prefix, spec.url)
        return spec.prefix

    async def unmount(self, given: str, wait: float | None = None) -> str:
        """``unmount /dc3 [wait=SECONDS]``: once no upload to it is pending, waiting for
        them up to ``wait`` (default ``unmount_wait``) seconds, else EBUSY."""
        try:
            prefix = check_prefix(given)
        except FederationError as exc:
            raise InvalidArgument(str(exc)) from None
        self.table.get(prefix)  # NotFound first, not after a wait
        wait = self.unmount_wait if wait is None else wait
        deadline = self._clock() + wait
        while (pending := self.pending(prefix)) and self._clock() < deadline:
            await trio.sleep(UNMOUNT_POLL)
        if pending:
            raise BackendBusy(
                f"{prefix} still has {pending} upload(s) pending after {wait:g} s; it stays mounted"
            )
        async with self._lock:
            backend = self.table.remove(prefix)
            control_files.remove_backend_reload(prefix)
            await self.fs.server_changed()
        log.info("unmounted backend %s (%s)", prefix, backend.url)
        return prefix

    def pending(self, prefix: str) -> int:
        """Uploads of files under ``prefix`` not done yet: pending spools, and requests
        in flight."""
        try:
            backend = self.table.get(prefix)
        except NotFound:
            return 0

        def under(found: list[str]) -> int:
            return sum(1 for path in found if paths.is_within(path, prefix))

        background = self.fs.pending.background
        # A background upload in flight is a pending spool and a request: count it once.
        twice = under(background.uploading_paths()) if background is not None else 0
        return under(self.fs.pending.pending_paths()) + max(0, backend.uploads - twice)

    # -- what it shows ----------------------------------------------------------------

    def listing(self) -> bytes:
        """``cat /.mounts``: one line per backend (path, URL, state, pending uploads)."""
        lines = ["# path\turl\tstate\tpending_uploads\tuploads"]
        for backend in self.table.all():
            state = "up" if backend.up else "down"
            lines.append(
                f"{backend.prefix}\t{backend.url}\t{state}\t{self.pending(backend.prefix)}"
                f"\t{_uploads(backend)}"
            )
        return ("\n".join(lines) + "\n").encode()

    def snapshot(self) -> dict[str, object]:
        """``.agfs-stats``'s section per backend."""
        return {
            backend.prefix: {
                "url": backend.url,
                "root": backend.spec.root,
                "state": "up" if backend.up else "down",
                "pending_uploads": self.pending(backend.prefix),
                "cache_timeouts": dataclasses.asdict(backend.spec.timeouts),
                "async_upload": backend.spec.options.async_upload,
                **backend.stats.snapshot(),
            }
            for backend in self.table.all()
        }
