"""What AgfsClient puts on the wire: method, route, query string and body of every call."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import ProtocolError
from agfs_fuse.wire import agfs_open_flags

BASE = "http://agfs.test:8080/api/v1"


class Recorder:
    """A MockTransport handler that keeps every request and answers with ``reply``."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response] | None = None):
        self.requests: list[httpx.Request] = []
        self.reply = reply or (lambda request: httpx.Response(200, json={"message": "ok"}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    @property
    def only(self) -> httpx.Request:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


def run(
    handler: Callable[[httpx.Request], httpx.Response],
    call: Callable[[AgfsClient], Awaitable[Any]],
    base_url: str = BASE,
) -> Any:
    async def main() -> Any:
        client = AgfsClient(base_url, transport=httpx.MockTransport(handler))
        try:
            return await call(client)
        finally:
            await client.aclose()

    return trio.run(main)


def raw_target(request: httpx.Request) -> bytes:
    """Path plus query exactly as sent, before any decoding."""
    return request.url.raw_path


def query_pairs(request: httpx.Request) -> list[tuple[bytes, bytes]]:
    raw = request.url.query
    return [tuple(item.split(b"=", 1)) for item in raw.split(b"&")] if raw else []


def json_reply(body: Any, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=body)


FILE_INFO = {
    "name": "a.txt",
    "size": 5,
    "mode": 420,
    "modTime": "2026-05-11T13:56:07Z",
    "isDir": False,
    "meta": {"Name": "memfs", "Type": "file", "Content": None},
}


# -- path encoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("/memfs/a.txt", b"/memfs/a.txt"),
        ("/memfs/a+b", b"/memfs/a%2Bb"),
        ("/memfs/a b", b"/memfs/a%20b"),
        ("/memfs/100%", b"/memfs/100%25"),
        ("/memfs/%2B", b"/memfs/%252B"),
        ("/memfs/x#y", b"/memfs/x%23y"),
        ("/memfs/what?", b"/memfs/what%3F"),
        ("/memfs/a&size=3", b"/memfs/a%26size%3D3"),
        ("/memfs/k=v", b"/memfs/k%3Dv"),
        ("/memfs/caf\u00e9", b"/memfs/caf%C3%A9"),
        ("/memfs/\u65e5\u672c", b"/memfs/%E6%97%A5%E6%9C%AC"),
        ("/memfs/\U0001f600", b"/memfs/%F0%9F%98%80"),
        ("/memfs/semi;colon,comma", b"/memfs/semi%3Bcolon%2Ccomma"),
        ("/memfs/q'uote\"", b"/memfs/q%27uote%22"),
        ("/memfs/tab\tnl\n", b"/memfs/tab%09nl%0A"),
        ("/memfs/tilde~dash-dot._", b"/memfs/tilde~dash-dot._"),
    ],
)
def test_path_is_percent_encoded_in_the_raw_query(path: str, encoded: bytes) -> None:
    rec = Recorder(json_reply(FILE_INFO))
    run(rec, lambda c: c.stat(path))
    assert raw_target(rec.only) == b"/api/v1/stat?path=" + encoded
    # and a Go-style decoder reads it back unchanged (no '+' turned into a space)
    assert rec.only.url.params["path"] == path


def test_plus_never_travels_literally() -> None:
    rec = Recorder()
    run(rec, lambda c: c.write("/memfs/c++/a+b+c", b""))
    assert b"+" not in rec.only.url.query
    assert rec.only.url.query == b"path=/memfs/c%2B%2B/a%2Bb%2Bc"


def test_path_with_ampersand_does_not_inject_parameters() -> None:
    rec = Recorder()
    run(rec, lambda c: c.truncate("/memfs/a&size=999", 3))
    pairs = query_pairs(rec.only)
    assert pairs == [(b"path", b"/memfs/a%26size%3D999"), (b"size", b"3")]
    assert rec.only.url.params.get_list("size") == ["3"]


