"""Server-level routes and Go ``ServeMux`` routing quirks."""

from __future__ import annotations

import httpx
import pytest

from tests.server.helpers import err, raw_exchange
from tests.support.server import ServerProcess

HEALTH_KEYS = ["status", "version", "gitCommit", "buildTime", "ready", "degraded", "mounts"]


def test_health_body(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert list(body) == HEALTH_KEYS
    assert body["status"] == "healthy" and body["ready"] is True and body["degraded"] is False
    # devfs at /dev is always mounted, plus memfs and queuefs
    assert body["mounts"] == {"total": 3, "pending": 0, "mounted": 3, "failed": 0}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_health_answers_any_method(client: httpx.Client, method: str) -> None:
    r = client.request(method, "/health")
    assert r.status_code == 200
    assert r.json()["status"] == "healthy"


def test_ready_version_capabilities(client: httpx.Client) -> None:
    ready = client.get("/ready")
    assert ready.status_code == 200 and list(ready.json()) == HEALTH_KEYS
    version = client.get("/version").json()
    assert set(version) == {"version", "gitCommit", "buildTime"}
    caps = client.get("/capabilities").json()
    assert caps == {
        "version": version["version"],
        "features": ["handlefs", "grep", "digest", "stream", "touch"],
    }


def test_mounts_lists_dev_and_configured(client: httpx.Client) -> None:
    mounts = client.get("/mounts").json()["mounts"]
    assert [m["path"] for m in mounts] == ["/dev", "/memfs", "/queuefs"]
    assert [m["pluginName"] for m in mounts] == ["devfs", "memfs", "queuefs"]
    assert all(m["status"] == "mounted" for m in mounts)
    assert "error" not in mounts[1]


def test_root_banner(server: ServerProcess) -> None:
    r = httpx.get(f"http://127.0.0.1:{server.port}/")
    assert r.status_code == 200
    assert r.json()["service"] == "AGFS Server"


@pytest.mark.parametrize("route", ["/nope", "/files/", "/handlesx", "/api/v2/files", "/_test"])
def test_unknown_route_is_go_plain_404(server: ServerProcess, route: str) -> None:
    url = f"http://127.0.0.1:{server.port}" + (
        route if route.startswith("/api") else "/api/v1" + route
    )
    r = httpx.get(url)
    assert r.status_code == 404
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == "404 page not found\n"


@pytest.mark.parametrize(
    "method,route",
    [
        ("PATCH", "/files"),
        ("PUT", "/directories"),
        ("POST", "/stat"),
        ("GET", "/rename"),
        ("GET", "/chmod"),
        ("GET", "/truncate"),
        ("GET", "/touch"),
        ("GET", "/symlink"),
        ("POST", "/readlink"),
        ("POST", "/mounts"),
        ("POST", "/ready"),
        ("POST", "/version"),
        ("POST", "/capabilities"),
        ("GET", "/handles/open"),
        ("GET", "/digest"),
        ("GET", "/grep"),
    ],
)
def test_wrong_method_is_405_json(client: httpx.Client, method: str, route: str) -> None:
    r = client.request(method, route, params={"path": "/memfs"})
    assert r.status_code == 405
    assert err(r) == "method not allowed"


def test_handles_without_slash_redirects(client: httpx.Client) -> None:
    r = client.get("/handles", params={"x": "1"})
    assert r.status_code == 301
    assert r.headers["location"] == "/api/v1/handles/?x=1"
    listing = client.get("/handles/")
    assert listing.status_code == 200
    assert listing.json() == {"handles": [], "count": 0, "max": 10000}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_non_get_on_handles_root_is_400(client: httpx.Client, method: str) -> None:
    r = client.request(method, "/handles/")
    assert r.status_code == 400
    assert err(r) == "handle ID required"


def test_unclean_path_redirects_to_clean_one(server: ServerProcess) -> None:
    r = httpx.get(f"http://127.0.0.1:{server.port}/api/v1//stat?path=/memfs")
    assert r.status_code == 301
    assert r.headers["location"] == "/api/v1/stat?path=/memfs"


def test_missing_path_parameter(client: httpx.Client) -> None:
    for method, route in [
        ("GET", "/files"),
        ("PUT", "/files"),
        ("GET", "/stat"),
        ("POST", "/touch"),
        ("DELETE", "/files"),
        ("POST", "/handles/open"),
    ]:
        r = client.request(method, route)
        assert r.status_code == 400, route
        assert err(r) == "path parameter is required"


def test_head_gets_headers_only(server: ServerProcess) -> None:
    raw = raw_exchange(
        "127.0.0.1",
        server.port,
        b"HEAD /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b""


def test_malformed_request_line_is_plain_400(server: ServerProcess) -> None:
    raw = raw_exchange("127.0.0.1", server.port, b"garbage\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in raw


def test_http11_without_host_is_400(server: ServerProcess) -> None:
    raw = raw_exchange("127.0.0.1", server.port, b"GET /api/v1/health HTTP/1.1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"missing required Host header" in raw
