"""streamfs over real HTTP: append-only broadcast streams with a ring buffer.

Stream bodies are read from raw sockets, chunk by chunk, with deadlines (never fixed
sleeps): a ``stream=true`` answer never ends by itself, and its head only comes with the
first byte (Go flushes only after a piece).
"""

from __future__ import annotations

import itertools
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from agfs_fuse.server.plugins.streamfs_config import (
    check_stream_config,
    format_size,
    parse_size,
    validate_size,
)
from tests.server.helpers import check_file_info, err
from tests.support.server import ServerProcess, start_server

O_RDONLY, O_WRONLY, O_RDWR = 0, 1, 2
CHUNK = 64 * 1024
#: A write wakes a waiting reader at once; a reader that missed it would only see the data
#: at its read timeout (Go: 30 s). Far from both, so a loaded machine does not flake.
WAKE_BOUND = 10.0
FOLLOW_TIMEOUT = 20.0
NOT_STREAM_MODE = "use stream mode for reading stream files"
_ids = itertools.count()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """/streamfs keeps 4 chunks (256KB); /narrow also gives each reader 1 chunk of room."""
    config = {
        "plugins": {
            "streamfs": [
                {
                    "name": "wide",
                    "enabled": True,
                    "path": "/streamfs",
                    "config": {"ring_buffer_size": "256KB"},
                },
                {
                    "name": "narrow",
                    "enabled": True,
                    "path": "/narrow",
                    "config": {"ring_buffer_size": 262144, "channel_buffer_size": "64kb"},
                },
            ],
            "memfs": {"enabled": True, "path": "/memfs"},
        }
    }
    server = start_server(tmp_path_factory.mktemp("srv-streamfs"), config=config, test_hooks=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def c(srv: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=10) as client:
        yield client


@pytest.fixture
def s() -> str:
    """A fresh stream name under /streamfs."""
    return f"/streamfs/s{next(_ids)}"


def put(c: httpx.Client, path: str, data: bytes) -> httpx.Response:
    r = c.put("/files", params={"path": path}, content=data)
    assert r.status_code == 200, r.text
    return r


def stat(c: httpx.Client, path: str) -> dict[str, Any]:
    r = c.get("/stat", params={"path": path})
    assert r.status_code == 200, r.text
    return r.json()


def readers(c: httpx.Client, path: str) -> int:
    """Active readers; 0 while the stream does not exist yet (a reader's GET creates it,
    and a loaded server may not have read that GET when we first look)."""
    r = c.get("/stat", params={"path": path})
    if r.status_code == 500 and r.json()["error"].startswith("stream not found"):
        return 0
    assert r.status_code == 200, r.text
    return int(r.json()["meta"]["Content"]["active_readers"])


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_readers(c: httpx.Client, path: str, n: int) -> None:
    wait_for(lambda: readers(c, path) == n, f"{n} readers on {path}")


def write_until_no_readers(c: httpx.Client, path: str, chunk: bytes = b"b") -> int:
    """Write ``chunk`` until the stream counts no reader, and return how many writes that
    took. Go notices a hung-up reader only when a write to it fails (or after its 30 s
    read timeout); the reference also polls idle readers and notices within 0.5 s.
    Writing until the count drops holds for both."""
    writes = 0

    def dropped() -> bool:
        nonlocal writes
        put(c, path, chunk)
        writes += 1
        return readers(c, path) == 0

    wait_for(dropped, f"the hung-up readers of {path} to be dropped", timeout=10)
    return writes


def wait_count(c: httpx.Client, key: str, n: int) -> None:
    """Wait until the server has dispatched ``n`` requests of ``key`` (``--test-hooks``)."""
    wait_for(lambda: c.get("/_test/stats").json()["requests"].get(key, 0) >= n, key)


class RawStream:
    """``GET <route>`` on a raw socket; the chunked body is decoded as it arrives."""

    def __init__(self, srv: ServerProcess, route: str) -> None:
        self.sock = socket.create_connection((srv.host, srv.port), timeout=5)
        prefix = srv.url.split("//", 1)[1].split("/", 1)[1]
        req = f"GET /{prefix}{route} HTTP/1.1\r\nHost: x\r\n\r\n"
        self.sock.sendall(req.encode())
        self.raw = bytearray()
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.ended = False  # the terminating 0-size chunk came
        self.closed = False  # the server closed the connection

    @classmethod
    def files(cls, srv: ServerProcess, path: str) -> RawStream:
        return cls(srv, f"/files?path={quote(path, safe='/')}&stream=true")

    def _parse(self) -> None:
        if not self.status:
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.raw[:end]).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ")[1])
            for line in lines[1:]:
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            del self.raw[: end + 4]
        if "content-length" in self.headers:  # a plain (non-chunked) answer
            self.body += self.raw
            self.raw.clear()
            self.ended = len(self.body) >= int(self.headers["content-length"])
            return
        while not self.ended:
            eol = self.raw.find(b"\r\n")
            if eol < 0:
                return
            size = int(bytes(self.raw[:eol]), 16)
            if len(self.raw) < eol + 2 + size + 2:
                return
            self.body += self.raw[eol + 2 : eol + 2 + size]
            del self.raw[: eol + 2 + size + 2]
            if size == 0:
                self.ended = True

    def pump(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        """Receive until ``until()`` holds, the server closes, or the deadline passes."""
        deadline = time.monotonic() + timeout
        while not until() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out: status={self.status} body={bytes(self.body)[:200]!r}"
                )
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.raw += data
            self._parse()

    def read_body(self, n: int, timeout: float = 5.0) -> bytes:
        """Wait until the body holds at least ``n`` bytes; returns it."""
        self.pump(lambda: len(self.body) >= n, timeout)
        assert len(self.body) >= n, f"connection closed early: {bytes(self.body)!r}"
        return bytes(self.body)

    def nothing_yet(self) -> bool:
        """Whether no byte at all (not even the head) has arrived right now."""
        self.sock.settimeout(0.05)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.raw += data
        self._parse()
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- plain file API -----------------------------------------------------------------------


