"""HTTP/1.1 framing on ``http.server``, shaped like Go's ``net/http`` where clients can tell.

``BaseHTTPRequestHandler`` parses headers with the email package and writes through a
buffered file; both are slow, so ``handle`` reads requests with h11 (``httprequest.py``)
and answers with ``sendmsg``/``sendfile`` straight on the socket (TCP_NODELAY, no
extra copies).

What a client sees, as with Go:

- keep-alive by default; request bodies with ``Content-Length`` or ``chunked``; a body the
  handler ignored is drained (up to 256 KiB) so the connection stays usable, else closed;
- bodies under 2048 bytes go out with ``Content-Length``, bigger ones ``chunked``;
- ``Expect: 100-continue`` is answered when the handler first reads the body;
- a body over the limit: ``limit + 1`` bytes are read, then 413 with ``Connection: close``,
  the write side is shut and the socket closed 500 ms later with the rest unread, so a
  client still sending gets EPIPE or a reset (Go's ``MaxBytesReader`` and
  ``closeWriteAndWait``), while the 413 is readable on its socket;
- a malformed request head: ``400 Bad Request`` in plain text (431, 501 or 505 where Go
  uses them) and the connection closed.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import select
import socket
import time
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from agfs_fuse.server.errors import AbortConnection
from agfs_fuse.server.httprequest import BadRequest, Input, Request, read_request
from agfs_fuse.server.plugins.base import Bytes, FileRange

log = logging.getLogger("agfs_fuse.server.http")

SMALL_BODY = 2048
LINGER_SECONDS = 0.5


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


def _connection_header(http10: bool, keep: bool) -> list[str]:
    """Go's ``Connection`` header: HTTP/1.1 is told only of a close; HTTP/1.0, closed by
    default, only of a kept connection (``keep-alive``), which it must see to reuse it."""
    if http10:
        return ["Connection: keep-alive"] if keep else []
    return [] if keep else ["Connection: close"]


def write_response(sock: socket.socket, req: Request, resp: Response) -> bool:
    """Send ``resp``; returns whether the connection can serve another request."""
    keep = not req.close and not resp.close
    if keep and not req.body.drain():
        keep = False
    http10 = req.version == "HTTP/1.0"
    head_only = req.method == "HEAD"
    lines = [f"{req.version} {resp.status} {_reason(resp.status)}"]  # Go answers 1.0 in 1.0
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
            lines.extend(_connection_header(http10, keep))
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
            lines.extend(_connection_header(http10, keep))
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            sendv(sock, [head] if head_only else [head, body])
        else:
            lines.append("Transfer-Encoding: chunked")
            lines.extend(_connection_header(http10, keep))
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            if head_only:
                sendv(sock, [head])
            else:
                sendv(sock, [head, f"{n:x}\r\n".encode(), body, b"\r\n0\r\n\r\n"])
        return keep
    finally:
        if resp.file_range is not None:
            resp.file_range.close()
        close_stream = getattr(resp.stream, "close", None)  # generators and Pieces have one
        if close_stream is not None:
            close_stream()


def send_bad_request(sock: socket.socket, exc: BadRequest) -> None:
    """Go's plain-text answer to an unparsable request, then the connection closes.

    Go puts its reason in the status line and repeats the line as the body
    (``400 Bad Request: malformed Host header``), except for an unknown framing, whose
    body is the bare ``Unsupported transfer encoding``.
    """
    status = f"{exc.status} {_reason(exc.status)}"
    if exc.status == 501:
        body = exc.reason
    else:
        status += f": {exc.reason}" if exc.reason else ""
        body = status
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
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
        source = Input(self.rfile)
        while True:
            try:
                req = read_request(source, sock)
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
