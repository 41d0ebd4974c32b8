"""Reading HTTP/1.1 requests: heads and chunked bodies parsed by h11, Go's policy on top.

Request parsing is where smuggling hides (repeated or conflicting framing headers, NUL
or bare CR in values, bad header names, ``Content-Length: ²``, endless trailers), so it
is h11's job, not hand-written code. On top of h11 sit the choices Go's ``net/http``
makes that h11 leaves open:

- a request with both ``Content-Length`` and ``Transfer-Encoding`` is read as chunked and
  its connection closed after the answer (RFC 9112 6.1);
- HTTP/1.x with x > 1 is served as 1.1, HTTP/2+ is 505, a missing ``Host`` is
  ``400 Bad Request: missing required Host header``, a framing other than ``chunked`` 501;
- an HTTP/1.0 body is framed by ``Content-Length`` alone (Go ignores its
  ``Transfer-Encoding``); a ``Content-Length`` list (``3, 3``) is a 400 and a ``Host``
  with bytes outside Go's set ``400 Bad Request: malformed Host header``;
- blank lines before a request line are skipped; heads may take 1 MiB (431 beyond);
- chunk-size lines and trailers are limited to 4 KiB, as by Go's ``bufio`` buffer;
- ``Content-Length`` bodies, already framed, are read straight from the socket buffer
  (no per-byte parsing, so uploads keep their speed).
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import unquote_to_bytes

import h11

MAX_HEADER_BYTES = 1 << 20
#: Go's chunked reader fails on a chunk line or trailer that outgrows its 4 KiB buffer.
MAX_CHUNK_LINE = 4096
POST_HANDLER_DRAIN = 256 * 1024
#: Bytes handed to h11 at a time: h11 copies each piece in and the body out of its buffer,
#: and pieces that stay in the CPU cache make chunked uploads ~30% faster than 256 KiB.
RECV_SIZE = 64 * 1024
_PCT_OK = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BLANK_LINES = re.compile(rb"^(?:\r?\n)+")
#: A ``Content-Length`` line holding a list (``3, 3``): h11 folds equal values into one,
#: Go's ``strconv.ParseUint`` refuses the line with a 400.
_LISTED_LENGTH = re.compile(rb"(?im)^content-length:[^\r\n]*,")
#: The bytes Go's ``httpguts.ValidHostHeader`` lets through in a ``Host`` header.
_HOST_BYTES = frozenset(
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!$%&()*+,-.:;=[]'_~"
)


class BadRequest(Exception):  # noqa: N818 - mirrors Go's "400 Bad Request: <reason>"
    """The request head cannot be served: plain-text error, then close."""

    def __init__(self, status: int = 400, reason: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BodyTooLarge(Exception):  # noqa: N818
    """The request body exceeds the server's limit."""


class BodyError(Exception):
    """The request body is malformed or was cut short."""


# -- query strings -----------------------------------------------------------------------


def _query_unescape(s: str) -> str | None:
    if "%" in s and _PCT_OK.search(s):
        return None
    raw = unquote_to_bytes(s.replace("+", " "))
    return raw.decode("utf-8", "surrogateescape")