def test_base_url_with_prefix_keeps_prefix_in_every_route() -> None:
    rec = Recorder(json_reply(FILE_INFO))
    run(rec, lambda c: c.stat("/x"), base_url="http://agfs.test/agfs/api/v1")
    assert rec.only.url.host == "agfs.test"
    assert raw_target(rec.only) == b"/agfs/api/v1/stat?path=/x"


# -- one test per method -----------------------------------------------------------------


def test_stat_request() -> None:
    rec = Recorder(json_reply(FILE_INFO))
    info = run(rec, lambda c: c.stat("/memfs/a.txt"))
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/stat?path=/memfs/a.txt"
    assert rec.only.content == b""
    assert info.name == "a.txt"


def test_list_request() -> None:
    rec = Recorder(json_reply({"files": [FILE_INFO]}))
    files = run(rec, lambda c: c.list("/memfs/dir one"))
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/directories?path=/memfs/dir%20one"
    assert [f.name for f in files] == ["a.txt"]


def test_read_whole_file_sends_no_range_parameters() -> None:
    rec = Recorder(lambda r: httpx.Response(200, content=b"hello"))
    data = run(rec, lambda c: c.read("/memfs/a.txt"))
    assert data == b"hello"
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/files?path=/memfs/a.txt"
    assert "range" not in rec.only.headers


@pytest.mark.parametrize(
    ("offset", "size", "query"),
    [
        (0, 10, b"path=/f&offset=0&size=10"),
        (5, 10, b"path=/f&offset=5&size=10"),
        (5, -1, b"path=/f&offset=5&size=-1"),
        (0, 0, b"path=/f&offset=0&size=0"),
    ],
)
def test_read_range_parameters(offset: int, size: int, query: bytes) -> None:
    rec = Recorder(lambda r: httpx.Response(200, content=b""))
    run(rec, lambda c: c.read("/f", offset, size))
    assert rec.only.url.path == "/api/v1/files"
    assert rec.only.url.query == query
    assert "range" not in rec.only.headers


def test_read_short_answer_is_returned_as_is() -> None:
    rec = Recorder(lambda r: httpx.Response(200, content=b"ab"))
    assert run(rec, lambda c: c.read("/f", 3, 100)) == b"ab"


def test_write_request() -> None:
    rec = Recorder(json_reply({"message": "Written 6 bytes"}))
    run(rec, lambda c: c.write("/memfs/b a+r", b"\x00\xffdata"))
    req = rec.only
    assert req.method == "PUT"
    assert raw_target(req) == b"/api/v1/files?path=/memfs/b%20a%2Br"
    assert req.content == b"\x00\xffdata"
    assert req.headers["content-length"] == "6"


def test_create_request() -> None:
    rec = Recorder(json_reply({"message": "file created"}, 201))
    assert run(rec, lambda c: c.create("/memfs/new")) is None
    assert rec.only.method == "POST"
    assert raw_target(rec.only) == b"/api/v1/files?path=/memfs/new"
    assert rec.only.content == b""


@pytest.mark.parametrize(
    ("mode", "sent"),
    [(0o755, b"755"), (0o700, b"700"), (0o1777, b"1777"), (0o40755, b"755"), (0, b"0")],
)
def test_mkdir_sends_mode_as_octal_string(mode: int, sent: bytes) -> None:
    rec = Recorder(json_reply({"message": "directory created"}, 201))
    run(rec, lambda c: c.mkdir("/memfs/d", mode))
    assert rec.only.method == "POST"
    assert rec.only.url.path == "/api/v1/directories"
    assert query_pairs(rec.only) == [(b"path", b"/memfs/d"), (b"mode", sent)]


def test_mkdir_default_mode() -> None:
    rec = Recorder(json_reply({"message": "directory created"}, 201))
    run(rec, lambda c: c.mkdir("/memfs/d"))
    assert rec.only.url.params["mode"] == "755"


def test_delete_request() -> None:
    rec = Recorder(json_reply({"message": "deleted"}))
    run(rec, lambda c: c.delete("/memfs/a"))
    assert rec.only.method == "DELETE"
    assert raw_target(rec.only) == b"/api/v1/files?path=/memfs/a"


