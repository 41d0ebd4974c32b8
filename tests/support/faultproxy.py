"""A fault-injecting HTTP/1.1 proxy between a mount and an AGFS server, for reliability tests.

It is a real proxy on a loopback port (stdlib sockets, one thread per client connection),
not a mock: the mount's HTTP client talks to it exactly as it would talk to the server.
Requests pass through unchanged unless a *rule* matches them; rules are added and removed
by the test while the mount runs::

    with FaultProxy(server.url) as proxy:          # proxy.url replaces server.url
        mount = Mount(proxy.url, ...)
        proxy.fail(503, "GET", "/stat", count=3)   # the next 3 stats get 503
        proxy.stall("GET", "/files", path="big")   # reads of */big* never answered
        held = proxy.pause("POST", "/rename")      # held until held.release(), then sent
        late = proxy.hold_answer("GET", "/directories")  # the server's answer held likewise
        proxy.refuse()                             # connections refused (listener closed)
        proxy.accept()                             # ...and accepted again, same port
        proxy.counts["GET /stat"]                  # requests seen, by "METHOD /route"

Faults (each rule matches by method, route and an optional substring of the ``path=``
query parameter, or any predicate on the parsed request; ``count`` limits how many
requests it hits, ``None`` = until removed):

- ``stall``: read the whole request, never answer (until the client gives up or the proxy
  stops);
- ``pause``: read the whole request and hold it until the test calls ``rule.release()``,
  then forward it as usual (to order two clients' requests deterministically);
- ``hold_answer``: forward the request, read the server's whole answer (``rule.answered``
  is set then) and hold it until ``rule.release()`` (a request the server answered before
  another, whose answer reaches the client after it);
- ``fail``: answer ``status`` (503, 502, 504...) without asking the server;
- ``cut``: forward, then send the response head and only part of the body, and close;
- ``garbage``: answer one of :data:`GARBAGE` (HTML 500 page, truncated JSON with 200, JSON
  with wrong types, plain-text ``404 page not found``, a 301) without asking the server;
- ``drop``: read the whole request, then reset the connection without an answer, either
  without forwarding it (``applied=False``: the server never saw it) or after the server
  answered (``applied=True``: the server carried it out, the answer is lost);
- ``watch``: no fault, just count the matching requests that pass (every request is
  counted in :attr:`FaultProxy.counts` anyway, and the ids of the handles the server opens
  are kept in :attr:`FaultProxy.handle_ids`: a plain proxy is a request counter and handle
  leak detector that works in front of any AGFS server);
- connection level: :meth:`refuse` closes the listener and resets every open connection
  (new connections get ECONNREFUSED), :meth:`accept` listens again on the same port,
  :meth:`reset_connections` resets the open ones only.

Framing is handled properly: keep-alive, ``Content-Length`` and ``chunked`` request bodies
(re-sent to the server with a ``Content-Length``), and responses relayed as they stream
(``Content-Length``, ``chunked`` or until close), so a followed stream works through it.
When the server itself is unreachable, the client connection is reset (the client sees a
lost connection, as with a real proxy in front of a dead backend).

The proxy always shuts down: on leaving the ``with`` block, on :meth:`close`, and by itself
after ``lifetime`` seconds (a safety net against a test that forgets).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

API_PREFIX = "/api/v1"
_HANDLE_ID = re.compile(r"/handles/\d+")
_MAX_HEAD = 1 << 20
_CHUNK = 256 * 1024

#: What ``garbage(kind)`` answers: (status, content type, extra headers, body).
GARBAGE: dict[str, tuple[int, str, list[tuple[str, str]], bytes]] = {
    "html500": (
        500,
        "text/html; charset=utf-8",
        [],
        b"<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>\n"
        b"<body><h1>Internal Server Error</h1><p>nginx</p></body></html>\n",
    ),
    "truncated_json": (
        200,
        "application/json",
        [],
        b'{"name":"x","size":12,"mode":420,"modTime":"2024-01-01T00:00:00Z","isDir":fal',
    ),
    "wrong_types": (
        200,
        "application/json",
        [],
        b'{"name":7,"size":"twelve","mode":"rw-r--r--","modTime":1700000000,"isDir":"no",'
        b'"files":{"a":1},"target":5,"handle_id":"h","bytes_written":"all","status":1}',
    ),
    "plain404": (
        404,
        "text/plain; charset=utf-8",
        [("X-Content-Type-Options", "nosniff")],
        b"404 page not found\n",
    ),
    "redirect301": (
        301,
        "text/html; charset=utf-8",
        [("Location", "http://elsewhere.invalid/api/v1/moved")],
        b'<a href="http://elsewhere.invalid/api/v1/moved">Moved Permanently</a>.\n',
    ),
}

_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _Closed(Exception):
    """The peer closed the connection (or the proxy is stopping)."""


@dataclass
class Request:
    """One request as the proxy received it (body already de-chunked)."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    route: str
    """The path after ``/api/v1``, handle ids as ``{id}``: ``/stat``, ``/handles/{id}/write``."""
    path: str
    """The decoded ``path=`` query parameter ('' when there is none)."""

    @property
    def key(self) -> str:
        """``"METHOD /route"``: what :attr:`FaultProxy.counts` counts."""
        return f"{self.method} {self.route}"

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def wants_close(self) -> bool:
        conn = (self.header("connection") or "").lower()
        return "close" in conn or (self.version == "HTTP/1.0" and "keep-alive" not in conn)