def test_first_write_creates_then_appends(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    assert c.get("/stat", params={"path": s}).status_code == 500
    assert put(c, s, b"hello ").json() == {"message": "Written 6 bytes"}
    info = stat(c, s)
    check_file_info(info)
    assert info["name"] == s.rsplit("/", 1)[1] and info["size"] == 6
    assert info["mode"] == 0o644 and info["isDir"] is False
    assert info["meta"] == {
        "Name": "streamfs",
        "Type": "stream",
        "Content": {"active_readers": "0", "total_written": "6"},
    }
    put(c, s, b"world")
    put(c, s, b"")  # an empty write is accepted (and is a chunk)
    assert stat(c, s)["size"] == 11
    with RawStream.files(srv, s) as r:
        assert r.read_body(11) == b"hello world"


def test_plain_read_is_refused(c: httpx.Client, s: str) -> None:
    put(c, s, b"data")
    for params in ({}, {"offset": "0", "size": "2"}):
        r = c.get("/files", params={"path": s, **params})
        assert r.status_code == 500 and err(r) == NOT_STREAM_MODE
    r = c.get("/files", params={"path": "/streamfs/never-written"})
    assert r.status_code == 500 and err(r) == NOT_STREAM_MODE
    r = c.post("/digest", json={"algorithm": "md5", "path": s})
    assert r.status_code == 500 and err(r) == "failed to calculate digest: " + NOT_STREAM_MODE
    readme = c.get("/files", params={"path": "/streamfs/README"})
    assert readme.status_code == 200 and readme.content.startswith(b"StreamFS")
    assert stat(c, "/streamfs/README")["size"] == len(readme.content)


def test_create_touch_truncate(c: httpx.Client, s: str) -> None:
    assert c.post("/files", params={"path": s}).status_code == 201
    assert stat(c, s)["size"] == 0
    r = c.post("/files", params={"path": s})
    assert r.status_code == 500 and err(r) == f"stream already exists: /{s.split('/')[2]}"
    put(c, s, b"abc")
    r = c.post("/truncate", params={"path": s, "size": "0"})
    assert r.status_code == 200 and r.json() == {"message": "truncated"}
    assert stat(c, s)["size"] == 3
    r = c.post("/touch", params={"path": s})
    assert r.status_code == 500 and err(r) == NOT_STREAM_MODE
    t = s + "-touched"
    assert c.post("/touch", params={"path": t}).json() == {"message": "touched"}
    assert stat(c, t)["size"] == 0


def test_namespace_answers(c: httpx.Client, s: str) -> None:
    put(c, s, b"x")
    rel = "/" + s.split("/")[2]
    cases = [
        (c.post("/directories", params={"path": s + "d"}), "streamfs does not support directories"),
        (c.post("/rename", params={"path": s}, json={"newPath": s + "x"}), None),
        (c.post("/chmod", params={"path": s}, json={"mode": 0o600}), None),
        (c.get("/directories", params={"path": s}), f"not a directory: {rel}"),
        (c.get("/stat", params={"path": s + "nope"}), f"stream not found: {rel}nope"),
        (c.delete("/files", params={"path": s + "nope"}), f"stream not found: {rel}nope"),
    ]
    for r, text in cases:
        assert r.status_code == 500
        if text:
            assert err(r) == text
    assert err(cases[1][0]) == "streamfs does not support rename"
    assert err(cases[2][0]) == "streamfs does not support chmod"
    assert c.delete("/files", params={"path": s}).json() == {"message": "deleted"}
    assert c.get("/stat", params={"path": s}).status_code == 500


def test_list_and_stat_meta(c: httpx.Client, s: str) -> None:
    put(c, s, b"12345")
    root = stat(c, "/streamfs")
    check_file_info(root)
    assert root["name"] == "streamfs" and root["isDir"] and root["mode"] == 0o755
    assert root["meta"] == {"Name": "streamfs", "Type": "", "Content": None}
    files = c.get("/directories", params={"path": "/streamfs"}).json()["files"]
    for f in files:
        check_file_info(f)
    assert files[0]["name"] == "README" and files[0]["mode"] == 0o444
    assert files[0]["meta"] == {"Name": "streamfs", "Type": "doc", "Content": None}
    mine = [f for f in files if f["name"] == s.split("/")[2]]
    assert len(mine) == 1 and mine[0]["size"] == 5 and mine[0]["meta"]["Type"] == "stream"


def test_not_in_default_mounts(client: httpx.Client) -> None:
    assert client.get("/stat", params={"path": "/streamfs"}).status_code == 404


# -- stream=true -------------------------------------------------------------------------


def test_stream_replays_then_follows(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    put(c, s, b"one,")
    put(c, s, b"two,")
    with RawStream.files(srv, s) as r:
        assert r.read_body(8) == b"one,two,"
        assert r.status == 200
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert readers(c, s) == 1
        for word in (b"three,", b"four"):
            # the write itself wakes the reader: not its read timeout (Go: 30 s). The
            # reference's 0.5 s idle tick is too close to a loaded machine's delays to be
            # told apart by the clock, so the bound is set against the timeout.
            start = time.monotonic()
            put(c, s, word)
            got = r.read_body(len(r.body) + len(word), timeout=FOLLOW_TIMEOUT)
            assert time.monotonic() - start < WAKE_BOUND
        assert got == b"one,two,three,four" and not r.ended
    write_until_no_readers(c, s)


def test_reader_before_first_write_waits_for_head(srv: ServerProcess, c: httpx.Client) -> None:
    path = f"/streamfs/early{next(_ids)}"
    with RawStream.files(srv, path) as r:
        wait_readers(c, path, 1)  # opening a stream creates it
        assert stat(c, path)["size"] == 0
        assert r.nothing_yet()  # Go sends the head only with the first byte
        put(c, path, b"first")
        assert r.read_body(5) == b"first" and r.status == 200


def test_ring_buffer_drops_old_chunks(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    for i in range(6):
        put(c, s, f"c{i};".encode())
    with RawStream.files(srv, s) as r:  # 256KB = 4 chunks kept
        assert r.read_body(12) == b"c2;c3;c4;c5;"
        put(c, s, b"live")
        assert r.read_body(16) == b"c2;c3;c4;c5;live"
    assert stat(c, s)["size"] == 6 * 3 + 4
    big = b"B" * (3 * CHUNK)  # one write is one chunk, whatever its size
    put(c, s, big)
    with RawStream.files(srv, s) as r:
        expected = b"c4;c5;live" + big
        assert r.read_body(len(expected)) == expected


def test_narrow_channel_limits_history(srv: ServerProcess, c: httpx.Client) -> None:
    path = f"/narrow/n{next(_ids)}"
    for i in range(3):
        put(c, path, f"h{i};".encode())
    with RawStream.files(srv, path) as r:
        # Go pushes history into a 1-chunk channel without blocking: the oldest fits, and
        # the next one too if the handler drained the channel in between (a race in Go:
        # "h0;h1;" 18 times in 20, "h0;" twice). Never the whole history.
        assert r.read_body(3).startswith(b"h0;")
        wait_readers(c, path, 1)
        put(c, path, b"live")
        r.pump(lambda: r.body.endswith(b"live"))
        assert bytes(r.body) in (b"h0;live", b"h0;h1;live")


def test_two_readers_get_every_byte(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    put(c, s, b"<")
    with RawStream.files(srv, s) as a, RawStream.files(srv, s) as b:
        a.read_body(1)
        b.read_body(1)
        assert readers(c, s) == 2
        sent = b"<"
        for i in range(20):
            piece = f"{i:02d}".encode() * (i + 1)
            put(c, s, piece)
            sent += piece
        assert a.read_body(len(sent)) == sent
        assert b.read_body(len(sent)) == sent


def test_reader_hanging_up_is_noticed(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    put(c, s, b"a")
    r = RawStream.files(srv, s)
    r.read_body(1)
    wait_readers(c, s, 1)
    r.close()
    chunks = [b"a"] + [b"b"] * write_until_no_readers(c, s, b"b")
    history = b"".join(chunks[-4:])  # the ring keeps 4 chunks
    with RawStream.files(srv, s) as r2:
        assert r2.read_body(len(history)) == history
        put(c, s, b"c")
        assert r2.read_body(len(history) + 1) == history + b"c"


def test_chunks_over_64k_are_cut(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB in one write
    with RawStream.files(srv, s) as r:
        wait_readers(c, s, 1)
        put(c, s, data)
        assert r.read_body(len(data)) == data


def test_delete_ends_readers(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    put(c, s, b"old")
    with RawStream.files(srv, s) as r:
        assert r.read_body(3) == b"old"
        assert c.delete("/files", params={"path": s}).status_code == 200
        r.pump(lambda: r.ended)
        assert bytes(r.body) == b"old"
    put(c, s, b"new")  # a fresh stream
    assert stat(c, s)["size"] == 3


def test_stream_on_other_plugin_is_404(c: httpx.Client) -> None:
    put(c, "/memfs/plain", b"x")
    r = c.get("/files", params={"path": "/memfs/plain", "stream": "true"})
    assert r.status_code == 404
    assert err(r) == "filesystem does not support streaming: /memfs/plain"


@pytest.mark.reference_only("tests --test-hooks' request counts, a reference server feature")
def test_test_hooks_count_stream_requests(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    assert c.post("/_test/reset").status_code == 200
    put(c, s, b"x")
    with RawStream.files(srv, s) as r:
        r.read_body(1)
    counts = c.get("/_test/stats").json()["requests"]
    assert counts["GET /files"] == 1 and counts["PUT /files"] == 1


# -- handles -----------------------------------------------------------------------------


def _open(c: httpx.Client, path: str, flags: int) -> int:
    r = c.post("/handles/open", params={"path": path, "flags": str(flags)})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == path and r.json()["flags"] == flags
    return r.json()["handle_id"]


def _read(c: httpx.Client, hid: int, **params: str) -> bytes:
    r = c.get(f"/handles/{hid}/read", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["x-bytes-read"] == str(len(r.content))
    return r.content


def test_handle_reads_history_then_live(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    put(c, s, b"ab")
    put(c, s, b"cd")
    hid = _open(c, s, O_RDONLY)
    assert readers(c, s) == 1
    # Each read takes at most one chunk from the stream.
    assert _read(c, hid, size="10") == b"ab"
    assert _read(c, hid, size="1") == b"c"
    assert _read(c, hid) == b"d"
    put(c, s, b"live")
    assert _read(c, hid, size="10") == b"live"
    # Offsets are positions in what this handle received, not in the stream.
    assert _read(c, hid, offset="0", size="100") == b"abcdlive"
    assert _read(c, hid, offset="4", size="2") == b"li"
    assert c.post(f"/handles/{hid}/seek", params={"offset": "-2", "whence": "2"}).json() == {
        "position": 6
    }
    assert _read(c, hid) == b"ve"
    info = c.get(f"/handles/{hid}/stat").json()
    check_file_info(info)
    assert info["meta"]["Type"] == "stream" and info["size"] == 8
    r = c.post(f"/handles/{hid}/seek", params={"offset": "-1"})
    assert r.status_code == 500 and err(r) == "negative offset"
    assert c.delete(f"/handles/{hid}").json() == {"message": "handle closed"}
    assert readers(c, s) == 0


@pytest.mark.reference_only(
    "needs --test-hooks to know the server holds the read before the write that ends it"
    " (a relay sees only that the request passed)"
)
def test_a_handle_read_with_nothing_buffered_waits_for_the_next_write(
    srv: ServerProcess, c: httpx.Client, s: str
) -> None:
    put(c, s, b"ab")
    hid = _open(c, s, O_RDONLY)
    assert _read(c, hid) == b"ab"
    # Nothing buffered: the read waits (up to 30 s in Go) for the next write.
    c.post("/_test/reset")
    with RawStream(srv, f"/handles/{hid}/read") as blocked:
        wait_count(c, "GET /handles/{id}/read", 1)
        assert blocked.nothing_yet()
        start = time.monotonic()
        put(c, s, b"live")
        blocked.pump(lambda: blocked.ended, timeout=FOLLOW_TIMEOUT)
        assert time.monotonic() - start < WAKE_BOUND  # not at the end of Go's 30 s wait
        assert blocked.status == 200 and bytes(blocked.body) == b"live"
        assert blocked.headers["x-bytes-read"] == "4"
    assert c.delete(f"/handles/{hid}").json() == {"message": "handle closed"}


def test_handle_writes_append(c: httpx.Client, s: str) -> None:
    hid = _open(c, s, O_WRONLY)  # opening creates the stream; write-only opens no reader
    assert stat(c, s)["size"] == 0 and readers(c, s) == 0
    w = c.put(f"/handles/{hid}/write", content=b"abc")
    assert w.json() == {"bytes_written": 3, "position": 0}
    w = c.put(f"/handles/{hid}/write", params={"offset": "100"}, content=b"de")
    assert w.json() == {"bytes_written": 2, "position": 0}  # offsets are ignored
    assert stat(c, s)["size"] == 5
    assert _read(c, hid) == b""  # no reader: EOF at once
    rw = _open(c, s, O_RDWR)
    assert readers(c, s) == 1
    assert _read(c, rw, size="100") == b"abc"
    c.put(f"/handles/{rw}/write", content=b"f")
    assert _read(c, rw, offset="0", size="100") == b"abcdef"
    assert c.delete("/files", params={"path": s}).status_code == 200
    r = c.put(f"/handles/{hid}/write", content=b"x")
    assert r.status_code == 500 and err(r) == "stream is closed"
    assert _read(c, rw, offset="0", size="100") == b"abcdef"
    assert _read(c, rw, offset="6") == b""  # the closed stream gives EOF, no wait
    r = c.get(f"/handles/{rw}/stat")
    assert r.status_code == 500 and err(r) == f"stream not found: /{s.split('/')[2]}"
    for h in (hid, rw):
        assert c.delete(f"/handles/{h}").status_code == 200


def test_handle_on_readme(c: httpx.Client) -> None:
    hid = _open(c, "/streamfs/README", O_RDONLY)
    text = c.get("/files", params={"path": "/streamfs/README"}).content
    assert _read(c, hid, size="8") == text[:8]
    assert _read(c, hid, size="-1") == text[8:]
    assert _read(c, hid) == b""
    r = c.put(f"/handles/{hid}/write", content=b"x")
    assert r.status_code == 500 and err(r) == "stream not initialized"
    c.delete(f"/handles/{hid}")


def test_handle_stream_follows(srv: ServerProcess, c: httpx.Client, s: str) -> None:
    put(c, s, b"xy")
    hid = _open(c, s, O_RDONLY)
    with RawStream(srv, f"/handles/{hid}/stream") as r:
        assert r.read_body(2) == b"xy"
        put(c, s, b"z")
        assert r.read_body(3) == b"xyz" and not r.ended
    # Go's stream handler still holds the handle until a write to the hung-up client
    # fails (the second one, after the peer's reset) or its 30 s read timeout: a DELETE
    # right away waits ~29 s there. Two writes release it in both servers.
    put(c, s, b"1")
    put(c, s, b"2")
    assert c.delete(f"/handles/{hid}").status_code == 200


# -- config and shutdown -----------------------------------------------------------------


def test_config_validation(tmp_path: Path) -> None:
    bad = {
        "/unknown": ({"ring_size": 3}, "unknown configuration parameter(s) 'ring_size' - "),
        "/badsize": (
            {"ring_buffer_size": " 12xb"},
            "invalid ring_buffer_size: invalid size format: 12XB (expected format: number "
            "with optional unit B/KB/MB/GB/TB)",
        ),
        "/badtype": (
            {"channel_buffer_size": True},
            "channel_buffer_size must be a size string (e.g., '512KB') or number",
        ),
    }
    instances = [
        {"name": p, "enabled": True, "path": p, "config": cfg} for p, (cfg, _) in bad.items()
    ]
    instances.append({"name": "ok", "enabled": True, "path": "/ok"})
    srv = start_server(tmp_path, config={"plugins": {"streamfs": instances}}, ready=False)
    try:
        status, body = srv.get_json("/mounts")
        assert status == 200
        mounts = {m["path"]: m for m in body["mounts"]}
        assert mounts["/ok"]["status"] == "mounted" and mounts["/ok"]["pluginName"] == "streamfs"
        for path, (_, text) in bad.items():
            assert mounts[path]["status"] == "failed"
            assert mounts[path]["error"].startswith(text), mounts[path]["error"]
        assert (
            "allowed parameters are: 'channel_buffer_size', 'ring_buffer_size', "
            in (mounts["/unknown"]["error"])
        )
        assert "(96 chunks), ring buffer: 6.0MB (96 chunks)" in srv.stderr()
    finally:
        srv.stop()


def test_size_parsing() -> None:
    assert parse_size("512KB") == 512 * 1024
    assert parse_size(" 1.5mb ") == 3 * 512 * 1024
    assert parse_size("100") == 100
    assert parse_size("1TB") is None  # Validate accepts TB, Initialize does not
    validate_size("1TB")
    with pytest.raises(ValueError):
        validate_size("1 XB")
    assert check_stream_config({}) == (96, 96)
    assert check_stream_config({"ring_buffer_size": "1TB"}) == (96, 96)
    assert check_stream_config({"ring_buffer_size": 1, "channel_buffer_size": -5}) == (
        1,
        1,
    )
    assert check_stream_config({"ring_buffer_size": 200000.0}) == (96, 3)
    assert format_size(512) == "512B" and format_size(6 << 20) == "6.0MB"


@pytest.mark.reference_only(
    "the reference's own SIGTERM handling (it closes its readers and exits 0; Go has no"
    " handler and dies by the signal), and needs --test-hooks to know the read is held"
)
def test_sigterm_with_connected_readers(tmp_path: Path) -> None:
    config = {"plugins": {"streamfs": {"enabled": True, "path": "/streamfs"}}}
    srv = start_server(tmp_path, config=config, test_hooks=True)
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            put(c, "/streamfs/live", b"x")
            r = RawStream.files(srv, "/streamfs/live")
            r.read_body(1)
            idle = RawStream.files(srv, "/streamfs/idle")  # blocked before its first byte
            hid = _open(c, "/streamfs/idle", O_RDONLY)
            wait_readers(c, "/streamfs/idle", 2)
            blocked = RawStream(srv, f"/handles/{hid}/read")  # waits for a chunk
            wait_count(c, "GET /handles/{id}/read", 1)
        assert srv.proc is not None
        start = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 2
        for conn in (r, idle, blocked):
            conn.pump(lambda: False)  # returns once the server has closed the connection
            assert conn.closed and not conn.ended  # dropped, not a clean end of body
            conn.close()
    finally:
        srv.stop()