def test_delete_recursive_request() -> None:
    rec = Recorder(json_reply({"message": "deleted"}))
    run(rec, lambda c: c.delete("/memfs/tree", recursive=True))
    assert rec.only.method == "DELETE"
    assert raw_target(rec.only) == b"/api/v1/files?path=/memfs/tree&recursive=true"


def test_rmdir_request() -> None:
    rec = Recorder(json_reply({"message": "deleted"}))
    run(rec, lambda c: c.rmdir("/memfs/d"))
    assert rec.only.method == "DELETE"
    assert raw_target(rec.only) == b"/api/v1/directories?path=/memfs/d"
    assert "recursive" not in rec.only.url.params


def test_rename_request_has_json_body() -> None:
    rec = Recorder(json_reply({"message": "renamed"}))
    run(rec, lambda c: c.rename("/memfs/old name", "/memfs/new+name \u00e9"))
    req = rec.only
    assert req.method == "POST"
    assert raw_target(req) == b"/api/v1/rename?path=/memfs/old%20name"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.content) == {"newPath": "/memfs/new+name \u00e9"}


@pytest.mark.parametrize(("mode", "sent"), [(0o644, 420), (0o755, 493), (0o100600, 384)])
def test_chmod_request_sends_decimal_number(mode: int, sent: int) -> None:
    rec = Recorder(json_reply({"message": "permissions changed"}))
    run(rec, lambda c: c.chmod("/memfs/a", mode))
    req = rec.only
    assert req.method == "POST"
    assert raw_target(req) == b"/api/v1/chmod?path=/memfs/a"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.content)
    assert body == {"mode": sent}
    assert type(body["mode"]) is int


def test_truncate_request() -> None:
    rec = Recorder(json_reply({"message": "truncated"}))
    run(rec, lambda c: c.truncate("/memfs/a", 0))
    assert rec.only.method == "POST"
    assert raw_target(rec.only) == b"/api/v1/truncate?path=/memfs/a&size=0"


def test_touch_request() -> None:
    rec = Recorder(json_reply({"message": "touched"}))
    run(rec, lambda c: c.touch("/memfs/a"))
    assert rec.only.method == "POST"
    assert raw_target(rec.only) == b"/api/v1/touch?path=/memfs/a"
    assert rec.only.content == b""


def test_symlink_request_path_is_the_link() -> None:
    rec = Recorder(json_reply({"message": "symlink created"}, 201))
    run(rec, lambda c: c.symlink("../target dir/f+1", "/memfs/link"))
    req = rec.only
    assert req.method == "POST"
    assert raw_target(req) == b"/api/v1/symlink?path=/memfs/link"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.content) == {"target": "../target dir/f+1"}


def test_readlink_request() -> None:
    rec = Recorder(json_reply({"target": "/memfs/t"}))
    assert run(rec, lambda c: c.readlink("/memfs/l")) == "/memfs/t"
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/readlink?path=/memfs/l"


def test_health_request() -> None:
    rec = Recorder(json_reply({"status": "healthy", "version": "1.2", "ready": True}))
    health = run(rec, lambda c: c.health())
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/health"
    assert health.status == "healthy"


def test_mounts_request() -> None:
    rec = Recorder(json_reply({"mounts": []}))
    assert run(rec, lambda c: c.mounts()) == []
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/mounts"


# -- handles ---------------------------------------------------------------------------


OPEN_REPLY = {"handle_id": 7, "path": "/memfs/a", "flags": 2, "lease": 60, "expires_at": "x"}


def test_open_handle_request() -> None:
    rec = Recorder(json_reply(OPEN_REPLY))
    handle = run(rec, lambda c: c.open_handle("/memfs/a b", os.O_RDWR | os.O_CREAT, 0o600))
    req = rec.only
    assert handle == 7
    assert req.method == "POST"
    assert raw_target(req) == b"/api/v1/handles/open?path=/memfs/a%20b&flags=18&mode=600"
    assert req.content == b""


