"""A lean HTTP/1.1 client transport over trio sockets: how the mount talks to AGFS.

Why not httpx's own: on a 2-core machine its transport (httpcore and h11) spends about
1 ms of CPU on every request and moves about 200 MB/s, while the reference server answers
a ``stat`` in 0.2 ms and a raw socket receives 1 GB/s. A mount makes a request per lookup
and per 1 MiB of readahead, so that cost is the mount's speed. This transport speaks just
the HTTP/1.1 an AGFS server talks (keep-alive; ``Content-Length``, ``chunked`` or
read-to-close bodies) and receives bodies straight into buffers of their announced size.
Here: the pool, requests and the framing of answers; the socket work is ``connection``'s.

It has two ways to ask, both past httpx's Request and Response objects (which cost as much
CPU as the rest of a small request): ``exchange`` gives a whole answer (``Reply``),
``stream`` an answer whose body is read as it arrives (``Streamed``: whole-file reads and
followed streams, which may be large or never end). The exception types it raises are
httpx's, so the session maps one set of exceptions to errors whichever path a request took.
Proxies are not spoken here: ``request_paths.HttpxPath`` serves a mount behind one.

Response heads are parsed by httptools (llhttp), not by hand: parsing untrusted input is
a library's job unless a measurement says otherwise, and this one says it costs nothing.
``python -m bench.head_parsers`` (2 cores, shared with other test runs; three runs, each
the median of nine) on the heads ``agfs-fuse serve`` sends like the Go server
(``Content-Type``, ``Date``, ``Content-Length`` or ``chunked``):

============  ========  ==========================================================
parser        per head  2,000 small GETs on loopback: client CPU/request (req/s)
============  ========  ==========================================================
hand-written  1.1 us    87.5, 111.3, 101.1 us (5,871, 5,333, 5,633 requests/s)
httptools     1.3 us    93.8, 99.8, 91.7 us (5,784, 5,991, 5,946 requests/s)
h11           34-35 us  147.7, 140.9, 146.3 us (4,300, 4,185, 4,157 requests/s)
============  ========  ==========================================================

httptools ties the hand-written split: 0.2 us of a ~100 us request, less than the spread
between runs. h11 has no head-only parser, and a throwaway connection per head costs
about 45 us more CPU per request: a quarter fewer requests per second.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httptools
import httpx
import trio

from .connection import Connection, Key, deadline_scope

PIECE = 1 << 20
"""Streamed bodies are handed on in pieces of at most this size (or one chunk, if smaller)."""

WATCHED_BODY = 256 * 1024
"""Bodies larger than this go by ``send_watching``, which stops when the server answers
early; smaller ones fit the socket buffers and go in one packet with the head."""
_NO_BODY_STATUSES = frozenset({204, 304})


def ssl_context_for(verify: bool | ssl.SSLContext) -> ssl.SSLContext:
    """httpx's ``verify`` as a context: the system's CAs, none (``False``) or the given one."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class FileBody(httpx.AsyncByteStream):
    """A request body of ``size`` bytes read from a file descriptor, from offset 0.

    ``AgfsTransport`` hands it to the kernel with ``sendfile`` on plain TCP (no copy
    through Python); over TLS, and through httpx (a proxy), it is iterated, each piece
    read in a worker thread: hence an ``httpx.AsyncByteStream``. ``shrank`` makes
    the error raised when the file turns out shorter than ``size``.
    """

    def __init__(self, fd: int, size: int, shrank: Callable[[], Exception]) -> None:
        self.fd = fd
        self.size = size
        self.shrank = shrank

    async def __aiter__(self) -> AsyncIterator[bytes]:
        offset = 0
        while offset < self.size:
            count = min(PIECE, self.size - offset)
            block = await trio.to_thread.run_sync(os.pread, self.fd, count, offset)
            if not block:
                raise self.shrank()
            offset += len(block)
            yield block


