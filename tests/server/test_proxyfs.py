"""proxyfs, the plugin that mounts another AGFS server: what its mount answers on the wire.

A front server mounts a backend server at ``/remote``; both are the reference server, or
both the real one under conformance (``--agfs-server-bin``), so every text here is the
real plugin's.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.helpers import check_file_info, err
from tests.support.server import ServerProcess, free_port, start_server

_ids = itertools.count()
BACKEND_PLUGINS: dict[str, Any] = {
    "memfs": {"enabled": True, "path": "/memfs"},
    "queuefs": {"enabled": True, "path": "/queuefs", "config": {}},
    "streamfs": {"enabled": True, "path": "/streamfs"},
}
RELOAD_DESCRIPTION = "Write to this file to reload proxy connection"


def proxy_config(*mounts: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """memfs at /memfs plus one proxyfs instance per (path, config)."""
    instances = [
        {"name": f"proxy{i}", "enabled": True, "path": path, "config": config}
        for i, (path, config) in enumerate(mounts)
    ]
    return {"plugins": {"memfs": {"enabled": True, "path": "/memfs"}, "proxyfs": instances}}


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("proxy-backend"), config={"plugins": BACKEND_PLUGINS}
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, backend: ServerProcess
) -> Iterator[ServerProcess]:
    config = proxy_config(("/remote", {"base_url": backend.url}))
    srv = start_server(tmp_path_factory.mktemp("proxy-front"), config=config)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fc(front: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the front server."""
    with httpx.Client(base_url=front.url, timeout=30) as c:
        yield c