def test_open_handle_default_mode_is_644() -> None:
    rec = Recorder(json_reply(OPEN_REPLY))
    run(rec, lambda c: c.open_handle("/memfs/a", os.O_RDONLY))
    assert query_pairs(rec.only) == [(b"path", b"/memfs/a"), (b"flags", b"0"), (b"mode", b"644")]


@pytest.mark.parametrize(
    ("os_flags", "agfs"),
    [
        (os.O_RDONLY, 0),
        (os.O_WRONLY, 1),
        (os.O_RDWR, 2),
        (os.O_WRONLY | os.O_APPEND, 1 | 8),
        (os.O_WRONLY | os.O_CREAT, 1 | 16),
        (os.O_WRONLY | os.O_CREAT | os.O_EXCL, 1 | 16 | 32),
        (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 1 | 16 | 64),
        (os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_TRUNC, 2 | 8 | 16 | 32 | 64),
        (os.O_RDONLY | os.O_TRUNC, 64),
        (os.O_RDONLY | os.O_CREAT, 16),
    ],
)
def test_agfs_open_flags(os_flags: int, agfs: int) -> None:
    assert agfs_open_flags(os_flags) == agfs


def test_agfs_open_flags_ignores_flags_agfs_does_not_know() -> None:
    extra = (
        os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_LARGEFILE", 0)
    )
    assert agfs_open_flags(os.O_WRONLY | extra) == 1
    assert agfs_open_flags(os.O_RDWR | os.O_CREAT | extra) == 2 | 16


def test_agfs_open_flags_do_not_copy_linux_values() -> None:
    # The Go SDK's bug: Linux O_CREAT (0o100 = 64) would arrive as AGFS O_TRUNC.
    assert agfs_open_flags(os.O_CREAT) & 64 == 0
    assert agfs_open_flags(os.O_CREAT) == 16


def test_open_handle_sends_translated_flags() -> None:
    rec = Recorder(json_reply(OPEN_REPLY))
    run(rec, lambda c: c.open_handle("/f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
    assert rec.only.url.params["flags"] == str(1 | 8 | 16 | 64)


def test_handle_read_request() -> None:
    rec = Recorder(lambda r: httpx.Response(200, content=b"abc", headers={"X-Bytes-Read": "3"}))
    data = run(rec, lambda c: c.handle_read(7, 4096, 100))
    assert data == b"abc"
    assert rec.only.method == "GET"
    assert raw_target(rec.only) == b"/api/v1/handles/7/read?offset=4096&size=100"


def test_handle_write_request() -> None:
    rec = Recorder(json_reply({"bytes_written": 4, "position": 0}))
    written = run(rec, lambda c: c.handle_write(9, 10, b"\x01\x02\x03\x04"))
    req = rec.only
    assert written == 4
    assert req.method == "PUT"
    assert raw_target(req) == b"/api/v1/handles/9/write?offset=10"
    assert req.content == b"\x01\x02\x03\x04"


def test_close_handle_request() -> None:
    rec = Recorder(json_reply({"message": "handle closed"}))
    run(rec, lambda c: c.close_handle(12))
    assert rec.only.method == "DELETE"
    assert raw_target(rec.only) == b"/api/v1/handles/12"


def test_client_does_not_follow_redirects() -> None:
    rec = Recorder(
        lambda r: httpx.Response(301, headers={"Location": "http://agfs.test:8080/elsewhere"})
    )
    with pytest.raises(ProtocolError):
        run(rec, lambda c: c.stat("/a"))
    assert len(rec.requests) == 1
    assert rec.only.url.path == "/api/v1/stat"


def test_extra_headers_are_sent() -> None:
    rec = Recorder(json_reply(FILE_INFO))

    async def main() -> None:
        client = AgfsClient(BASE, transport=httpx.MockTransport(rec), headers={"X-Trace": "abc"})
        try:
            await client.stat("/a")
        finally:
            await client.aclose()

    trio.run(main)
    assert rec.only.headers["x-trace"] == "abc"