@dataclass(eq=False)
class Rule:
    """One fault: which requests it hits and what happens to them."""

    action: str
    method: str | None = None
    route: str | None = None
    path: str | None = None
    when: Callable[[Request], bool] | None = None
    count: int | None = None
    status: int = 503
    kind: str = ""
    applied: bool = False
    keep: float = 0.5
    hits: int = 0
    """How many requests this rule has hit so far."""
    last_hit: float | None = field(default=None, repr=False)
    gate: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set by :meth:`release`: ``pause`` rules hold their requests until then."""
    answered: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set when a ``hold_answer`` rule holds a server's answer."""

    def release(self) -> None:
        """Let the requests a ``pause`` rule holds, or the answers a ``hold_answer`` rule
        holds (and any it hits later), go on."""
        self.gate.set()

    def matches(self, req: Request) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.method is not None and req.method != self.method:
            return False
        if self.route is not None and req.route != self.route:
            return False
        if self.path is not None and self.path not in req.path:
            return False
        return self.when is None or bool(self.when(req))


def route_of(target: str) -> tuple[str, str]:
    """(route, decoded path parameter) of a request target."""
    parts = urlsplit(target)
    route = parts.path
    if route.startswith(API_PREFIX + "/") or route == API_PREFIX:
        route = route[len(API_PREFIX) :] or "/"
    route = _HANDLE_ID.sub("/handles/{id}", route)
    path = ""
    for pair in parts.query.split("&"):
        if pair.startswith("path="):
            path = unquote(pair[5:], errors="surrogateescape")
            break
    return route, path


