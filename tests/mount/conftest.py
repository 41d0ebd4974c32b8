"""Fixtures for the kernel mount tests: reference servers, mounts, and direct HTTP checks.

- ``agfs_server``: one reference server for the session, with memfs at /memfs, localfs at
  /local (over a temporary directory) and queuefs at /queuefs.
- ``mounted``: that server mounted once for the session; each test that uses it gets a live
  mount (a dead one is reported and replaced).
- ``ws``: a fresh, empty working directory for one test, on memfs and on localfs
  (parametrised), seen both through the mount (``ws.local``) and on the server (``ws.remote``).
- ``http``: a small client that checks the server's state over HTTP, without ``agfs_fuse``.
- ``make_server`` / ``make_mount``: extra servers and mounts for tests that need their own
  (body limits, /reload, mount options, mount-time errors); all are stopped at teardown.
  ``make_server(counted=True)`` puts a relay in front that counts the requests (works in
  front of the real server too: ``tests/support/counting.py``).

A test that cannot mount fails; nothing here skips.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.support.counting import CountingRelay
from tests.support.mount import Mount, scratch_dir, wait_until
from tests.support.server import ServerProcess, plugins_config, start_server

_counter = itertools.count()


# -- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    """A running server: the base URL (``.../api/v1``) to mount and a direct HTTP checker.

    With a ``relay`` (``counted=True``), ``url`` is the relay's: the mount's requests are
    counted there, while ``http`` talks to the server directly and is never counted.
    """

    url: str
    http: AgfsHttp
    handle: ServerProcess
    local_dir: Path | None
    relay: CountingRelay | None = None

    def request_counts(self) -> dict[str, int]:
        """Requests the mount sent so far, by ``"METHOD /route"`` (counted servers only)."""
        assert self.relay is not None, "make_server(counted=True) counts requests"
        return self.relay.counts()

    def stop(self) -> None:
        """Stop the relay and the server process (idempotent)."""
        if self.relay is not None:
            self.relay.close()
        self.http.close()
        self.handle.stop()


@pytest.fixture(scope="session")
def session_tmp() -> Iterator[Path]:
    """A short temporary directory for the session (mountpoints, logs, localfs data)."""
    with scratch_dir("agfs-mt-") as path:
        yield path


def _new_server(
    base: Path, *, localfs: bool = True, max_body: int | None = None, counted: bool = False
) -> Server:
    n = next(_counter)
    workdir = base / f"server{n}"
    workdir.mkdir(parents=True)
    local_dir = None
    config = None
    if localfs:
        local_dir = workdir / "local-data"
        local_dir.mkdir()
        config = plugins_config(local_dir)
    handle = start_server(workdir, config=config, max_body=max_body)
    relay = CountingRelay(handle.url) if counted else None
    return Server(
        url=relay.url if relay else handle.url,
        http=AgfsHttp(handle.url),
        handle=handle,
        local_dir=local_dir,
        relay=relay,
    )


@pytest.fixture(scope="session")
def agfs_server(session_tmp: Path) -> Iterator[Server]:
    """The session's reference server: memfs, localfs (tmp dir) and queuefs."""
    server = _new_server(session_tmp)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory for extra servers: ``make_server(localfs=True, max_body=None,
    counted=False)``; all stopped at teardown."""
    servers: list[Server] = []

    def make(
        *, localfs: bool = True, max_body: int | None = None, counted: bool = False
    ) -> Server:
        server = _new_server(tmp_path, localfs=localfs, max_body=max_body, counted=counted)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


# -- mounts -----------------------------------------------------------------------------


class _SessionMount:
    """Holds the session mount and replaces it when a test killed it."""

    def __init__(self, server: Server, base: Path) -> None:
        self.server = server
        self.base = base
        self.mount: Mount | None = None
        self.generation = 0

    def get(self) -> Mount:
        if self.mount is None or not self.mount.alive():
            if self.mount is not None:
                self.mount.unmount()
            self.generation += 1
            work = self.base / f"session-mount{self.generation}"
            self.mount = Mount(
                self.server.url,
                work / "mnt",
                workdir=work,
                options=[f"cache_dir={work / 'cache'}"],
            )
            self.mount.start()
        return self.mount

    def close(self) -> None:
        if self.mount is not None:
            self.mount.unmount()


@pytest.fixture(scope="session")
def _session_mount(agfs_server: Server, session_tmp: Path) -> Iterator[_SessionMount]:
    holder = _SessionMount(agfs_server, session_tmp)
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture
def mounted(_session_mount: _SessionMount) -> Iterator[Mount]:
    """The session's server, mounted (a live mount; restarted if an earlier test killed it).

    After the test, the mount must still be alive: a mount process that died during the test
    fails it with the process's log.
    """
    mount = _session_mount.get()
    yield mount
    if not mount.alive():
        pytest.fail("the mount died during this test\n" + mount.describe(), pytrace=False)


@pytest.fixture
def make_mount(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """Factory for extra mounts: ``make_mount(url, options=[...], start=True)``; every one is
    unmounted (lazily if needed) and its process stopped at teardown."""
    mounts: list[Mount] = []

    def make(
        url: str,
        *,
        options: list[str] | tuple[str, ...] = (),
        start: bool = True,
        mountpoint: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Mount:
        n = len(mounts)
        work = tmp_path / f"mount{n}"
        work.mkdir(parents=True, exist_ok=True)
        opts = list(options)
        if not any(o.startswith("cache_dir=") for o in opts):
            opts.append(f"cache_dir={work / 'cache'}")
        mount = Mount(
            url, mountpoint or work / "mnt", workdir=work, options=opts, env=env, name=f"mount{n}"
        )
        mounts.append(mount)
        if start:
            mount.start()
        return mount

    try:
        yield make
    finally:
        for mount in reversed(mounts):
            mount.unmount()


# -- per-test workspaces --------------------------------------------------------------------


PLUGIN_ROOTS = {"memfs": "/memfs", "localfs": "/local"}


@dataclass
class Workspace:
    """An empty directory for one test, on one plugin.

    ``local`` is its path through the mount, ``remote`` its path on the server, ``http`` the
    direct HTTP checker, ``mount`` the mount it lives in.
    """

    plugin: str
    local: Path
    remote: str
    http: AgfsHttp
    mount: Mount

    def r(self, *parts: str) -> str:
        """Server path of ``parts`` under this workspace."""
        return "/".join([self.remote, *parts])

    def p(self, *parts: str) -> Path:
        """Mount path of ``parts`` under this workspace."""
        return self.local.joinpath(*parts)


WORKSPACES_PER_BATCH = 32
# server -> plugin -> workspaces made and not handed out yet (gone with the server)
_spare_workspaces: weakref.WeakKeyDictionary[AgfsHttp, dict[str, list[str]]] = (
    weakref.WeakKeyDictionary()
)


def _workspace(plugin: str, mount: Mount, http: AgfsHttp, request: pytest.FixtureRequest):
    """Made on the server, as another client would. The mount sees a name another client
    made once a listing of the parent it may hold is older than ``attr_timeout``, so
    workspaces are made in batches: the first of a batch may wait that long for the mount
    to show it, the rest are in the listing that showed it."""
    spare = _spare_workspaces.setdefault(http, {}).setdefault(plugin, [])
    if not spare:
        batch = next(_counter)
        spare.extend(f"{PLUGIN_ROOTS[plugin]}/ws{batch}-{i}" for i in range(WORKSPACES_PER_BATCH))
        for remote in spare:
            http.mkdir(remote)
    remote = spare.pop(0)
    print(f"workspace of {request.node.nodeid}: {remote}")  # shown when the test fails
    return Workspace(plugin, seen(mount.path / remote.lstrip("/")), remote, http, mount)


@pytest.fixture(params=["memfs", "localfs"])
def ws(request: pytest.FixtureRequest, mounted: Mount, agfs_server: Server) -> Workspace:
    """A fresh working directory, once on memfs and once on localfs."""
    return _workspace(request.param, mounted, agfs_server.http, request)


@pytest.fixture
def http(agfs_server: Server) -> AgfsHttp:
    """Direct HTTP access to the session's server."""
    return agfs_server.http


def seen(path: Path) -> Path:
    """``path`` once the mount shows it: a name another client made (over HTTP) shows
    within ``attr_timeout``, since a listing younger than that answers for missing names."""
    wait_until(lambda: os.path.lexists(path), message=f"the mount never showed {path}")
    return path


# -- running programs -----------------------------------------------------------------------


def run(
    args: list[str] | str,
    *,
    cwd: Path | str | None = None,
    check: bool = True,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program (a list, or a string for ``sh -c``); with ``check`` fail the test with
    its output when it exits non-zero."""
    cmd = ["sh", "-c", args] if isinstance(args, str) else args
    run_env = dict(os.environ if env is None else env)
    run_env["LC_ALL"] = "C.UTF-8"  # English error messages ("File too large")
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        env=run_env,
        input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{cmd!r} exited {proc.returncode}\nstdout: {proc.stdout.decode(errors='replace')}\n"
            f"stderr: {proc.stderr.decode(errors='replace')}",
            pytrace=False,
        )
    return proc
