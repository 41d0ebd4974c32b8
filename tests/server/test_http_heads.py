"""Malformed and ambiguous request heads, sent on raw sockets: Go's answers.

These are the request-smuggling shapes a proxy in front of the server may let through;
the server must refuse each one (and close) rather than guess a framing.
"""

from __future__ import annotations

import socket

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agfs_fuse.server.httprequest import (
    BadRequest,
    BodyError,
    BodyTooLarge,
    Input,
    read_request,
)
from tests.server.helpers import raw_exchange
from tests.support.server import ServerProcess

PUT = b"PUT /api/v1/files?path=/memfs/smuggle HTTP/1.1\r\nHost: x\r\n"
TRAILERS = b"X-Trailer: " + b"y" * 60 + b"\r\n"


@pytest.mark.parametrize(
    ("name", "request_bytes", "status"),
    [
        (
            "repeated Transfer-Encoding",
            PUT + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            501,
        ),
        ("NUL in a header value", PUT + b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n", 400),
        ("bare CR in a header value", PUT + b"X-A: a\rb\r\nContent-Length: 0\r\n\r\n", 400),
        ("space in a header name", PUT + b"Content Length: 3\r\n\r\nabc", 400),
        ("space before the colon", PUT + b"Content-Length : 3\r\n\r\nabc", 400),
        ("superscript digit length", PUT + "Content-Length: ²\r\n\r\n".encode(), 400),
        ("signed length", PUT + b"Content-Length: +3\r\n\r\nabc", 400),
        ("conflicting lengths", PUT + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        ("a list of equal lengths", PUT + b"Content-Length: 3, 3\r\n\r\nabc", 400),
        ("a space in the Host", b"GET /api/v1/health HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("a slash in the Host", b"GET /api/v1/health HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        ("HTTP/2.0 request line", b"GET /api/v1/health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("space in the target", b"GET /api/v1/he alth HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (
            "endless chunked trailers",
            PUT + b"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n" + TRAILERS * 2000 + b"\r\n",
            400,
        ),
    ],
)
@pytest.mark.timeout(20)
def test_bad_heads_are_refused(
    server: ServerProcess, name: str, request_bytes: bytes, status: int
) -> None:
    answer = raw_exchange("127.0.0.1", server.port, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (name, answer[:200])
    assert b"Connection: close" in answer.split(b"\r\n\r\n", 1)[0]


LENGTH_AND_CHUNKED = (
    PUT + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
)
SMUGGLED = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n"


def test_length_and_chunked_together_the_body_is_chunked(server: ServerProcess) -> None:
    """RFC 9112 6.1, as Go does it: chunked wins over Content-Length, so the body is the
    one byte of its chunk, never the first 6 bytes of the framing."""
    answer = raw_exchange("127.0.0.1", server.port, LENGTH_AND_CHUNKED)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.split(b"\r\n\r\n", 1)[1].startswith(b'{"message":"Written 1 bytes"}')


@pytest.mark.reference_only(
    "a hardening beyond Go (README, Reference server vs Go): Go serves a request behind"
    " such a body on the same connection, the reference closes after the answer"
)
def test_length_and_chunked_together_closes_after_the_answer(server: ServerProcess) -> None:
    """RFC 9112 6.1 lets a server close after such a request: a request smuggled behind
    the body is never served."""
    answer = raw_exchange("127.0.0.1", server.port, LENGTH_AND_CHUNKED + SMUGGLED)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in answer
    assert answer.count(b"HTTP/1.1 ") == 1


def test_missing_host_keeps_go_reason(server: ServerProcess) -> None:
    answer = raw_exchange("127.0.0.1", server.port, b"GET /api/v1/health HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert answer.endswith(b"400 Bad Request: missing required Host header")


@pytest.mark.parametrize(
    ("request_bytes", "status_line", "body"),
    [
        (
            b"GET /api/v1/health HTTP/1.1\r\n\r\n",
            "400 Bad Request: missing required Host header",
            None,
        ),
        (
            b"GET /api/v1/health HTTP/1.1\r\nHost: a b\r\n\r\n",
            "400 Bad Request: malformed Host header",
            None,
        ),
        (
            b"GET /api/v1/health HTTP/2.0\r\nHost: x\r\n\r\n",
            "505 HTTP Version Not Supported: unsupported protocol version",
            None,
        ),
        (b"GET foo HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request", None),
        (
            PUT + b"Transfer-Encoding: gzip\r\n\r\n",
            "501 Not Implemented",
            "Unsupported transfer encoding",
        ),
    ],
)
@pytest.mark.timeout(20)
def test_refusals_word_status_line_and_body_like_go(
    server: ServerProcess, request_bytes: bytes, status_line: str, body: str | None
) -> None:
    """Go writes its reason into the status line and repeats the line as the body; only
    an unknown framing gets a bare sentence as its body."""
    answer = raw_exchange("127.0.0.1", server.port, request_bytes)
    head, _, got_body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n", 1)[0] == b"HTTP/1.1 " + status_line.encode()
    assert got_body == (body or status_line).encode()


@pytest.mark.timeout(20)
def test_http10_body_is_framed_by_length_alone(
    server: ServerProcess, client: httpx.Client, ws: str
) -> None:
    """Go reads Transfer-Encoding only from HTTP/1.1 on: an HTTP/1.0 body that names both
    framings is its Content-Length bytes, chunk syntax included, and one naming only
    ``chunked`` is empty. The answer's status line says HTTP/1.0, as Go's does."""
    for name, framing, stored in [
        ("both", b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"1\r\na\r\n"),
        ("chunked", b"Transfer-Encoding: chunked\r\n", b""),
    ]:
        request = (
            f"PUT /api/v1/files?path={ws}/{name} HTTP/1.0\r\nHost: x\r\n".encode()
            + framing
            + b"\r\n1\r\na\r\n0\r\n\r\n"
        )
        answer = raw_exchange("127.0.0.1", server.port, request)
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n"), (name, answer[:200])
        assert client.get("/files", params={"path": f"{ws}/{name}"}).content == stored


# -- the parser alone, fuzzed --------------------------------------------------------------


class _Bytes:
    """A socket file over fixed bytes, served in small pieces like a slow client."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data = data
        self.piece = piece

    def read1(self, n: int) -> bytes:
        out, self.data = self.data[: min(n, self.piece)], self.data[min(n, self.piece) :]
        return out

    def readinto(self, view: memoryview) -> int:
        out = self.read1(len(view))
        view[: len(out)] = out
        return len(out)


_HEAD_PARTS = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Host: x\r\n",
                b"Content-Length: 3\r\n",
                b"Content-Length: 5\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"Transfer-Encoding: gzip\r\n",
                b"Expect: 100-continue\r\n",
                b"Connection: close\r\n",
                b"\r\n",
                b" folded\r\n",
                b"3\r\nabc\r\n0\r\n\r\n",
            ]
        ),
        st.binary(max_size=24),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=st.sampled_from([b"PUT /api/v1/files?path=/x HTTP/1.1\r\n", b"GET / HTTP/1.0\r\n"]),
    parts=_HEAD_PARTS,
    piece=st.integers(min_value=1, max_value=64),
)
def test_parser_fuzz_answers_or_refuses_never_crashes(
    line: bytes, parts: list[bytes], piece: int
) -> None:
    """Any bytes: a request with a body that reads or fails cleanly, a ``BadRequest``,
    or ``None`` at end of input; never another exception, never a hang."""
    data = line + b"".join(parts)
    a, b = socket.socketpair()
    try:
        source = Input(_Bytes(data, piece))
        for _ in range(4):  # a few pipelined requests at most
            try:
                request = read_request(source, a)
            except BadRequest as exc:
                assert exc.status in (400, 431, 501, 505)
                return
            if request is None:
                return
            try:
                body = request.body.read_all(1 << 20)
            except (BodyError, BodyTooLarge):
                return
            assert isinstance(body, bytearray)
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(20)
def test_http10_connection_header_like_go(server: ServerProcess) -> None:
    """An HTTP/1.0 client keeps its connection only when the answer says
    ``Connection: keep-alive``; Go says so, and sends no ``Connection`` header when it
    closes an HTTP/1.0 connection (closing is that version's default)."""
    kept = b"GET /api/v1/health HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    last = b"GET /api/v1/health HTTP/1.0\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(kept + last)
        answer = b""
        while chunk := s.recv(65536):  # a server that never closes times out: an error
            answer += chunk
    first, second = answer.split(b"HTTP/1.0 200 OK\r\n")[1:]
    assert b"\r\nConnection: keep-alive\r\n" in first.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    assert b"Connection:" not in second.split(b"\r\n\r\n", 1)[0]
