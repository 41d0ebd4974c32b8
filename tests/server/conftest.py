"""Fixtures for the reference server's contract tests: real processes, real HTTP.

Servers are shared per session (starting one costs ~0.2 s); every test works under its
own fresh directory (``ws``), so tests never see each other's files.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, start_server

_ids = itertools.count()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Default mounts (memfs, queuefs, devfs) with test hooks on."""
    srv = start_server(tmp_path_factory.mktemp("srv-default"), test_hooks=True)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory behind the ``local_server``'s ``/local`` mount."""
    return tmp_path_factory.mktemp("local-data")


@pytest.fixture(scope="session")
def local_server(
    tmp_path_factory: pytest.TempPathFactory, local_dir: Path
) -> Iterator[ServerProcess]:
    """memfs at /memfs, localfs at /local over ``local_dir``, queuefs at /queuefs."""
    config = {
        "server": {"log_level": "info"},
        "plugins": {
            "memfs": {"enabled": True, "path": "/memfs"},
            "localfs": {"enabled": True, "path": "/local", "config": {"local_dir": str(local_dir)}},
            "queuefs": {"enabled": True, "path": "/queuefs", "config": {}},
        },
    }
    srv = start_server(tmp_path_factory.mktemp("srv-local"), config=config)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Default mounts with a 1 KiB request body limit."""
    srv = start_server(tmp_path_factory.mktemp("srv-small"), max_body=1024)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the default server (base URL ends in /api/v1)."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture
def lclient(local_server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the localfs server."""
    with httpx.Client(base_url=local_server.url, timeout=10) as c:
        yield c


@pytest.fixture
def ws(client: httpx.Client) -> str:
    """A fresh empty memfs directory for this test on the default server."""
    path = f"/memfs/t{next(_ids)}"
    assert client.post("/directories", params={"path": path}).status_code == 201
    return path


@pytest.fixture
def lws(lclient: httpx.Client, local_dir: Path) -> tuple[str, Path]:
    """A fresh empty localfs directory: (server path, local path)."""
    name = f"t{next(_ids)}"
    assert lclient.post("/directories", params={"path": f"/local/{name}"}).status_code == 201
    return f"/local/{name}", local_dir / name
