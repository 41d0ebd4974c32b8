"""HTTP/1.1 framing on ``http.server``, shaped like Go's ``net/http`` where clients can tell.

``BaseHTTPRequestHandler`` parses headers with the email package and writes through a
buffered file; both are slow, so ``handle`` reads the request head itself and answers
with ``sendmsg``/``sendfile`` straight on the socket (TCP_NODELAY, no extra copies).

What a client sees, as with Go:

- keep-alive by default; request bodies with ``Content-Length`` or ``chunked``; a body the
  handler ignored is drained (up to 256 KiB) so the connection stays usable, else closed;
- bodies under 2048 bytes go out with ``Content-Length``, bigger ones ``chunked``;
- ``Expect: 100-continue`` is answered when the handler first reads the body;
- a body over the limit: ``limit + 1`` bytes are read, then 413 with ``Connection: close``,
  the write side is shut and the socket closed 500 ms later with the rest unread, so a
  client still sending gets EPIPE or a reset (Go's ``MaxBytesReader`` and
  ``closeWriteAndWait``), while the 413 is readable on its socket;
- a malformed request head: ``400 Bad Request`` in plain text and the connection closed.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import re
import select
import socket
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote_to_bytes

from agfs_fuse.server.errors import AbortConnection
from agfs_fuse.server.plugins.base import Bytes, FileRange

log = logging.getLogger("agfs_fuse.server.http")

MAX_HEADER_BYTES = 1 << 20
SMALL_BODY = 2048
POST_HANDLER_DRAIN = 256 * 1024
LINGER_SECONDS = 0.5
_HEX = re.compile(rb"^[0-9A-Fa-f]+$")
_PCT_OK = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadRequest(Exception):  # noqa: N818 - mirrors Go's "400 Bad Request: <reason>"
    """The request head cannot be parsed: plain-text error, then close."""

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


# -- requests ----------------------------------------------------------------------------


class Body:
    """The request body, read lazily and at most once."""

    def __init__(
        self, rfile: Any, sock: socket.socket, length: int | None, chunked: bool, expect: bool
    ) -> None:
        self.rfile = rfile
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

    def _line(self) -> bytes:
        line = self.rfile.readline(4098)
        if not line.endswith(b"\n"):
            raise BodyError("unexpected EOF")
        return line

    def _chunk_size(self) -> int:
        line = self._line().rstrip(b"\r\n").split(b";", 1)[0].strip()
        if not _HEX.match(line) or len(line) > 16:
            raise BodyError("malformed chunked encoding")
        return int(line, 16)

    def _end_chunk(self) -> None:
        if self.rfile.read(2) not in (b"\r\n",):
            raise BodyError("malformed chunked encoding")

    def _trailers(self) -> None:
        while self._line() not in (b"\r\n", b"\n"):
            pass

    def _discard(self, count: int) -> None:
        """Read and drop up to ``count`` bytes of a ``Content-Length`` body."""
        while count > 0:
            data = self.rfile.read(min(count, 65536))
            if not data:
                raise BodyError("unexpected EOF")
            count -= len(data)
            self.remaining -= len(data)

    def read_all(self, limit: int) -> bytearray:
        """The whole body; ``BodyTooLarge`` once ``limit + 1`` bytes have been read.

        Like Go's ``http.MaxBytesReader``, the excess is found by reading, not from the
        ``Content-Length``: the client gets its ``100 Continue`` and may send ``limit + 1``
        bytes; the rest stays unread and the connection is then closed under it.
        """
        if self.done:
            return bytearray()
        self._start()
        if not self.chunked and self.remaining > limit:
            self._discard(limit + 1)
            raise BodyTooLarge()
        if not self.chunked:
            buf = bytearray(self.remaining)
            view = memoryview(buf)
            got = 0
            while got < len(buf):
                n = self.rfile.readinto(view[got:])
                if not n:
                    raise BodyError("unexpected EOF")
                got += n
            self.remaining = 0
            self.done = True
            return buf
        buf = bytearray()
        while True:
            size = self._chunk_size()
            if size == 0:
                self._trailers()
                self.done = True
                return buf
            if len(buf) + size > limit:
                self.rfile.read(limit + 1 - len(buf))
                raise BodyTooLarge()
            data = self.rfile.read(size)
            if len(data) != size:
                raise BodyError("unexpected EOF")
            buf += data
            self._end_chunk()

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
                while self.remaining:
                    data = self.rfile.read(min(self.remaining, 65536))
                    if not data:
                        return False
                    self.remaining -= len(data)
                self.done = True
                return True
            while True:
                size = self._chunk_size()
                if size == 0:
                    self._trailers()
                    self.done = True
                    return True
                budget -= size
                if budget < 0:
                    return False
                if len(self.rfile.read(size)) != size:
                    return False
                self._end_chunk()
        except (BodyError, OSError):
            return False


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


def read_request(rfile: Any, sock: socket.socket) -> Request | None:
    """Read one request head; ``None`` when the client closed the connection."""
    line = rfile.readline(MAX_HEADER_BYTES + 1)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(MAX_HEADER_BYTES + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise BadRequest(431 if len(line) > MAX_HEADER_BYTES else 400)
    parts = line.decode("latin-1").rstrip("\r\n").split(" ")
    if len(parts) != 3 or not parts[0] or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed HTTP request")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505 if version.startswith("HTTP/") else 400)
    headers: dict[str, str] = {}
    total = len(line)
    while True:
        h = rfile.readline(MAX_HEADER_BYTES + 1)
        total += len(h)
        if total > MAX_HEADER_BYTES:
            raise BadRequest(431)
        if not h.endswith(b"\n"):
            raise BadRequest(400, "unexpected EOF")
        if h in (b"\r\n", b"\n"):
            break
        name, sep, value = h.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip() or name[0] in " \t":
            raise BadRequest(400, "malformed MIME header line")
        key = name.lower()
        value = value.strip()
        if key == "content-length" and key in headers and headers[key] != value:
            raise BadRequest(400, "message cannot contain multiple Content-Length headers")
        headers.setdefault(key, value)
    if version == "HTTP/1.1" and "host" not in headers:
        raise BadRequest(400, "missing required Host header")

    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    if not target.startswith("/"):
        raise BadRequest(400, "invalid URI")
    raw_path, _, raw_query = target.partition("?")
    if "%" in raw_path and _PCT_OK.search(raw_path):
        raise BadRequest(400, "invalid URI")
    path = unquote_to_bytes(raw_path).decode("utf-8", "surrogateescape")

    te = headers.get("transfer-encoding", "").lower()
    chunked = False
    length: int | None = None
    if te:
        if te != "chunked":
            raise BadRequest(501, "unsupported transfer encoding")
        chunked = True
    elif "content-length" in headers:
        cl = headers["content-length"]
        if not cl.isdigit():
            raise BadRequest(400, "bad Content-Length")
        length = int(cl)
    expect = headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1"
    body = Body(rfile, sock, length, chunked, expect and (chunked or bool(length)))
    return Request(method, path, raw_query, version, headers, body)


# -- responses ---------------------------------------------------------------------------


class Response:
    """What a route answers. Exactly one of ``body``/``stream``/``file_range`` is used."""

    __slots__ = (
        "status",
        "body",
        "content_type",
        "headers",
        "stream",
        "file_range",
        "close",
        "hold_head",
    )

    def __init__(
        self,
        status: int = 200,
        body: Bytes = b"",
        content_type: str | None = "application/json",
        headers: list[tuple[str, str]] | None = None,
        stream: Iterator[Bytes] | None = None,
        file_range: FileRange | None = None,
        close: bool = False,
        hold_head: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []
        self.stream = stream
        self.file_range = file_range
        self.close = close
        #: Streams only: send the head with the first piece, not before. Go's handlers
        #: call ``WriteHeader`` and then ``Flush`` only after a piece, so a client of an
        #: idle stream waits for the response head until the first byte.
        self.hold_head = hold_head


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code " + str(status)


def sendv(sock: socket.socket, bufs: list[Bytes], flags: int = 0) -> None:
    """Send every buffer with as few syscalls as possible and no copies."""
    views = [memoryview(b).cast("B") for b in bufs if len(b)]
    while views:
        n = sock.sendmsg(views, [], flags)
        while n:
            first = views[0]
            if n >= len(first):
                n -= len(first)
                views.pop(0)
            else:
                views[0] = first[n:]
                n = 0


_HANGUP_EVENTS = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


def peer_hung_up(sock: socket.socket) -> bool:
    """Whether the client closed its side (checked without reading its pending data)."""
    poller = select.poll()
    poller.register(sock, _HANGUP_EVENTS)
    try:
        return bool(poller.poll(0))
    except OSError:
        return True


def _send_file(sock: socket.socket, fr: FileRange) -> None:
    out = sock.fileno()
    offset, left = fr.offset, fr.length
    while left:
        sent = os.sendfile(out, fr.fd, offset, min(left, 1 << 30))
        if sent == 0:  # the file shrank under us: the framing cannot be completed
            raise AbortConnection("file truncated while sending")
        offset += sent
        left -= sent


def write_response(sock: socket.socket, req: Request, resp: Response) -> bool:
    """Send ``resp``; returns whether the connection can serve another request."""
    keep = not req.close and not resp.close
    if keep and not req.body.drain():
        keep = False
    http10 = req.version == "HTTP/1.0"
    head_only = req.method == "HEAD"
    lines = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}"]
    if resp.content_type:
        lines.append(f"Content-Type: {resp.content_type}")
    lines.append(f"Date: {_http_date()}")
    lines.extend(f"{k}: {v}" for k, v in resp.headers)

    try:
        if resp.stream is not None or resp.file_range is not None:
            if http10:
                keep = False
            else:
                lines.append("Transfer-Encoding: chunked")
            if not keep:
                lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if head_only:
                sendv(sock, [head])
                return keep
            if resp.file_range is not None:
                fr = resp.file_range
                prefix = b"" if http10 else f"{fr.length:x}\r\n".encode()
                sendv(sock, [head, prefix], socket.MSG_MORE)
                _send_file(sock, fr)
                sendv(sock, [] if http10 else [b"\r\n0\r\n\r\n"])
                return keep
            held: list[Bytes] = [head] if resp.hold_head else []
            if not held:
                sendv(sock, [head])
            assert resp.stream is not None
            try:
                for chunk in resp.stream:
                    if not len(chunk):  # an idle stream's tick: is the client still there?
                        if peer_hung_up(sock):
                            raise ConnectionResetError("client hung up")
                        continue
                    if http10:
                        sendv(sock, [*held, chunk])
                    else:
                        sendv(sock, [*held, f"{len(chunk):x}\r\n".encode(), chunk, b"\r\n"])
                    held = []
            except (OSError, AbortConnection):
                raise
            except Exception as exc:  # a failure mid-stream just ends the body, as in Go
                log.debug("stream ended early: %s", exc)
            sendv(sock, held if http10 else [*held, b"0\r\n\r\n"])
            return keep

        body = resp.body
        n = len(body)
        if n < SMALL_BODY or http10:
            lines.append(f"Content-Length: {n}")
            if not keep:
                lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            sendv(sock, [head] if head_only else [head, body])
        else:
            lines.append("Transfer-Encoding: chunked")
            if not keep:
                lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if head_only:
                sendv(sock, [head])
            else:
                sendv(sock, [head, f"{n:x}\r\n".encode(), body, b"\r\n0\r\n\r\n"])
        return keep
    finally:
        if resp.file_range is not None:
            resp.file_range.close()
        if isinstance(resp.stream, Iterator) and hasattr(resp.stream, "close"):
            resp.stream.close()  # type: ignore[union-attr]


def send_bad_request(sock: socket.socket, exc: BadRequest) -> None:
    """Go's plain-text answer to an unparsable request, then the connection closes."""
    text = f"{exc.status} {_reason(exc.status)}"
    body = text + (f": {exc.reason}" if exc.reason else "")
    head = (
        f"HTTP/1.1 {text}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        sock.sendall((head + body).encode("latin-1", "replace"))


def close_write_and_wait(sock: socket.socket) -> None:
    """Go's ``closeWriteAndWait`` after a body it stopped reading (over the limit, or too
    big to drain): shut our side, wait 500 ms *without reading*, then close.

    The client reads our answer meanwhile; one still sending fills the socket buffers and
    then gets a reset when we close with its bytes unread (EPIPE or ECONNRESET on its
    send), exactly as from the Go server. A client must read the answer after a failed
    send; a reference that swallowed the rest of the body would hide that bug.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        time.sleep(LINGER_SECONDS)


def linger_close(sock: socket.socket) -> None:
    """Shut our side, let the peer read what we sent, then close (after a bad head)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            if not sock.recv(65536):
                break
    except OSError:
        pass


class RequestHandler(BaseHTTPRequestHandler):
    """One connection: requests are served in order until either side closes."""

    protocol_version = "HTTP/1.1"
    rbufsize = 256 * 1024
    wbufsize = 0
    disable_nagle_algorithm = True

    def handle(self) -> None:
        sock: socket.socket = self.connection
        app = self.server.app  # type: ignore[attr-defined]
        while True:
            try:
                req = read_request(self.rfile, sock)
            except BadRequest as exc:
                send_bad_request(sock, exc)
                linger_close(sock)
                return
            except (OSError, ValueError):
                return
            if req is None:
                return
            try:
                resp = app.dispatch(req)
            except AbortConnection as exc:
                log.warning("%s %s: handler aborted: %s", req.method, req.path, exc)
                return
            except Exception:
                log.exception("%s %s: unexpected error", req.method, req.path)
                return
            try:
                keep = write_response(sock, req, resp)
            except AbortConnection as exc:
                log.warning("%s %s: response aborted: %s", req.method, req.path, exc)
                return
            except OSError as exc:
                log.debug("%s %s: client went away: %s", req.method, req.path, exc)
                return
            if not keep:
                if not req.body.done:
                    close_write_and_wait(sock)
                return

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug(format, *args)
