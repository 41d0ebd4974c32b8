"""The handle API on memfs, with AGFS flag values."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.server.helpers import RFC3339NANO, check_file_info, err
from tests.support.server import ServerProcess

O_RDONLY, O_WRONLY, O_RDWR, O_APPEND, O_CREATE, O_EXCL, O_TRUNC = 0, 1, 2, 8, 16, 32, 64


def _open(client: httpx.Client, path: str, flags: int, mode: str | None = None) -> httpx.Response:
    params = {"path": path, "flags": str(flags)}
    if mode:
        params["mode"] = mode
    return client.post("/handles/open", params=params)


def test_open_create_write_read_close(client: httpx.Client, ws: str) -> None:
    r = _open(client, f"{ws}/h", O_RDWR | O_CREATE, "600")
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["handle_id", "path", "flags", "lease", "expires_at"]
    assert body["path"] == f"{ws}/h" and body["flags"] == O_RDWR | O_CREATE
    assert body["lease"] == 60 and RFC3339NANO.match(body["expires_at"])
    hid = body["handle_id"]
    w = client.put(f"/handles/{hid}/write", content=b"hello world")
    assert w.json() == {"bytes_written": 11, "position": 0}
    w = client.put(f"/handles/{hid}/write", params={"offset": "20"}, content=b"!")
    assert w.json()["bytes_written"] == 1
    data = client.get("/files", params={"path": f"{ws}/h"}).content
    assert data == b"hello world" + b"\0" * 9 + b"!"
    r = client.get(f"/handles/{hid}/read", params={"offset": "6", "size": "5"})
    assert r.content == b"world" and r.headers["x-bytes-read"] == "5"
    r = client.get(f"/handles/{hid}/read", params={"offset": "100"})
    assert r.status_code == 200 and r.content == b"" and r.headers["x-bytes-read"] == "0"
    st = client.get(f"/handles/{hid}/stat").json()
    check_file_info(st)
    assert st["mode"] == 0o600 and st["size"] == 21
    assert client.post(f"/handles/{hid}/sync").json() == {"message": "synced"}
    assert client.delete(f"/handles/{hid}").json() == {"message": "handle closed"}
    r = client.get(f"/handles/{hid}/read")
    assert r.status_code == 404 and err(r) == "not found"
    assert client.delete(f"/handles/{hid}").status_code == 404


def test_sequential_read_seek_and_stream(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/s"}, content=b"0123456789" * 10000)
    hid = _open(client, f"{ws}/s", O_RDONLY).json()["handle_id"]
    assert client.get(f"/handles/{hid}/read", params={"size": "3"}).content == b"012"
    assert client.get(f"/handles/{hid}/read", params={"size": "3"}).content == b"345"
    assert client.post(f"/handles/{hid}/seek", params={"offset": "-2", "whence": "2"}).json() == {
        "position": 99998
    }
    assert client.get(f"/handles/{hid}/read").content == b"89"
    client.post(f"/handles/{hid}/seek", params={"offset": "0"})
    assert len(client.get(f"/handles/{hid}/read", params={"size": "-1"}).content) == 100000
    client.post(f"/handles/{hid}/seek", params={"offset": "99990"})
    assert client.get(f"/handles/{hid}/stream").content == b"0123456789"
    r = client.post(f"/handles/{hid}/seek", params={"offset": "-1"})
    assert r.status_code == 500 and err(r) == "negative position"
    r = client.post(f"/handles/{hid}/seek", params={"offset": "1", "whence": "3"})
    assert r.status_code == 400 and err(r) == "invalid whence parameter (must be 0, 1, or 2)"
    r = client.post(f"/handles/{hid}/seek")
    assert r.status_code == 400 and err(r) == "offset parameter is required"
    info = client.get(f"/handles/{hid}").json()
    assert info["handle_id"] == hid and info["path"] == f"{ws}/s"
    client.delete(f"/handles/{hid}")


def test_flags(client: httpx.Client, ws: str) -> None:
    rel = ws.removeprefix("/memfs")
    r = _open(client, f"{ws}/none", O_RDONLY)
    assert r.status_code == 500 and err(r) == f"file not found: {rel}/none"
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    r = _open(client, f"{ws}/f", O_WRONLY | O_CREATE | O_EXCL)
    assert r.status_code == 500 and err(r) == f"file already exists: {rel}/f"
    hid = _open(client, f"{ws}/f", O_WRONLY | O_APPEND).json()["handle_id"]
    client.put(f"/handles/{hid}/write", content=b"def")
    assert client.get("/files", params={"path": f"{ws}/f"}).content == b"abcdef"
    r = client.get(f"/handles/{hid}/read")
    assert r.status_code == 500 and err(r) == "handle not opened for reading"
    client.delete(f"/handles/{hid}")
    hid = _open(client, f"{ws}/f", O_RDONLY | O_TRUNC).json()["handle_id"]
    assert client.get("/files", params={"path": f"{ws}/f"}).content == b""
    r = client.put(f"/handles/{hid}/write", content=b"x")
    assert r.status_code == 500 and err(r) == "handle not opened for writing"
    client.delete(f"/handles/{hid}")
    r = _open(client, f"{ws}/no/f", O_CREATE | O_RDWR)
    assert err(r) == f"parent directory not found: {rel}/no/f"
    r = _open(client, ws, O_RDONLY)
    assert err(r) == f"is a directory: {rel}"


def test_ids_increase_across_mounts(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"x")
    a = _open(client, f"{ws}/f", O_RDONLY).json()["handle_id"]
    b = _open(client, "/queuefs/ids/peek", O_RDONLY).json()["handle_id"]
    c = _open(client, f"{ws}/f", O_RDONLY).json()["handle_id"]
    assert a < b < c
    for h in (a, b, c):
        client.delete(f"/handles/{h}")


def test_bad_requests(client: httpx.Client, ws: str) -> None:
    r = client.get("/handles/abc/read")
    assert r.status_code == 400 and err(r) == "invalid handle ID: must be a number"
    r = client.get("/handles/1/frobnicate")
    assert r.status_code == 404 and err(r) == "unknown operation: frobnicate"
    r = client.post("/handles/1/read")
    assert r.status_code == 405
    r = client.post("/handles/open", params={"path": f"{ws}/f", "flags": "x"})
    assert r.status_code == 400 and err(r) == "invalid flags parameter: must be a number"
    r = client.post("/handles/open", params={"path": f"{ws}/f", "flags": "16", "mode": "9"})
    assert r.status_code == 400 and err(r) == "invalid mode parameter"
    r = client.post("/handles/open", params={"path": "/nowhere/f", "flags": "0"})
    assert r.status_code == 404 and err(r) == "openhandle: /nowhere/f: not found"
    r = client.post("/handles/open", params={"path": "/dev/null", "flags": "0"})
    assert r.status_code == 501 and err(r) == "openhandle: /dev/null: operation not supported"


@pytest.mark.parametrize("method,op", [("GET", "read"), ("PUT", "write")])
def test_negative_offset_drops_the_connection(
    server: ServerProcess, client: httpx.Client, ws: str, method: str, op: str
) -> None:
    """The Go handler panics on a negative pread/pwrite offset: no response at all."""
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    hid = _open(client, f"{ws}/f", O_RDWR).json()["handle_id"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            f"{method} /api/v1/handles/{hid}/{op}?offset=-1 HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1\r\n\r\nx".encode()
        )
        assert s.recv(100) == b""
    assert client.delete(f"/handles/{hid}").status_code == 200


def test_seek_past_int64_wraps_to_negative_position_like_go(client: httpx.Client, ws: str) -> None:
    """Go adds offsets in int64: MaxInt64 + 1 is negative, so "negative position"."""
    client.put("/files", params={"path": f"{ws}/big-seek"}, content=b"abc")
    hid = _open(client, f"{ws}/big-seek", O_RDONLY).json()["handle_id"]
    max_int64 = str((1 << 63) - 1)
    r = client.post(f"/handles/{hid}/seek", params={"offset": max_int64})
    assert r.json() == {"position": (1 << 63) - 1}
    r = client.post(f"/handles/{hid}/seek", params={"offset": "1", "whence": "1"})
    assert r.status_code == 500 and err(r) == "negative position"
    r = client.post(f"/handles/{hid}/seek", params={"offset": max_int64, "whence": "2"})
    assert r.status_code == 500 and err(r) == "negative position"
    r = client.post(f"/handles/{hid}/seek", params={"offset": str(1 << 63)})
    assert r.status_code == 400 and err(r) == "invalid offset parameter"
    client.delete(f"/handles/{hid}")