@pytest.fixture
def bc(backend: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client on the backend server."""
    with httpx.Client(base_url=backend.url, timeout=10) as c:
        yield c


@pytest.fixture
def name(bc: httpx.Client) -> str:
    """A fresh empty memfs directory on the backend (its name)."""
    name = f"p{next(_ids)}"
    assert bc.post("/directories", params={"path": f"/memfs/{name}"}).status_code == 201
    return name


def test_files_written_through_the_proxy_land_on_the_backend(
    fc: httpx.Client, bc: httpx.Client, name: str
) -> None:
    path = f"/remote/memfs/{name}/a.txt"
    resp = fc.put("/files", params={"path": path}, content=b"hello proxy")
    assert resp.status_code == 200 and resp.json() == {"message": "Written 11 bytes"}
    assert bc.get("/files", params={"path": f"/memfs/{name}/a.txt"}).content == b"hello proxy"
    assert fc.get("/files", params={"path": path, "offset": 6, "size": 3}).content == b"pro"
    assert fc.get("/files", params={"path": path, "offset": 50}).content == b""
    assert fc.post("/files", params={"path": f"/remote/memfs/{name}/empty"}).status_code == 201
    resp = fc.post("/directories", params={"path": f"/remote/memfs/{name}/d", "mode": "700"})
    assert resp.status_code == 201
    assert bc.get("/stat", params={"path": f"/memfs/{name}/d"}).json()["mode"] == 0o700
    body = {"newPath": f"/remote/memfs/{name}/b.txt"}
    assert fc.post("/rename", params={"path": path}, json=body).status_code == 200
    assert (
        fc.post("/chmod", params={"path": body["newPath"]}, json={"mode": 0o600}).status_code == 200
    )
    assert bc.get("/stat", params={"path": f"/memfs/{name}/b.txt"}).json()["mode"] == 0o600
    resp = fc.delete("/files", params={"path": f"/remote/memfs/{name}/d", "recursive": "true"})
    assert resp.status_code == 200
    names = [
        f["name"] for f in bc.get("/directories", params={"path": f"/memfs/{name}"}).json()["files"]
    ]
    assert sorted(names) == ["b.txt", "empty"]


def test_listings_pass_through_and_stats_gain_the_remote_url(
    fc: httpx.Client, bc: httpx.Client, backend: ServerProcess, name: str
) -> None:
    bc.put("/files", params={"path": f"/memfs/{name}/f"}, content=b"12345")
    listed = fc.get("/directories", params={"path": f"/remote/memfs/{name}"}).json()["files"]
    assert listed == bc.get("/directories", params={"path": f"/memfs/{name}"}).json()["files"]
    assert listed[0]["meta"] == {"Name": "memfs", "Type": "file", "Content": None}
    info = fc.get("/stat", params={"path": f"/remote/memfs/{name}/f"}).json()
    check_file_info(info)
    remote = bc.get("/stat", params={"path": f"/memfs/{name}/f"}).json()
    assert info["meta"]["Content"] == {"remote-url": backend.url}
    assert {k: v for k, v in info.items() if k != "meta"} == {
        k: v for k, v in remote.items() if k != "meta"
    }
    root = fc.get("/stat", params={"path": "/remote"}).json()
    assert (root["name"], root["isDir"], root["meta"]["Type"]) == ("remote", True, "root")
    assert root["meta"]["Content"] == {"remote-url": backend.url}


def test_reload_is_a_write_only_control_file_listed_at_the_proxy_root(
    fc: httpx.Client, backend: ServerProcess
) -> None:
    info = fc.get("/stat", params={"path": "/remote/reload"}).json()
    check_file_info(info)
    assert (info["size"], info["mode"], info["isDir"]) == (0, 0o200, False)
    assert info["meta"] == {
        "Name": "",
        "Type": "control",
        "Content": {"description": RELOAD_DESCRIPTION, "remote-url": backend.url},
    }
    listed = fc.get("/directories", params={"path": "/remote"}).json()["files"]
    assert listed[-1]["name"] == "reload" and listed[-1]["mode"] == 0o200
    assert listed[-1]["modTime"] == listed[0]["modTime"]  # borrowed from the first entry
    assert listed[-1]["meta"]["Content"] == {"description": RELOAD_DESCRIPTION}
    assert {"memfs", "queuefs", "dev"} <= {f["name"] for f in listed}


def test_reload_reads_a_help_line_and_a_write_reconnects(fc: httpx.Client) -> None:
    help_line = b"Write to this file to reload the proxy connection\n"
    assert fc.get("/files", params={"path": "/remote/reload"}).content == help_line
    resp = fc.get("/files", params={"path": "/remote/reload", "offset": 6, "size": 7})
    assert resp.content == b"to this"
    resp = fc.put("/files", params={"path": "/remote/reload"}, content=b"\n")
    assert resp.status_code == 200 and resp.json() == {"message": "Written 1 bytes"}
    assert fc.get("/stat", params={"path": "/remote/memfs"}).status_code == 200


def test_other_operations_on_reload_reach_the_remote_root(fc: httpx.Client) -> None:
    """Only stat, read, write and the root listing know ``reload``; the rest ask the remote."""
    resp = fc.delete("/files", params={"path": "/remote/reload"})
    assert (resp.status_code, err(resp)) == (500, "HTTP 404: remove: /reload: not found")
    resp = fc.get("/directories", params={"path": "/remote/reload"})
    assert (resp.status_code, err(resp)) == (500, "HTTP 404: readdir: /reload: not found")
    resp = fc.post("/digest", json={"algorithm": "md5", "path": "/remote/reload"})
    assert err(resp) == "failed to calculate digest: HTTP 404: read: /reload: not found"


def test_remote_errors_come_as_500_with_the_remote_status_in_the_text(
    fc: httpx.Client, name: str
) -> None:
    missing = f"/remote/memfs/{name}/missing"
    for resp in (
        fc.get("/files", params={"path": missing}),
        fc.get("/stat", params={"path": missing}),
        fc.get("/directories", params={"path": missing}),
        fc.delete("/files", params={"path": missing}),
        fc.post("/chmod", params={"path": missing}, json={"mode": 0o644}),
    ):
        assert resp.status_code == 500
        assert err(resp) == f"HTTP 500: no such file or directory: /{name}/missing"
    fc.post("/files", params={"path": f"/remote/memfs/{name}/x"})
    resp = fc.post("/files", params={"path": f"/remote/memfs/{name}/x"})
    assert (resp.status_code, err(resp)) == (500, f"HTTP 500: file already exists: /{name}/x")
    resp = fc.post("/directories", params={"path": "/remote/top"})
    assert resp.status_code == 500  # a 403 on the remote, a 500 here
    assert err(resp) == (
        "HTTP 403: mkdir: /top: permission denied "
        "(not allowed to create directory in rootfs, use mount instead)"
    )


def test_no_handles_no_truncate_but_touch_digest_and_grep_work(
    fc: httpx.Client, bc: httpx.Client, name: str
) -> None:
    path = f"/remote/memfs/{name}/t.txt"
    fc.put("/files", params={"path": path}, content=b"hello")
    resp = fc.post("/handles/open", params={"path": path, "flags": 0})
    assert (resp.status_code, err(resp)) == (501, f"openhandle: {path}: operation not supported")
    resp = fc.post("/truncate", params={"path": path, "size": 0})
    assert (resp.status_code, err(resp)) == (500, f"filesystem does not support truncate: {path}")
    # touch reads the file back and rewrites it (memfs's own touch fails with EOF)
    assert fc.post("/touch", params={"path": path}).json() == {"message": "touched"}
    assert bc.get("/files", params={"path": f"/memfs/{name}/t.txt"}).content == b"hello"
    assert fc.post("/touch", params={"path": f"{path}.new"}).status_code == 200
    resp = fc.post("/digest", json={"algorithm": "md5", "path": path})
    assert resp.json()["digest"] == "5d41402abc4b2a76b9719d911017c592"
    resp = fc.post(
        "/grep", json={"path": f"/remote/memfs/{name}", "pattern": "ell", "recursive": True}
    )
    assert resp.json()["count"] == 1 and resp.json()["matches"][0]["file"] == path


def test_streams_are_proxied_and_refusals_keep_the_remote_status(
    fc: httpx.Client, bc: httpx.Client, name: str
) -> None:
    resp = fc.get("/files", params={"path": f"/remote/memfs/{name}", "stream": "true"})
    assert resp.status_code == 404
    assert err(resp) == f"HTTP 404: filesystem does not support streaming: /memfs/{name}"
    bc.put("/files", params={"path": f"/streamfs/{name}"}, content=b"live bytes")
    params = {"path": f"/remote/streamfs/{name}", "stream": "true"}
    with fc.stream("GET", "/files", params=params, timeout=10) as resp:
        assert resp.status_code == 200
        got = b""
        for chunk in resp.iter_raw():
            got += chunk
            if len(got) >= 10:
                break
    assert got == b"live bytes"


def test_a_failed_write_is_retried_three_times_over_seven_seconds(
    fc: httpx.Client, name: str
) -> None:
    """The SDK client behind proxyfs retries a PUT on a 5xx after 1, 2 and 4 seconds."""
    start = time.monotonic()
    resp = fc.put("/files", params={"path": f"/remote/memfs/{name}/no/f"}, content=b"x")
    elapsed = time.monotonic() - start
    assert (resp.status_code, err(resp)) == (
        500,
        f"HTTP 500: no such file or directory: /{name}/no",
    )
    assert elapsed >= 7.0


def _settled_mounts(srv: ServerProcess, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """``GET /mounts`` by path, once no mount is pending any more."""
    deadline = time.monotonic() + timeout
    while True:
        mounts = {m["path"]: m for m in srv.get_json("/mounts")[1]["mounts"]}
        if all(m.get("status") != "pending" for m in mounts.values()):
            return mounts
        assert time.monotonic() < deadline, mounts
        time.sleep(0.05)


def test_bad_base_urls_and_unreachable_remotes_fail_the_mount(
    tmp_path: Path, backend: ServerProcess
) -> None:
    down = free_port()
    cases = {
        "/unknown": (
            {"base_url": backend.url, "remote_path": "/"},
            "unknown configuration parameter: remote_path (allowed: [base_url mount_path])",
        ),
        "/none": ({}, "base_url is required in configuration"),
        "/number": ({"base_url": 8080}, "base_url is required in configuration"),
        "/ip-port": (
            {"base_url": "127.0.0.1:8080"},
            'invalid base_url format: parse "127.0.0.1:8080": '
            "first path segment in URL cannot contain colon",
        ),
        "/bracket": (
            {"base_url": "http://[::1"},
            "invalid base_url format: parse \"http://[::1\": missing ']' in host",
        ),
        "/no-slashes": (
            {"base_url": "localhost:8080"},
            "invalid base_url format: localhost:8080 (expected format: "
            "http://hostname:port or http://hostname:port/api/v1). "
            "Did you forget to quote the URL?",
        ),
        "/down": (
            {"base_url": f"http://127.0.0.1:{down}/api/v1"},
            f"failed to connect to remote AGFS server at http://127.0.0.1:{down}/api/v1: "
            f'failed to execute request: Get "http://127.0.0.1:{down}/api/v1/health": '
            f"dial tcp 127.0.0.1:{down}: connect: connection refused",
        ),
        "/sub-path": (
            {"base_url": backend.url + "/memfs"},
            f"failed to connect to remote AGFS server at {backend.url}/memfs: "
            "health check failed with status: 404",
        ),
    }
    config = proxy_config(
        *[(path, cfg) for path, (cfg, _) in cases.items()],
        ("/no-version", {"base_url": backend.url.removesuffix("/api/v1")}),
    )
    srv = start_server(tmp_path, config=config, ready=False)
    try:
        mounts = _settled_mounts(srv)
        for path, (_, message) in cases.items():
            assert (mounts[path]["status"], mounts[path]["error"]) == ("failed", message), path
        assert mounts["/no-version"]["status"] == "mounted"  # /api/v1 is appended
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            assert c.get("/stat", params={"path": "/no-version/memfs"}).status_code == 200
            assert c.get("/stat", params={"path": "/down"}).status_code == 404
    finally:
        srv.stop()


def test_reload_fails_while_the_remote_is_down_and_reconnects_after(tmp_path: Path) -> None:
    port = free_port()
    remote = start_server(tmp_path / "remote", config={"plugins": BACKEND_PLUGINS}, port=port)
    url = f"http://127.0.0.1:{port}/api/v1"
    srv = start_server(tmp_path / "front", config=proxy_config(("/r", {"base_url": url})))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            c.put("/files", params={"path": "/r/memfs/f"}, content=b"one")
            remote.stop()
            refused = (
                f'failed to execute request: Get "{url}/health": '
                f"dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
            resp = c.put("/files", params={"path": "/r/reload"}, content=b"")
            assert resp.status_code == 500
            assert err(resp) == f"reload failed: failed to connect after reload: {refused}"
            resp = c.get("/stat", params={"path": "/r/memfs/f"})
            assert resp.status_code == 500
            assert err(resp).startswith('failed to execute request: Get "')
            assert err(resp).endswith(f"dial tcp 127.0.0.1:{port}: connect: connection refused")
            remote = start_server(
                tmp_path / "remote2", config={"plugins": BACKEND_PLUGINS}, port=port
            )
            assert c.put("/files", params={"path": "/r/reload"}, content=b"").status_code == 200
            assert c.put("/files", params={"path": "/r/memfs/g"}, content=b"two").status_code == 200
            assert c.get("/files", params={"path": "/r/memfs/g"}).content == b"two"
    finally:
        srv.stop()
        remote.stop()
