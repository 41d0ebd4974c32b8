"""The backends of a federated mount at run time: which server serves which prefix.

One ``Backend`` per top-level directory, each with its own ``AgfsClient`` (its URL, TLS,
token, headers and timeout), its own request counters and its last known health. The
table changes while the mount runs (``.mounts``, ``/dc1/reload``); a path is routed by
its first component, so routing is a dictionary lookup, never a scan. The table is also
the federated mount's ``PathSettings``: the caches ask it for the timeouts under a path,
the registry of pending writes whether a closed file's upload goes to the background.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import paths
from .client import AgfsClient
from .connect import client_factory
from .errors import AgfsError, NotFound, RequestTimeout, ServerUnreachable
from .federation_config import BackendSpec
from .path_settings import DEFAULT_TIMEOUTS, CacheTimeouts
from .stats import RequestStats

log = logging.getLogger(__name__)

ClientMaker = Callable[[BackendSpec, RequestStats], Callable[[str], AgfsClient]]


class BackendStats(RequestStats):
    """A backend's own counters, each request also counted in the mount's totals."""

    def __init__(self, mount_wide: RequestStats, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self._mount_wide = mount_wide

    def record(
        self, kind: str, seconds: float, *, sent: int = 0, received: int = 0, error: str = ""
    ) -> None:
        super().record(kind, seconds, sent=sent, received=received, error=error)
        self._mount_wide.record(kind, seconds, sent=sent, received=received, error=error)

    def add_received(self, count: int) -> None:
        super().add_received(count)
        self._mount_wide.add_received(count)


@dataclass
class Backend:
    """One server of the federation, shown as the directory ``spec.prefix``."""

    spec: BackendSpec
    client: AgfsClient
    stats: BackendStats
    make_client: Callable[[str], AgfsClient]
    """A client for a URL with this backend's TLS, token, headers and timeout."""
    up: bool = True
    """Whether its last request reached the server (for ``.mounts``)."""
    uploads: int = 0
    """Uploads in flight right now."""
    retired: list[AgfsClient] = field(default_factory=list)
    """Clients replaced by a reload; closed with the mount (a request may still use one)."""

    @property
    def prefix(self) -> str:
        return self.spec.prefix

    @property
    def url(self) -> str:
        return self.client.base_url

    def remote(self, path: str) -> str:
        """The server path of the mount path ``path`` (which is under ``prefix``)."""
        return paths.rebase(path, self.prefix, self.spec.root)

    def mount_path(self, remote: str) -> str | None:
        """The mount path of the server path ``remote`` (None: outside the backend's root)."""
        if not paths.is_within(remote, self.spec.root):
            return None
        return paths.rebase(remote, self.spec.root, self.prefix)

    @contextmanager
    def uploading(self) -> Iterator[None]:
        """An upload to this backend is under way (an unmount waits for it)."""
        self.uploads += 1
        try:
            yield
        finally:
            self.uploads -= 1

    def swap(self, fresh: AgfsClient) -> None:
        """A reload: ``fresh`` serves from now on, the old client is retired."""
        self.retired.append(self.client)
        self.client = fresh
        self.up = True

    def noted(self, exc: BaseException | None) -> None:
        """Remember whether the server answered: any answer, even an error, means up."""
        if exc is None or not isinstance(exc, AgfsError):
            self.up = True
        else:
            self.up = not isinstance(exc, ServerUnreachable | RequestTimeout)

    async def aclose(self) -> None:
        for client in [*self.retired, self.client]:
            await client.aclose()


def default_client_maker(spec: BackendSpec, stats: RequestStats) -> Callable[[str], AgfsClient]:
    return client_factory(spec.options, stats)


class BackendTable:
    """The prefixes of the mount and the backend serving each."""

    def __init__(
        self,
        mount_stats: RequestStats,
        make_clients: ClientMaker = default_client_maker,
        *,
        defaults: CacheTimeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        """``defaults``: the mount-wide timeouts, for the paths no backend serves (the
        root, its control files)."""
        self.stats = mount_stats
        self._make_clients = make_clients
        self._defaults = defaults
        self._backends: dict[str, Backend] = {}
        self.removed: list[Backend] = []
        """Unmounted backends, closed with the mount (a request may still be using one)."""

    def build(self, spec: BackendSpec) -> Backend:
        """A backend for ``spec`` (not in the table yet: ``add`` it once it is checked).
        Raises ``connect.ConnectError`` for TLS or token settings that cannot be used."""
        stats = BackendStats(self.stats)
        make = self._make_clients(spec, stats)
        return Backend(spec, make(spec.url), stats, make)

    def add(self, backend: Backend) -> None:
        self._backends[backend.prefix] = backend

    def remove(self, prefix: str) -> Backend:
        backend = self._backends.pop(prefix, None)
        if backend is None:
            raise NotFound(f"no backend {prefix} in this mount")
        self.removed.append(backend)
        return backend

    def get(self, prefix: str) -> Backend:
        backend = self._backends.get(prefix)
        if backend is None:
            raise NotFound(f"no backend {prefix} in this mount", path=prefix)
        return backend

    def __contains__(self, prefix: object) -> bool:
        return prefix in self._backends

    def all(self) -> list[Backend]:
        return sorted(self._backends.values(), key=lambda b: b.prefix)

    def prefixes(self) -> list[str]:
        return sorted(self._backends)

    def find(self, path: str) -> Backend | None:
        """The backend serving ``path`` (None for the root, or a name that is none)."""
        first = path.strip("/").split("/", 1)[0]
        return self._backends.get("/" + first) if first else None

    def timeouts(self, path: str) -> CacheTimeouts:
        """``PathSettings``: the cache timeouts of the backend serving ``path`` (a
        backend's own directory included), else the mount-wide ones."""
        backend = self.find(path)
        return self._defaults if backend is None else backend.spec.timeouts

    def async_upload(self, path: str) -> bool:
        """``PathSettings``: whether the backend serving ``path`` leaves uploads to the
        background; never for what no backend serves (the root, its control files)."""
        backend = self.find(path)
        return backend is not None and backend.spec.options.async_upload

    def any_async_upload(self) -> bool:
        """``PathSettings``: whether some backend leaves uploads to the background (one
        mounted later through ``.mounts`` starts the uploader itself)."""
        return any(backend.spec.options.async_upload for backend in self._backends.values())
