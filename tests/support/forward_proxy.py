"""A tiny HTTP forward proxy, to prove that requests really went through one.

A client configured with ``HTTP_PROXY=proxy.url`` sends requests in absolute form
(``GET http://host:port/api/v1/stat?path=/x HTTP/1.1``). The proxy records each such
request line, sends the request on to that origin in origin form over a kept-alive
connection (``http.client``), and relays the answer: a body of known length as it is, any
other one re-chunked piece by piece as it arrives, so a streamed or followed body flows
through unbuffered. A request in origin form (a client that ignored the proxy setting)
gets ``400`` and is recorded as refused, so it cannot pass unnoticed.

    with ForwardProxy() as proxy:
        env = {**os.environ, "HTTP_PROXY": proxy.url, "NO_PROXY": ""}
        ...                                   # the client under test talks to a server
        proxy.requests                        # [("GET", "http://127.0.0.1:4321/..."), ...]

Only what the AGFS client sends is spoken: ``Content-Length`` request bodies (no chunked
uploads), plain http origins (no ``CONNECT``).
"""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from typing import Any
from urllib.parse import urlsplit

#: Headers that belong to one hop; the proxy does not pass them on.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
    }
)


class ForwardProxy:
    """A threaded forward proxy on a free loopback port; ``requests`` lists what it relayed
    as ``(method, absolute URL)``, ``refused`` the request lines it would not relay."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.rfile, self.connection)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ForwardProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ForwardProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def relayed(self, method: str, route: str) -> int:
        """How many ``method`` requests for ``route`` (e.g. ``/api/v1/files``) it relayed."""
        with self._lock:
            return sum(1 for m, url in self.requests if m == method and urlsplit(url).path == route)

    # -- one client connection ----------------------------------------------------------

    def _serve(self, rfile: Any, client: socket.socket) -> None:
        origins: dict[str, http.client.HTTPConnection] = {}
        try:
            while self._relay_one(rfile, client, origins):
                pass
        except (OSError, http.client.HTTPException):
            pass  # the client or the origin went away: so does this connection
        finally:
            for origin in origins.values():
                origin.close()

    def _relay_one(
        self, rfile: Any, client: socket.socket, origins: dict[str, http.client.HTTPConnection]
    ) -> bool:
        line = rfile.readline(65537)
        if not line:
            return False
        method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = _read_headers(rfile)
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.netloc:
            with self._lock:
                self.refused.append(line.decode("latin-1").strip())
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return True
        with self._lock:
            self.requests.append((method, target))
        length = int(_get(headers, "content-length") or 0)
        body = rfile.read(length) if length else None
        origin = origins.get(parts.netloc)
        if origin is None:
            origin = origins[parts.netloc] = http.client.HTTPConnection(parts.netloc, timeout=60)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        origin.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                origin.putheader(name, value)
        origin.endheaders(body)
        answer = origin.getresponse()
        try:
            self._relay_answer(method, answer, client)
        finally:
            answer.close()  # read to its end: the origin connection is free again
        return True

    @staticmethod
    def _relay_answer(method: str, answer: http.client.HTTPResponse, client: socket.socket) -> None:
        lines = [f"HTTP/1.1 {answer.status} {answer.reason}"]
        kept = [(n, v) for n, v in answer.getheaders() if n.lower() not in _HOP_BY_HOP]
        lines += [f"{name}: {value}" for name, value in kept]
        known_length = _get(kept, "content-length") is not None or method == "HEAD"
        bodiless = method == "HEAD" or answer.status in (204, 304)
        if not known_length and not bodiless:
            lines.append("Transfer-Encoding: chunked")
        client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if bodiless:
            answer.read()
            return
        while piece := answer.read1(1 << 16):
            client.sendall(piece if known_length else b"%x\r\n%s\r\n" % (len(piece), piece))
        if not known_length:
            client.sendall(b"0\r\n\r\n")


def _read_headers(rfile: Any) -> list[tuple[str, str]]:
    headers = []
    while (line := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    return headers


def _get(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name), None)
