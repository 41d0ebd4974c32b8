"""Fixtures for the integration tests: ``agfs_fuse``'s client and filesystem core against
the reference AGFS server running as a real subprocess (no kernel, no FUSE).

- ``server``: one reference server per module, memfs at /memfs, queuefs at /queuefs and
  localfs at /local over a temporary directory (``server.local_dir``).
- ``small_server``: one per module with a 1 KiB request body limit (EFBIG paths).
- ``make_server``: extra servers for a single test, stopped at teardown.
- ``raw``: a plain synchronous httpx client to check the server's state without ``agfs_fuse``.
- ``ws``: a fresh working directory for one test on memfs (``ws.mem``) and localfs
  (``ws.local``, with its on-disk twin ``ws.disk``).
- ``make_client``: ``make_client(url=None, **kw)`` builds an ``AgfsClient`` (default URL:
  ``server``) that is always closed; ``make_fs`` likewise builds an ``AgfsFilesystem``.
- ``arun(coro_fn, *args)``: runs ``coro_fn(*args)`` with ``trio.run`` and closes every
  client and filesystem made during the run, inside the same run.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import trio

from agfs_fuse.client import AgfsClient
from agfs_fuse.filesystem import AgfsFilesystem
from agfs_fuse.spool import SpoolDir
from tests.support.server import ServerProcess, free_port, plugins_config, start_server

T = TypeVar("T")

SMALL_BODY = 1024

_ids = itertools.count()


@dataclass
class LiveServer:
    """A running reference server: base URL (``.../api/v1``), localfs directory, process."""

    url: str
    local_dir: Path
    process: ServerProcess

    def stop(self) -> None:
        self.process.stop()


def launch(workdir: Path, *, max_body: int | None = None) -> LiveServer:
    """Start a reference server with the full config in ``workdir`` (waits for /ready)."""
    workdir.mkdir(parents=True, exist_ok=True)
    local_dir = workdir / "local-data"
    local_dir.mkdir(exist_ok=True)
    process = start_server(workdir, config=plugins_config(local_dir), max_body=max_body)
    return LiveServer(url=process.url, local_dir=local_dir, process=process)


def dead_url() -> str:
    """An http URL on a loopback port nobody listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/api/v1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = launch(tmp_path_factory.mktemp("agfs-int"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = launch(tmp_path_factory.mktemp("agfs-int-small"), max_body=SMALL_BODY)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(*, max_body: int | None = None) -> LiveServer:
        srv = launch(tmp_path / f"server{len(started)}", max_body=max_body)
        started.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in started:
            srv.stop()


class RawHttp:
    """Direct HTTP checks of the server state, independent of ``agfs_fuse.client``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, route: str, path: str, **kw: Any) -> httpx.Response:
        params = {"path": path, **kw.pop("params", {})}
        return self.http.request(method, self.url + route, params=params, **kw)

    def read(self, path: str) -> bytes:
        response = self.request("GET", "/files", path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.content

    def write(self, path: str, data: bytes) -> None:
        response = self.request("PUT", "/files", path, content=data)
        assert response.status_code == 200, (path, response.status_code, response.text)

    def mkdir(self, path: str, mode: str = "755") -> None:
        response = self.request("POST", "/directories", path, params={"mode": mode})
        assert response.status_code == 201, (path, response.status_code, response.text)

    def stat(self, path: str) -> dict[str, Any] | None:
        """The FileInfo JSON, or None when the server says it does not exist."""
        response = self.request("GET", "/stat", path)
        if response.status_code != 200:
            assert "no such" in response.text or "not found" in response.text, response.text
            return None
        return response.json()

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def listing(self, path: str) -> dict[str, Any]:
        response = self.request("GET", "/directories", path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def names(self, path: str) -> set[str]:
        return {item["name"] for item in self.listing(path)["files"] or []}

    def symlink(self, target: str, link: str) -> None:
        response = self.request("POST", "/symlink", link, content=json.dumps({"target": target}))
        assert response.status_code == 201, (link, response.status_code, response.text)

    def rename(self, old: str, new: str) -> None:
        response = self.request("POST", "/rename", old, content=json.dumps({"newPath": new}))
        assert response.status_code == 200, (old, response.status_code, response.text)

    def readlink(self, path: str) -> str:
        response = self.request("GET", "/readlink", path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()["target"]


@pytest.fixture(scope="module")
def raw(server: LiveServer) -> Iterator[RawHttp]:
    checker = RawHttp(server.url)
    try:
        yield checker
    finally:
        checker.close()


@dataclass
class Workspace:
    mem: str
    local: str
    disk: Path


@pytest.fixture
def ws(server: LiveServer, raw: RawHttp) -> Workspace:
    """Fresh, empty directories for one test on memfs and on localfs."""
    name = f"w{next(_ids)}"
    raw.mkdir(f"/memfs/{name}")
    raw.mkdir(f"/local/{name}")
    return Workspace(mem=f"/memfs/{name}", local=f"/local/{name}", disk=server.local_dir / name)


class Closer:
    """Builds clients and filesystems and closes them all, always."""

    def __init__(self, default_url: str, spool_root: Path) -> None:
        self.default_url = default_url
        self.spool_root = spool_root
        self.clients: list[AgfsClient] = []
        self.filesystems: list[AgfsFilesystem] = []

    def client(self, url: str | None = None, **kw: Any) -> AgfsClient:
        client = AgfsClient(url or self.default_url, **kw)
        self.clients.append(client)
        return client

    def fs(
        self, url: str | None = None, *, spool: SpoolDir | None = None, **kw: Any
    ) -> AgfsFilesystem:
        fs = AgfsFilesystem(
            self.client(url, **kw),
            spool or SpoolDir(self.spool_root),
            client_factory=lambda u: AgfsClient(u),
        )
        self.filesystems.append(fs)
        return fs

    async def aclose_all(self) -> None:
        while self.filesystems:
            await self.filesystems.pop().aclose()
        while self.clients:
            await self.clients.pop().aclose()


@pytest.fixture
def closer(server: LiveServer, tmp_path: Path) -> Iterator[Closer]:
    c = Closer(server.url, tmp_path / "spool")
    try:
        yield c
    finally:
        if c.clients or c.filesystems:
            trio.run(c.aclose_all)


@pytest.fixture
def make_client(closer: Closer) -> Callable[..., AgfsClient]:
    """``make_client(url=None, **kw)``: an ``AgfsClient`` that is closed after the run."""
    return closer.client


@pytest.fixture
def make_fs(closer: Closer) -> Callable[..., AgfsFilesystem]:
    """``make_fs(url=None, spool=None, **client_kw)``: an ``AgfsFilesystem`` (real client,
    ``SpoolDir`` under tmp_path, ``client_factory=lambda url: AgfsClient(url)``)."""
    return closer.fs


@pytest.fixture
def arun(closer: Closer) -> Callable[..., Any]:
    """``arun(coro_fn, *args)``: ``trio.run`` it, then close what it opened (same run)."""

    def run(coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        async def main() -> T:
            try:
                return await coro_fn(*args)
            finally:
                await closer.aclose_all()

        return trio.run(main)

    return run