class Timeouts:
    """Per-operation inactivity deadlines in seconds (None: no deadline), as httpx has
    them: waiting for a free connection, connecting, each send and each receive."""

    @classmethod
    def all(cls, seconds: float | None) -> Timeouts:
        """The same deadline for every step."""
        return cls(seconds, seconds, seconds, seconds)

    __slots__ = ("connect", "read", "write", "pool")

    def __init__(
        self,
        connect: float | None = None,
        read: float | None = None,
        write: float | None = None,
        pool: float | None = None,
    ) -> None:
        self.connect, self.read, self.write, self.pool = connect, read, write, pool

    def as_httpx(self) -> httpx.Timeout:
        """The same deadlines for an httpx client (the proxy path)."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class Reply:
    """A whole answer, read at once, without httpx's models: what ``exchange`` gives (and
    the httpx path too). It has the parts of an answer the client reads
    (``status_code``, ``headers.get``, ``content``, ``text``, ``json()``)."""

    __slots__ = ("status_code", "headers", "content", "sent")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes, sent: int):
        self.status_code = status_code
        self.headers = headers  # names in lower case
        self.content = content
        self.sent = sent  # body bytes of the request this answers

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Streamed:
    """An answer whose body is read as it arrives: what ``stream`` gives. ``aiter_bytes``
    yields the body once; ``aclose`` gives the connection back (reused only if the body
    was read to its end). The httpx path wraps its own streamed responses in this too."""

    __slots__ = ("status_code", "headers", "_pieces", "_close")

    def __init__(
        self,
        status_code: int,
        headers: dict[str, str],
        pieces: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.status_code = status_code
        self.headers = headers  # names in lower case
        self._pieces = pieces
        self._close = close

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self._pieces

    async def read_whole(self) -> Reply:
        """The rest of the body as a ``Reply`` (for an error's message), then closed."""
        try:
            content = b"".join([piece async for piece in self._pieces])
        finally:
            await self.aclose()
        return Reply(self.status_code, self.headers, content, 0)

    async def aclose(self) -> None:
        await self._close()


def _connect_failure(exc: OSError, host: str, port: int) -> str:
    """Why a connection failed, in one line: trio reports "all attempts ... failed" and
    keeps each attempt's reason (refused, unreachable) in an exception group behind it."""
    attempts = getattr(exc.__cause__, "exceptions", ())
    reasons = sorted({os.strerror(e.errno) for e in attempts if isinstance(e, OSError) and e.errno})
    if reasons:
        return f"{host}:{port}: {', '.join(reasons)}"
    return str(exc) or f"cannot connect to {host}:{port}"


Parsed = tuple[str, int, list[tuple[bytes, bytes]]]
"""A response head: its HTTP version (``HTTP/1.1``), status code and headers in order."""


class _HeaderList:
    """httptools' callback object: collects the headers in order."""

    __slots__ = ("headers",)

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value.rstrip(b" \t")))


def parse_head(raw: bytes) -> Parsed:
    """The status line and headers of ``raw`` (a head without its blank line), read by
    llhttp (Node's parser, through httptools): a head it finds malformed (a bad header
    name, a bad ``Content-Length``, one next to ``Transfer-Encoding``) is refused."""
    found = _HeaderList()
    parser = httptools.HttpResponseParser(found)
    try:
        parser.feed_data(raw + b"\r\n\r\n")
    except httptools.HttpParserError as exc:
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x answer ({exc}): {raw[:60]!r}") from None
    return "HTTP/" + parser.get_http_version(), parser.get_status_code(), found.headers


class _Head:
    """A parsed status line and headers, and how the body that follows is framed."""

    def __init__(self, raw: bytes, method: str) -> None:
        self.http_version, self.status, self.headers = parse_head(raw)
        fields = {name.lower(): value for name, value in self.headers}
        self.chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        self.length: int | None = None
        if not self.chunked and b"content-length" in fields:
            text = fields[b"content-length"]
            if not text.isdigit():
                raise httpx.RemoteProtocolError(f"bad Content-Length {text[:30]!r}")
            self.length = int(text)
        if method == "HEAD" or self.status in _NO_BODY_STATUSES or self.status < 200:
            self.chunked, self.length = False, 0
        close = b"close" in fields.get(b"connection", b"").lower()
        read_to_close = not self.chunked and self.length is None
        self.keep_alive = self.http_version == "HTTP/1.1" and not close and not read_to_close

    def fields(self) -> dict[str, str]:
        """The headers by lower-case name (the last of a repeated one)."""
        return {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.headers
        }


