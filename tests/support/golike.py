"""A socket-level stand-in for how the real (Go) AGFS server refuses an oversized body.

Go's ``http.MaxBytesReader`` reads at most limit+1 bytes of a request body; the handler
then writes ``413 {"error":"request body exceeds maximum size of N bytes"}`` and the server
closes the connection with the rest of the body unread. A client still sending gets EPIPE
or ECONNRESET on its send, although the 413 is already readable on its socket. The
reference server is a separate, evolving program; this fake pins the one behaviour the
client must survive, byte for byte, and holds just enough of the API for an upload:
``PUT /files`` and a handle's ``open``, ``write`` and ``DELETE``, on files kept in memory.

Requests are parsed by h11 (a dependency of httpx), one thread per connection, so it
serves sync and async tests alike. The listening socket gets a small receive buffer, so
the kernel cannot quietly absorb a multi-megabyte body the server never reads: the
client really meets the broken pipe, as it does with a real server on a real network.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11

API = "/api/v1"
RECEIVE_BUFFER = 32 * 1024
O_TRUNC = 64  # AGFS's value (docs/PROTOCOL.md, Handles)


@dataclass
class Seen:
    """One request as the fake saw it: ``"PUT /files"``-style key and its body size
    (as announced by Content-Length), and whether it was refused with 413."""

    key: str
    size: int
    refused: bool


@dataclass
class GoLikeServer:
    """Listens on a loopback port while used as a context manager; ``url`` is its API."""

    limit: int
    hang_up_silently: bool = False
    """Refuse an oversized body by closing without an answer: a lost connection."""
    linger: float = 0.0
    """Seconds between the 413 (with a FIN) and the close, as Go's ``closeWriteAndWait``
    waits 500 ms so that the client can read the answer before the reset."""
    files: dict[str, bytearray] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _handles: dict[int, str] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> GoLikeServer:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}{API}"
        self._start(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=10)

    def refused(self, key: str) -> list[int]:
        """Body sizes of the requests with this key that got a 413."""
        return [s.size for s in self.seen if s.key == key and s.refused]

    def accepted(self, key: str) -> list[int]:
        return [s.size for s in self.seen if s.key == key and not s.refused]

    # -- plumbing -----------------------------------------------------------------

    def _start(self, target, *args) -> None:  # noqa: ANN001
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._start(self._serve, sock)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        conn = h11.Connection(h11.SERVER)
        try:
            while self._one_request(sock, conn):
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError):
            pass
        finally:
            sock.close()  # with the rest of an oversized body unread: the kernel resets

    def _next_event(self, sock: socket.socket, conn: h11.Connection) -> object:
        while (event := conn.next_event()) is h11.NEED_DATA:
            conn.receive_data(sock.recv(64 * 1024))
        return event

    def _one_request(self, sock: socket.socket, conn: h11.Connection) -> bool:
        """Serve one request; False when the connection is to be closed."""
        request = self._next_event(sock, conn)
        if not isinstance(request, h11.Request):
            return False
        target = urlsplit(request.target.decode())
        route = target.path.removeprefix(API)
        query = {k: v[0] for k, v in parse_qs(target.query).items()}
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        key = f"{request.method.decode()} {route}"
        if route.startswith("/handles/") and route[9:].split("/")[0].isdigit():
            key = key.replace(route.split("/")[2], "{id}", 1)
        size = int(headers.get("content-length", "0"))
        body = bytearray()
        while not isinstance(event := self._next_event(sock, conn), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
            if len(body) > self.limit:  # MaxBytesReader: limit+1 bytes, then refuse
                with self._lock:
                    self.seen.append(Seen(key, size, refused=True))
                message = f"request body exceeds maximum size of {self.limit} bytes"
                if not self.hang_up_silently:
                    self._answer(sock, conn, 413, {"error": message}, close=True)
                sock.shutdown(socket.SHUT_WR)
                self._stopping.wait(self.linger)
                return False
        with self._lock:
            self.seen.append(Seen(key, size, refused=False))
            status, answer = self._handle(key, route, query, bytes(body))
        self._answer(sock, conn, status, answer)
        return True

    def _handle(self, key: str, route: str, query: dict, body: bytes) -> tuple[int, dict]:
        if key == "PUT /files":
            self.files[query["path"]] = bytearray(body)
            return 200, {"message": f"Written {len(body)} bytes"}
        if key == "POST /handles/open":
            handle = len(self._handles) + 1
            self._handles[handle] = query["path"]
            if int(query.get("flags", "0")) & O_TRUNC or query["path"] not in self.files:
                self.files[query["path"]] = bytearray()
            return 200, {"handle_id": handle, "path": query["path"], "flags": 0, "lease": 60}
        if key == "PUT /handles/{id}/write":
            data = self.files[self._handles[int(route.split("/")[2])]]
            offset = int(query["offset"])
            data[len(data) : offset] = bytes(max(0, offset - len(data)))
            data[offset : offset + len(body)] = body
            return 200, {"bytes_written": len(body), "position": 0}
        if key == "DELETE /handles/{id}":
            return 200, {"message": "handle closed"}
        if key == "POST /rename":  # localfs-like: replaces the target
            self.files[json.loads(body)["newPath"]] = self.files.pop(query["path"])
            return 200, {"message": "renamed"}
        return 404, {"error": f"not served by this fake: {key}"}

    @staticmethod
    def _answer(
        sock: socket.socket, conn: h11.Connection, status: int, body: dict, *, close: bool = False
    ) -> None:
        data = json.dumps(body).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        if close:
            headers.append(("Connection", "close"))
        out = conn.send(h11.Response(status_code=status, headers=headers))
        out += conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage())
        sock.sendall(out)