class _Reader:
    """Buffered reads from a socket: lines, heads, exact sizes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(_CHUNK)
        if not data:
            raise _Closed()
        self.buf += data

    def read_head(self) -> bytes | None:
        """Bytes up to and including the blank line; None on EOF before any byte."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise ValueError("request head too large")
            try:
                self._fill()
            except _Closed:
                if not self.buf:
                    return None
                raise

    def read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            if len(self.buf) > _MAX_HEAD:
                raise ValueError("line too long")
            self._fill()

    def read_exact(self, n: int) -> bytes:
        parts = []
        take = min(n, len(self.buf))
        if take:
            parts.append(bytes(self.buf[:take]))
            del self.buf[:take]
            n -= take
        while n > 0:
            data = self.sock.recv(min(_CHUNK, n))
            if not data:
                raise _Closed()
            parts.append(data)
            n -= len(data)
        return b"".join(parts)

    def relay_exact(self, n: int, out: socket.socket | None) -> None:
        """Copy ``n`` bytes to ``out`` as they arrive (or just consume them)."""
        while n > 0:
            if not self.buf:
                self._fill()
            take = min(n, len(self.buf))
            if out is not None:
                out.sendall(self.buf[:take])
            del self.buf[:take]
            n -= take

    def read_chunked(self, out: socket.socket | None = None) -> bytes:
        """A chunked body: relayed raw to ``out`` when given, returned de-chunked."""
        parts = []
        while True:
            line = self.read_line()
            if out is not None:
                out.sendall(line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = self.read_line()
                    if out is not None:
                        out.sendall(trailer)
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(parts)
            data = self.read_exact(size)
            crlf = self.read_line()
            if out is not None:
                out.sendall(data + crlf)
            else:
                parts.append(data)

    def read_to_eof(self, out: socket.socket | None = None) -> bytes:
        parts = []
        while True:
            if self.buf:
                chunk = bytes(self.buf)
                self.buf.clear()
                if out is not None:
                    out.sendall(chunk)
                else:
                    parts.append(chunk)
            try:
                self._fill()
            except _Closed:
                return b"".join(parts)


def _parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    headers = []
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _rst(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0): the peer sees 'connection reset'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """The proxy. ``upstream`` is the server's URL (``http://127.0.0.1:PORT[/api/v1]``) or
    port; ``port`` is the proxy's own (0 = a free one, kept across refuse/accept)."""

    def __init__(
        self,
        upstream: str | int,
        *,
        port: int = 0,
        lifetime: float = 600.0,
        upstream_timeout: float = 120.0,
    ) -> None:
        if isinstance(upstream, int):
            self.upstream = ("127.0.0.1", upstream)
        else:
            parts = urlsplit(upstream)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise ValueError(f"upstream must be http://HOST:PORT, got {upstream!r}")
            self.upstream = (parts.hostname, parts.port)
        self.upstream_timeout = upstream_timeout
        self.lifetime = lifetime
        self.port = port
        self.counts: Counter[str] = Counter()
        """Requests received, by ``"METHOD /route"`` (faulted ones included)."""
        self.forwarded: Counter[str] = Counter()
        """Requests whose server answer reached the client in full, by ``"METHOD /route"``."""
        self.faults: Counter[str] = Counter()
        """Faults injected, by action (``stall``, ``fail``, ``cut``, ``garbage``, ``drop``,
        ``refuse``, ``reset``, ``upstream_down``)."""
        self.handle_ids: list[int] = []
        """Ids of the handles the server opened for the client (``POST /handles/open``
        answers), in order: what a leak check asks the server about (``GET /handles/{id}``)."""
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._acceptor: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL to give the mount instead of the server's."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def start(self) -> FaultProxy:
        self._listen()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True, name="proxy")
        self._acceptor.start()
        self._timer = threading.Timer(self.lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()
        return self

    def close(self) -> None:
        """Stop: close the listener and every connection, wait for the threads. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        self._close_listener()
        self._close_all(rst=False)
        current = threading.current_thread()
        deadline = time.monotonic() + 5.0
        for thread in [self._acceptor, *list(self._threads)]:
            if thread is not None and thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        with self._lock:
            self._listener = sock

    def _close_listener(self) -> None:
        with self._lock:
            sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the acceptor, stops listening now
            sock.close()

    def _close_all(self, *, rst: bool) -> int:
        with self._lock:
            socks = list(self._sockets)
        for sock in socks:
            if rst:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(socks)

    # -- control -------------------------------------------------------------------------

    def refuse(self) -> None:
        """Connections are refused from now on (the listener is closed) and the open ones
        are reset, as when the server process is gone."""
        self._close_listener()
        self._close_all(rst=True)
        self._note("refuse")
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # make sure the port really refuses
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    pass
            except ConnectionRefusedError:
                return
            except OSError:
                return
            time.sleep(0.01)
        raise RuntimeError(f"proxy port {self.port} still accepts connections")

    def accept(self) -> None:
        """Listen again on the same port (after :meth:`refuse`)."""
        with self._lock:
            listening = self._listener is not None
        if not listening:
            self._listen()

    @property
    def refusing(self) -> bool:
        with self._lock:
            return self._listener is None

    def reset_connections(self) -> int:
        """Reset every open connection (keep listening); returns how many."""
        n = self._close_all(rst=True)
        if n:
            self._note("reset", n)
        return n

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self.rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule: everything passes again."""
        with self._lock:
            self.rules.clear()

    def watch(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """No fault: matching requests pass, and ``rule.hits`` counts them. Rules are tried
        in the order they were added, so add a watch after the faults it must not hide."""
        return self.add(Rule("pass", method, route, path, when))

    def stall(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        count: int | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests are read and never answered."""
        return self.add(Rule("stall", method, route, path, when, count))

    def pause(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        count: int | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests are read and held until ``rule.release()``, then forwarded."""
        return self.add(Rule("pause", method, route, path, when, count))

    def hold_answer(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        count: int | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests are forwarded at once; the server's answer is read whole,
        ``rule.answered`` set, and the answer held until ``rule.release()``."""
        return self.add(Rule("hold_answer", method, route, path, when, count))

    def fail(
        self,
        status: int = 503,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        count: int | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests get ``status`` (plain text, as a load balancer answers)."""
        return self.add(Rule("fail", method, route, path, when, count, status=status))

    def cut(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        count: int | None = None,
        keep: float = 0.5,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests are forwarded; the client gets the head and ``keep`` of the
        body (announced in full by ``Content-Length``), then the connection closes."""
        return self.add(Rule("cut", method, route, path, when, count, keep=keep))

    def garbage(
        self,
        kind: str,
        method: str | None = None,
        route: str | None = None,
        *,
        path: str | None = None,
        count: int | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests get one of :data:`GARBAGE` instead of the server's answer."""
        if kind not in GARBAGE:
            raise ValueError(f"unknown garbage {kind!r}; one of {sorted(GARBAGE)}")
        return self.add(Rule("garbage", method, route, path, when, count, kind=kind))

    def drop(
        self,
        method: str | None = None,
        route: str | None = None,
        *,
        applied: bool,
        path: str | None = None,
        count: int | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> Rule:
        """Matching requests are read in full, then the connection is reset with no
        answer: before the server sees them (``applied=False``) or after the server
        carried them out (``applied=True``)."""
        return self.add(Rule("drop", method, route, path, when, count, applied=applied))

    def request_counts(self) -> dict[str, int]:
        """A copy of :attr:`counts`, taken while no request is being counted."""
        with self._lock:
            return dict(self.counts)

    def opened_handles(self) -> list[int]:
        """A copy of :attr:`handle_ids`."""
        with self._lock:
            return list(self.handle_ids)

    def total_faults(self) -> int:
        with self._lock:
            return sum(self.faults.values())

    # -- internals -----------------------------------------------------------------------

    def _note(self, action: str, n: int = 1) -> None:
        with self._lock:
            self.faults[action] += n

    def _match(self, req: Request) -> Rule | None:
        with self._lock:
            self.counts[req.key] += 1
            for rule in self.rules:
                if rule.matches(req):
                    rule.hits += 1
                    rule.last_hit = time.monotonic()
                    if rule.action != "pass":
                        self.faults[rule.action] += 1
                    return rule
        return None

    def _note_handle(self, status: int, body: bytes) -> None:
        """Remember the id of a handle the server opened (a 200 answer to an open)."""
        if status != 200:
            return
        try:
            handle_id = json.loads(body)["handle_id"]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(handle_id, int):
            with self._lock:
                self.handle_ids.append(handle_id)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _untrack(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._stop.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.1)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                continue
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._track(client)
            thread = threading.Thread(
                target=self._serve_client, args=(client,), daemon=True, name="proxy-conn"
            )
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve_client(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        up_reader: _Reader | None = None
        reader = _Reader(client)
        try:
            while not self._stop.is_set():
                req = self._read_request(reader)
                if req is None:
                    return
                rule = self._match(req)
                action = rule.action if rule is not None else "pass"
                if action == "stall":
                    self._hold(client)
                    return
                if action == "pause":
                    assert rule is not None
                    if not self._wait_for_release(rule):
                        return
                    action = "pass"
                if action == "fail":
                    assert rule is not None
                    text = f"{rule.status} {_REASONS.get(rule.status, 'Error')}\n".encode()
                    self._answer(client, rule.status, "text/plain; charset=utf-8", [], text, req)
                    if req.wants_close:
                        return
                    continue
                if action == "garbage":
                    assert rule is not None
                    status, ctype, extra, body = GARBAGE[rule.kind]
                    self._answer(client, status, ctype, extra, body, req)
                    if req.wants_close:
                        return
                    continue
                if action == "drop" and rule is not None and not rule.applied:
                    _rst(client)
                    return
                # forward to the server
                try:
                    if upstream is not None and _dead(upstream):
                        self._untrack(upstream)
                        upstream = None
                    if upstream is None:
                        upstream = socket.create_connection(self.upstream, timeout=5.0)
                        upstream.settimeout(self.upstream_timeout)
                        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self._track(upstream)
                        up_reader = _Reader(upstream)
                    assert up_reader is not None
                    # A server refusing a body (413 over its limit) answers and closes
                    # while the body is still being sent: its answer is readable still.
                    with contextlib.suppress(OSError):
                        upstream.sendall(_request_bytes(req))
                    status, head, headers = self._read_response_head(up_reader)
                except (OSError, _Closed, ValueError):
                    self._note("upstream_down")
                    _rst(client)
                    return
                if action == "drop":
                    with contextlib.suppress(OSError, _Closed, ValueError):
                        self._read_whole(req, up_reader, status, headers)
                    _rst(client)
                    return
                if action == "cut":
                    assert rule is not None
                    try:
                        body = self._read_whole(req, up_reader, status, headers)
                    except (OSError, _Closed, ValueError):
                        body = b""
                    self._send_cut(client, status, headers, body, rule.keep)
                    return
                if action == "hold_answer":
                    assert rule is not None
                    try:
                        body = self._read_whole(req, up_reader, status, headers)
                    except (OSError, _Closed, ValueError):
                        _rst(client)
                        return
                    rule.answered.set()
                    if not self._wait_for_release(rule):
                        return
                    _send_whole(client, status, headers, body)
                    with self._lock:
                        self.forwarded[req.key] += 1
                    if req.wants_close or "close" in (_get(headers, "connection") or "").lower():
                        return
                    continue
                if _opens_handle(req):
                    try:
                        body = self._read_whole(req, up_reader, status, headers)
                    except (OSError, _Closed, ValueError):
                        _rst(client)
                        return
                    _send_whole(client, status, headers, body)
                    with self._lock:
                        self.forwarded[req.key] += 1
                    if req.wants_close or "close" in (_get(headers, "connection") or "").lower():
                        return
                    continue
                # pass: relay as it streams
                try:
                    client.sendall(head)
                except OSError:
                    return
                try:
                    until_eof = _read_body(up_reader, req.method, status, headers, client)
                except (OSError, _Closed, ValueError):
                    _rst(client)  # the server went away mid-answer: so does the client's
                    return
                with self._lock:
                    self.forwarded[req.key] += 1
                server_closes = "close" in (_get(headers, "connection") or "").lower()
                if until_eof or server_closes or req.wants_close:
                    return
        except (OSError, _Closed, ValueError):
            return
        finally:
            self._untrack(upstream)
            self._untrack(client)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _read_whole(
        self, req: Request, reader: _Reader, status: int, headers: list[tuple[str, str]]
    ) -> bytes:
        """The server's whole answer body; the id of a handle it opened is kept even when
        the answer then never reaches the client (drop, cut): that handle is open all the
        same, and a leak check must ask about it."""
        body = _read_body(reader, req.method, status, headers, None)
        assert isinstance(body, bytes)
        if _opens_handle(req):
            self._note_handle(status, body)
        return body

    def _read_request(self, reader: _Reader) -> Request | None:
        head = reader.read_head()
        if head is None:
            return None
        lines = head.split(b"\n")
        method, target, version = lines[0].decode("latin-1").strip().split(" ", 2)
        headers = _parse_headers(lines[1:])
        te = (_get(headers, "transfer-encoding") or "").lower()
        if "chunked" in te:
            body = reader.read_chunked()
        else:
            body = reader.read_exact(int(_get(headers, "content-length") or 0))
        route, path = route_of(target)
        return Request(method, target, version, headers, body, route, path)

    @staticmethod
    def _read_response_head(reader: _Reader) -> tuple[int, bytes, list[tuple[str, str]]]:
        while True:
            head = reader.read_head()
            if head is None:
                raise _Closed()
            lines = head.split(b"\n")
            status = int(lines[0].split()[1])
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue: not for the client (we sent the body already)
            return status, head, _parse_headers(lines[1:])

    def _answer(
        self,
        client: socket.socket,
        status: int,
        ctype: str,
        extra: list[tuple[str, str]],
        body: bytes,
        req: Request,
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            f"Content-Type: {ctype}",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in extra),
        ]
        if req.wants_close:
            lines.append("Connection: close")
        client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    @staticmethod
    def _send_cut(
        client: socket.socket,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        keep: float,
    ) -> None:
        """The head announcing the whole body, then only part of it, then close."""
        skip = {"content-length", "transfer-encoding", "connection"}
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in skip]
        lines.append(f"Content-Length: {max(len(body), 2)}")
        part = body[: int(len(body) * keep)] if len(body) >= 2 else b""
        with contextlib.suppress(OSError):
            client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + part)
            client.shutdown(socket.SHUT_WR)  # a clean FIN mid-body: "incomplete message"
            _drain(client, 1.0)

    def _wait_for_release(self, rule: Rule) -> bool:
        """Wait until ``rule`` is released (True) or the proxy stops (False)."""
        while not rule.gate.wait(0.05):
            if self._stop.is_set():
                return False
        return True

    def _hold(self, client: socket.socket) -> None:
        """Never answer: wait until the client gives up or the proxy stops."""
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([client], [], [], 0.2)
                if ready and not client.recv(_CHUNK):
                    return
            except (OSError, ValueError):
                return


def _opens_handle(req: Request) -> bool:
    return req.method == "POST" and req.route == "/handles/open"


def _send_whole(
    client: socket.socket, status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    """Relay an answer that was read in full: the server's head, re-framed by length."""
    skip = {"content-length", "transfer-encoding"}
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() not in skip]
    lines.append(f"Content-Length: {len(body)}")
    client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def _drain(sock: socket.socket, seconds: float) -> None:
    """Read and discard until the peer closes (so our close sends no reset), at most
    ``seconds``."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError, ValueError):
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if ready and not sock.recv(_CHUNK):
                return


def _dead(sock: socket.socket) -> bool:
    """A kept-alive upstream connection that is readable between requests was closed."""
    try:
        ready, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def _request_bytes(req: Request) -> bytes:
    skip = {"content-length", "transfer-encoding", "expect"}
    lines = [f"{req.method} {req.target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in req.headers if k.lower() not in skip]
    if req.body or req.method in ("POST", "PUT", "PATCH") or req.header("content-length"):
        lines.append(f"Content-Length: {len(req.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body


def _read_body(
    reader: _Reader,
    method: str,
    status: int,
    headers: list[tuple[str, str]],
    out: socket.socket | None,
) -> bytes | bool:
    """Read a response body, relaying it to ``out`` when given.

    With ``out``: returns True when the body ran until the server closed (no framing).
    Without: returns the de-chunked body.
    """
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return False if out is not None else b""
    te = (_get(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        body = reader.read_chunked(out)
        return False if out is not None else body
    length = _get(headers, "content-length")
    if length is not None:
        if out is not None:
            reader.relay_exact(int(length), out)
            return False
        return reader.read_exact(int(length))
    body = reader.read_to_eof(out)
    return True if out is not None else body