class _BodyReader:
    """A response body, read in pieces; gives the connection back when done."""

    def __init__(
        self, pool: AgfsTransport, conn: Connection, head: _Head, deadline: Timeouts
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._head = head
        self._read = deadline.read
        self.complete = False

    async def pieces(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            if self.complete:  # an empty body, already given back
                return
            raise httpx.StreamClosed()
        head = self._head
        if head.chunked:
            async for piece in self._chunks(conn):
                yield piece
        elif head.length is not None:
            remaining = head.length
            while remaining:
                piece = await conn.exactly(min(remaining, PIECE), self._read)
                remaining -= len(piece)
                yield piece
        else:
            while piece := await conn.until_closed(self._read):
                yield piece
        self.complete = True
        await self.aclose()

    async def _chunks(self, conn: Connection) -> AsyncIterator[bytes]:
        while True:
            line = await conn.line(self._read)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                while await conn.line(self._read):  # trailers, up to the blank line
                    pass
                return
            while size:
                piece = await conn.exactly(min(size, PIECE), self._read)
                size -= len(piece)
                yield piece
            if await conn.line(self._read):
                raise httpx.RemoteProtocolError("chunk not followed by CRLF")

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn, reuse=self.complete and self._head.keep_alive)


RequestBody = bytes | FileBody | None
"""What ``AgfsTransport`` sends: nothing, bytes (with the head, in one packet when small),
or a file (by sendfile on plain TCP). Never a stream of unknown length: AGFS needs none."""


class AgfsTransport:
    """A pool of keep-alive HTTP/1.1 connections to one server (or a few).

    A request names its connection ``key`` (scheme, host, port), its ``target`` (the
    encoded path and query) and all its ``headers``, which must include ``Host`` and, with
    a body, ``Content-Length``: building them is the caller's (``request_paths``).
    """

    def __init__(self, *, verify: bool | ssl.SSLContext = True, max_connections: int = 32) -> None:
        self._verify = verify
        self._context: ssl.SSLContext | None = None
        self._idle: dict[Key, list[Connection]] = {}
        self._slots = trio.Semaphore(max_connections)
        self._closed = False

    async def exchange(
        self,
        key: Key,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody,
        deadline: Timeouts,
    ) -> Reply:
        """One request and its whole answer."""
        conn, head = await self._open(key, method, target, headers, body, deadline)
        reader = _BodyReader(self, conn, head, deadline)
        try:
            if head.length is not None and head.length <= PIECE:
                content = await conn.exactly(head.length, deadline.read) if head.length else b""
                reader.complete = True
            else:  # chunked, read to close, or large: in pieces, the scratch stays small
                content = b"".join([piece async for piece in reader.pieces()])
        finally:
            await reader.aclose()
        sent = len(body) if isinstance(body, bytes) else body.size if body is not None else 0
        return Reply(head.status, head.fields(), content, sent)

    async def stream(
        self,
        key: Key,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        deadline: Timeouts,
    ) -> Streamed:
        """One request whose answer's body the caller reads as it comes, then closes."""
        conn, head = await self._open(key, method, target, headers, None, deadline)
        reader = _BodyReader(self, conn, head, deadline)
        if head.length == 0:
            reader.complete = True  # nothing to read: the connection is free now
            await reader.aclose()
        return Streamed(head.status, head.fields(), reader.pieces(), reader.aclose)

    async def _open(
        self,
        key: Key,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody,
        deadline: Timeouts,
    ) -> tuple[Connection, _Head]:
        """Take a connection slot, send the request, and read the answer's head; the slot
        is the caller's to give back (through ``_BodyReader``) unless this raises."""
        if self._closed:
            raise httpx.ConnectError("the client is closed")
        try:
            self._slots.acquire_nowait()  # the usual case, without a cancel scope
        except trio.WouldBlock:
            try:
                with deadline_scope(deadline.pool):
                    await self._slots.acquire()
            except trio.TooSlowError:
                raise httpx.PoolTimeout("timed out waiting for a free connection") from None
        conn: Connection | None = None
        try:
            conn = await self._connection(key, deadline)
            send_failure: httpx.WriteError | None = None
            try:
                sent = await self._send_request(conn, method, target, headers, body, deadline)
            except httpx.WriteError as exc:
                send_failure = exc
            else:
                if not sent:  # the same event as a failed write, seen a moment sooner
                    send_failure = httpx.WriteError(
                        "sending the request failed: the server stopped reading it"
                    )
            try:
                head = await self._final_head(conn, method, deadline)
            except httpx.TransportError:
                if send_failure is not None:
                    # no answer after all: the connection was lost
                    raise send_failure from send_failure.__cause__
                raise
            if send_failure is not None:
                head.keep_alive = False  # part of the request was never sent
            return conn, head
        except BaseException:
            if conn is not None:
                await conn.aclose()
            self._slots.release()
            raise

    @staticmethod
    async def _final_head(conn: Connection, method: str, deadline: Timeouts) -> _Head:
        """The answer's head, past interim (1xx) ones.

        Also read after a failed send: a server may answer before it has read the whole
        body and then close, as the real AGFS server does over its body limit (it reads
        limit+1 bytes, writes 413 and hangs up). The sender then gets EPIPE or a reset,
        but the answer is already on the socket, as curl and httpcore know. Reading it
        cannot hang: a socket the peer reset gives what it holds, then an error.
        """
        while True:
            head = _Head(await conn.head(deadline.read), method)
            if not 100 <= head.status < 200:
                return head

    async def release(self, conn: Connection, *, reuse: bool) -> None:
        self._slots.release()
        if reuse and not self._closed:
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            await conn.aclose()

    async def _connection(self, key: Key, deadline: Timeouts) -> Connection:
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            if not conn.looks_closed():
                return conn
            await conn.aclose()
        return await self._connect(key, deadline)

    async def _connect(self, key: Key, deadline: Timeouts) -> Connection:
        scheme, host, port = key
        try:
            with deadline_scope(deadline.connect):
                conn = await self._open_stream(key)
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, ssl.SSLError) else exc
            raise httpx.ConnectError(f"TLS with {host}:{port} failed: {cause}") from cause
        except OSError as exc:
            raise httpx.ConnectError(_connect_failure(exc, host, port)) from exc
        return conn

    async def _open_stream(self, key: Key) -> Connection:
        scheme, host, port = key
        tcp = await trio.open_tcp_stream(host, port)
        if scheme != "https":
            return Connection(key, tcp, tcp.socket)
        if self._context is None:
            self._context = ssl_context_for(self._verify)
        tls = trio.SSLStream(tcp, self._context, server_hostname=host)
        try:
            await tls.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise
        return Connection(key, tls, None)

    @staticmethod
    async def _send_request(
        conn: Connection,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: RequestBody,
        deadline: Timeouts,
    ) -> bool:
        """Send the request; False when the server answered before taking all of it."""
        lines = [method.encode() + b" " + target + b" HTTP/1.1"]
        lines.extend(name + b": " + value for name, value in headers)
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        if isinstance(body, FileBody):
            if conn.sock is not None:
                await conn.send(head, deadline.write)
                return await conn.send_file(body.fd, body.size, body.shrank, deadline.write)
            await conn.send(head, deadline.write)  # TLS: through Python, piece by piece
            async for part in body:
                await conn.send(part, deadline.write)
            return True
        if body is not None and len(body) > WATCHED_BODY and conn.sock is not None:
            await conn.send(head, deadline.write)
            return await conn.send_watching(body, deadline.write)
        await conn.send(head + body if body else head, deadline.write)
        return True

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                await conn.aclose()
