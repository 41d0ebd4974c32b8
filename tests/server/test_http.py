"""HTTP framing: keep-alive, chunked bodies both ways, body limits, query decoding."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.server.helpers import err
from tests.support.server import ServerProcess


def _read_response(f) -> tuple[bytes, dict[str, str], bytes]:  # type: ignore[no-untyped-def]
    status = f.readline()
    headers: dict[str, str] = {}
    while (line := f.readline()) != b"\r\n":
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = f.read(int(headers["content-length"]))
    else:
        assert headers.get("transfer-encoding") == "chunked"
        body = b""
        while True:
            size = int(f.readline().strip(), 16)
            chunk = f.read(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    return status, headers, body


def test_keep_alive_reuses_one_connection(server: ServerProcess, ws: str) -> None:
    """Many requests of every framing kind on one socket, answers in order."""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        f = s.makefile("rb")
        big = b"z" * 5000
        for i in range(50):
            path = f"{ws}/k{i}".encode()
            s.sendall(
                b"PUT /api/v1/files?path=" + path + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: " + str(len(big)).encode() + b"\r\n\r\n" + big
            )
            status, _, body = _read_response(f)
            assert (
                status.startswith(b"HTTP/1.1 200") and body == b'{"message":"Written 5000 bytes"}\n'
            )
            s.sendall(b"GET /api/v1/files?path=" + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = _read_response(f)
            assert headers["transfer-encoding"] == "chunked" and body == big
            # an ignored request body must not desynchronise the connection
            s.sendall(
                b"GET /api/v1/stat?path=" + path + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 3\r\n\r\nabc"
            )
            status, headers, body = _read_response(f)
            assert status.startswith(b"HTTP/1.1 200") and b'"size":5000' in body


def test_pipelined_requests(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        f = s.makefile("rb")
        for _ in range(3):
            status, _, body = _read_response(f)
            assert status.startswith(b"HTTP/1.1 200") and b"healthy" in body


def test_chunked_upload(client: httpx.Client, ws: str) -> None:
    pieces = [b"a" * 1000, b"b" * 70000, b"", b"c"]
    r = client.put("/files", params={"path": f"{ws}/chunked"}, content=iter(pieces))
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 200 and r.json() == {"message": "Written 71001 bytes"}
    assert client.get("/files", params={"path": f"{ws}/chunked"}).content == b"".join(pieces)


def test_small_bodies_have_length_big_ones_are_chunked(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/s"}, content=b"x" * 100)
    client.put("/files", params={"path": f"{ws}/b"}, content=b"x" * 100_000)
    small = client.get("/files", params={"path": f"{ws}/s"})
    assert small.headers["content-length"] == "100"
    assert small.headers["content-type"] == "application/octet-stream"
    big = client.get("/files", params={"path": f"{ws}/b"})
    assert "content-length" not in big.headers
    assert big.headers["transfer-encoding"] == "chunked" and len(big.content) == 100_000


def test_body_over_limit_is_413_and_closes(small_server: ServerProcess) -> None:
    with httpx.Client(base_url=small_server.url, timeout=10) as c:
        r = c.put("/files", params={"path": "/memfs/big"}, content=b"x" * 2048)
        assert r.status_code == 413
        assert err(r) == "request body exceeds maximum size of 1024 bytes"
        assert r.headers["connection"] == "close"
        assert c.get("/stat", params={"path": "/memfs/big"}).status_code == 500  # memfs: untyped
        ok = c.put("/files", params={"path": "/memfs/ok"}, content=b"x" * 1024)
        assert ok.status_code == 200


def test_chunked_body_over_limit_is_413(small_server: ServerProcess) -> None:
    with httpx.Client(base_url=small_server.url, timeout=10) as c:
        r = c.put("/files", params={"path": "/memfs/big2"}, content=iter([b"x" * 600, b"y" * 600]))
        assert r.status_code == 413
        assert err(r) == "request body exceeds maximum size of 1024 bytes"


@pytest.mark.parametrize("route", ["/rename", "/chmod", "/symlink"])
def test_json_bodies_are_limited_too(small_server: ServerProcess, route: str) -> None:
    with httpx.Client(base_url=small_server.url, timeout=10) as c:
        r = c.post(route, params={"path": "/memfs/x"}, content=b" " * 5000 + b"{}")
        assert r.status_code == 413


def test_413_from_raw_socket_then_connection_closes(small_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=5) as s:
        s.sendall(
            b"PUT /api/v1/files?path=/memfs/r HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 100000\r\n\r\n" + b"x" * 100000
        )
        f = s.makefile("rb")
        status, headers, body = _read_response(f)
        assert status.startswith(b"HTTP/1.1 413")
        assert headers["connection"] == "close"
        assert f.read() == b""  # the server closed the connection


@pytest.mark.parametrize(
    "name",
    ["a+b", "50% off", "x#y", "q?a=1&b=2", "k=v", "sp ace", "ünï cødé ✓", "tab\tline"],
)
def test_percent_encoded_paths(client: httpx.Client, ws: str, name: str) -> None:
    path = f"{ws}/{name}"
    r = client.put("/files", params={"path": path}, content=name.encode())
    assert r.status_code == 200
    assert client.get("/files", params={"path": path}).content == name.encode()
    names = [f["name"] for f in client.get("/directories", params={"path": ws}).json()["files"]]
    assert names == [name]
    assert client.get("/stat", params={"path": path}).json()["name"] == name


def test_plus_in_raw_query_is_a_space(client: httpx.Client, ws: str, server: ServerProcess) -> None:
    """Go reads ``+`` as a space: a client must send ``%2B``."""
    base = f"http://127.0.0.1:{server.port}/api/v1/files?path={ws}/a+b"
    assert httpx.put(base, content=b"1").status_code == 200
    assert client.get("/stat", params={"path": f"{ws}/a b"}).status_code == 200
    assert client.get("/stat", params={"path": f"{ws}/a+b"}).status_code == 500


def test_bad_query_values(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    r = client.get("/files", params={"path": f"{ws}/f", "offset": "x"})
    assert r.status_code == 400 and err(r) == "invalid offset parameter"
    r = client.get("/files", params={"path": f"{ws}/f", "size": "1.5"})
    assert r.status_code == 400 and err(r) == "invalid size parameter"


def test_unparsable_json_body_is_400(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"abc")
    r = client.post("/rename", params={"path": f"{ws}/f"}, content=b"{nope")
    assert r.status_code == 400 and err(r) == "invalid request body"
    r = client.post("/chmod", params={"path": f"{ws}/f"}, json={"mode": "420"})
    assert r.status_code == 400 and err(r) == "invalid request body"
    r = client.post("/chmod", params={"path": f"{ws}/f"}, json={"mode": -1})
    assert r.status_code == 400
    r = client.post("/rename", params={"path": f"{ws}/f"}, json={})
    assert r.status_code == 400 and err(r) == "newPath is required"
    # Go matches JSON field names case-insensitively and ignores trailing data
    r = client.post(
        "/rename",
        params={"path": f"{ws}/f"},
        content=b'{"NEWPATH":"' + f"{ws}/g".encode() + b'"} trailing',
    )
    assert r.status_code == 200


@pytest.mark.timeout(20)
def test_client_still_sending_over_limit_gets_reset_but_can_read_413(
    small_server: ServerProcess,
) -> None:
    """Go reads limit+1 bytes, answers 413 and closes with the rest unread: a client that
    keeps sending gets EPIPE or a reset on its send, and the 413 is still on its socket."""
    total = 64 << 20
    with socket.create_connection(("127.0.0.1", small_server.port), timeout=10) as s:
        s.sendall(
            b"PUT /api/v1/files?path=/memfs/huge HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: " + str(total).encode() + b"\r\n\r\n"
        )
        piece = b"x" * 65536
        sent = 0
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while sent < total:
                sent += s.send(piece)
        assert sent < total
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"request body exceeds maximum size of 1024 bytes" in answer


def test_deeply_nested_json_body_is_400(client: httpx.Client, ws: str) -> None:
    """Go refuses JSON nested over 10000 levels with a 400; no RecursionError, no drop."""
    r = client.post("/grep", content=b"[" * 100_000)
    assert r.status_code == 400
    assert err(r) == "invalid request body: invalid character '[' exceeded max depth"
    assert client.get("/health").status_code == 200