def parse_query(raw: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery``: ``&`` only, ``+`` is a space, bad pairs are dropped."""
    out: dict[str, list[str]] = {}
    for pair in raw.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        k = _query_unescape(key)
        v = _query_unescape(value)
        if k is None or v is None:
            continue
        out.setdefault(k, []).append(v)
    return out


# -- the connection's input --------------------------------------------------------------


class Input:
    """A connection's incoming bytes: a buffered socket file plus bytes pushed back.

    h11 reads ahead; what it read past one message (the next pipelined request, or
    the start of a ``Content-Length`` body) is pushed back here for whoever reads next.
    """

    def __init__(self, rfile: Any) -> None:
        self.rfile = rfile
        self.pending = b""

    def read_some(self) -> bytes:
        """Whatever is available (at least one byte), ``b""`` at end of stream."""
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        return self.rfile.read1(RECV_SIZE)

    def readinto(self, view: memoryview) -> int:
        """Fill part of ``view``; 0 at end of stream."""
        if self.pending:
            n = min(len(view), len(self.pending))
            view[:n] = self.pending[:n]
            self.pending = self.pending[n:]
            return n
        return self.rfile.readinto(view)

    def unread(self, data: bytes) -> None:
        """Push ``data`` back in front of what is still unread."""
        self.pending = data + self.pending


# -- bodies ------------------------------------------------------------------------------


class Body:
    """The request body, read lazily and at most once."""

    def __init__(
        self,
        source: Input,
        parser: h11.Connection,
        sock: socket.socket,
        length: int | None,
        chunked: bool,
        expect: bool,
    ) -> None:
        self.source = source
        self.parser = parser
        self.sock = sock
        self.chunked = chunked
        self.remaining = length or 0
        self.expect = expect
        self.done = not chunked and not length
        self.touched = False

    def _start(self) -> None:
        self.touched = True
        if self.expect:
            self.expect = False
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _discard(self, count: int) -> None:
        """Read and drop up to ``count`` bytes of a ``Content-Length`` body."""
        scratch = memoryview(bytearray(min(count, 65536)))
        while count > 0:
            n = self.source.readinto(scratch[: min(count, len(scratch))])
            if not n:
                raise BodyError("unexpected EOF")
            count -= n
            self.remaining -= n

    def _chunks(self) -> Any:
        """The decoded pieces of a chunked body, as h11 parses them."""
        parser = self.parser
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise BodyError(str(exc)) from None
            if event is h11.NEED_DATA:
                if len(parser.trailing_data[0]) > MAX_CHUNK_LINE:
                    raise BodyError("chunk line or trailer too long")
                parser.receive_data(self.source.read_some())
            elif isinstance(event, h11.Data):
                yield event.data
            elif isinstance(event, h11.EndOfMessage):
                if sum(len(k) + len(v) + 4 for k, v in event.headers) > MAX_CHUNK_LINE:
                    raise BodyError("trailer too long")
                self.source.unread(parser.trailing_data[0])
                self.done = True
                return

    def read_all(self, limit: int) -> bytearray:
        """The whole body; ``BodyTooLarge`` once ``limit + 1`` bytes have been read.

        Like Go's ``http.MaxBytesReader``, the excess is found by reading, not from the
        ``Content-Length``: the client gets its ``100 Continue`` and may send ``limit + 1``
        bytes; the rest stays unread and the connection is then closed under it.
        """
        if self.done:
            return bytearray()
        self._start()
        if not self.chunked:
            if self.remaining > limit:
                self._discard(limit + 1)
                raise BodyTooLarge()
            buf = bytearray(self.remaining)
            view = memoryview(buf)
            got = 0
            while got < len(buf):
                n = self.source.readinto(view[got:])
                if not n:
                    raise BodyError("unexpected EOF")
                got += n
            self.remaining = 0
            self.done = True
            return buf
        buf = bytearray()
        for data in self._chunks():
            buf += data
            if len(buf) > limit:
                raise BodyTooLarge()
        return buf

    def drain(self, budget: int = POST_HANDLER_DRAIN) -> bool:
        """Discard an unread body if it is small; ``False`` if the connection must close."""
        if self.done:
            return True
        if not self.touched and self.expect:
            return False  # the client waits for 100-continue that will never come
        try:
            if not self.chunked:
                if self.remaining > budget:
                    return False
                self._discard(self.remaining)
                self.done = True
                return True
            for data in self._chunks():
                budget -= len(data)
                if budget < 0:
                    return False
            return True
        except (BodyError, OSError):
            return False


# -- requests ----------------------------------------------------------------------------


class Request:
    """One parsed request."""

    __slots__ = ("method", "path", "raw_query", "version", "headers", "body", "_query", "close")

    def __init__(
        self,
        method: str,
        path: str,
        raw_query: str,
        version: str,
        headers: dict[str, str],
        body: Body,
    ) -> None:
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.version = version
        self.headers = headers
        self.body = body
        self._query: dict[str, list[str]] | None = None
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.close = "keep-alive" not in conn
        else:
            self.close = "close" in conn

    @property
    def query(self) -> dict[str, list[str]]:
        """Query parameters, parsed like Go."""
        if self._query is None:
            self._query = parse_query(self.raw_query)
        return self._query

    def arg(self, name: str) -> str:
        """``r.URL.Query().Get(name)``: the first value or ``""``."""
        values = self.query.get(name)
        return values[0] if values else ""


def _bad_head(exc: h11.RemoteProtocolError) -> BadRequest:
    """h11's refusal as Go words it (Go gives most malformed heads no reason at all)."""
    status = exc.error_status_hint
    if status == 501:
        return BadRequest(501, "Unsupported transfer encoding")
    if status == 431:
        return BadRequest(431)
    if str(exc).startswith("Missing mandatory Host"):
        return BadRequest(400, "missing required Host header")
    return BadRequest(400)


def _next_head(source: Input, parser: h11.Connection) -> tuple[h11.Request, bytes] | None:
    """The next request head and its raw bytes; ``None`` if the client closed first.

    The raw head is kept for the one check h11 makes impossible on its result: it folds
    a ``Content-Length`` list into a single value.
    """
    while True:  # blank lines before a request line are skipped, as by Go
        data = source.read_some()
        if not data:
            return None
        data = _BLANK_LINES.sub(b"", data)
        if data:
            break
    received = bytearray(data)
    parser.receive_data(data)
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            raise _bad_head(exc) from None
        if isinstance(event, h11.Request):
            return event, bytes(received[: len(received) - len(parser.trailing_data[0])])
        data = source.read_some()
        received += data
        parser.receive_data(data)  # b"": h11 reports the truncated head


def _check_go_head(head: bytes, headers: dict[str, str]) -> None:
    """Refuse what h11 accepts but Go's ``net/http`` answers with a 400."""
    if "content-length" in headers and _LISTED_LENGTH.search(head):
        raise BadRequest(400)
    host = headers.get("host")
    if host is not None and not _HOST_BYTES.issuperset(host.encode("latin-1")):
        raise BadRequest(400, "malformed Host header")


def read_request(source: Input, sock: socket.socket) -> Request | None:
    """Read one request head; ``None`` when the client closed the connection."""
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    got = _next_head(source, parser)
    if got is None:
        return None
    event, head = got
    major, _, _minor = event.http_version.decode("ascii").partition(".")
    if major != "1":
        raise BadRequest(505, "unsupported protocol version")
    version = "HTTP/1.0" if event.http_version == b"1.0" else "HTTP/1.1"
    headers: dict[str, str] = {}
    for name, value in event.headers:
        headers.setdefault(name.decode("ascii"), value.decode("latin-1"))
    _check_go_head(head, headers)

    target = event.target.decode("latin-1")
    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if not target.startswith("/"):
        raise BadRequest(400)  # Go gives no reason
    raw_path, _, raw_query = target.partition("?")
    if "%" in raw_path and _PCT_OK.search(raw_path):
        raise BadRequest(400)  # Go gives no reason
    path = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape")

    # Go reads Transfer-Encoding only from HTTP/1.1 on: an HTTP/1.0 body is framed by
    # Content-Length alone (or is empty), whatever h11 made of it.
    chunked = "transfer-encoding" in headers and version == "HTTP/1.1"
    length = None if chunked else int(headers.get("content-length", "0"))
    if not chunked:
        # h11 read ahead into the body or the next request: the rest is ours to frame.
        source.unread(parser.trailing_data[0])
    expect = headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1"
    body = Body(source, parser, sock, length, chunked, expect and (chunked or bool(length)))
    request = Request(event.method.decode("ascii"), path, raw_query, version, headers, body)
    if chunked and "content-length" in headers:
        request.close = True  # RFC 9112 6.1: both framings in one request, never reuse
    return request
