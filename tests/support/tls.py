"""Throwaway TLS for tests: certificates made with the ``openssl`` CLI, and a TLS proxy.

Real AGFS deployments put a TLS-terminating reverse proxy (nginx, caddy) in front of the
plain-HTTP server, often with a bearer token or a client-certificate check. This module
builds the same thing on loopback, from the standard library only::

    certs = make_certs(tmp_path / "pki")          # CA, server cert (127.0.0.1), client cert
    with TlsProxy(server.url, certs, token="s3cret") as proxy:
        proxy.url                                 # https://127.0.0.1:PORT/api/v1
        proxy.header_values("authorization")      # what the clients sent

The proxy speaks HTTP/1.1 with keep-alive to its clients, reads ``Content-Length`` and
chunked request bodies, and streams responses back as they arrive from the server (with
their ``Content-Length``, or chunked when the server gave none). It keeps one plain HTTP
connection to the server per client connection. It is test infrastructure, not product code.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

OPENSSL = "openssl"
#: Idle keep-alive connections (client side and server side) end after this many seconds.
IDLE_TIMEOUT = 60.0
HANDSHAKE_TIMEOUT = 10.0
CHUNK = 64 * 1024
_REPLACED = ("host", "content-length")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files of one throwaway PKI: a CA, a server certificate and a client certificate."""

    directory: Path
    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = {cn}
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}
"""

_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str | Path, cwd: Path) -> None:
    done = subprocess.run(
        [OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"openssl {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}"
        )


def _issue(
    directory: Path, name: str, cn: str, usage: str, san: str, ca: Path, ca_key: Path, days: int
) -> tuple[Path, Path]:
    config = directory / f"{name}.cnf"
    config.write_text(
        _LEAF_CONFIG.format(cn=cn, usage=usage, san=f"subjectAltName = {san}" if san else "")
    )
    key, csr, cert = (directory / f"{name}{ext}" for ext in (".key", ".csr", ".pem"))
    _openssl("req", "-new", *_EC_KEY, "-keyout", key, "-out", csr, "-config", config, cwd=directory)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
        "-set_serial", "0x" + secrets.token_hex(8), "-days", str(days),
        "-extfile", config, "-extensions", "ext", "-out", cert,
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_certs(directory: str | Path, *, name: str = "agfs-fuse test CA", days: int = 2) -> Certs:
    """Make a CA, a server certificate for ``127.0.0.1``/``localhost`` and a client
    certificate (both signed by the CA) in ``directory`` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ca_config = directory / "ca.cnf"
    ca_config.write_text(_CA_CONFIG.format(cn=name))
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    _openssl(
        "req", "-x509", "-new", *_EC_KEY, "-keyout", ca_key, "-out", ca,
        "-days", str(days), "-config", ca_config,
        cwd=directory,
    )  # fmt: skip
    server_cert, server_key = _issue(
        directory, "server", "localhost", "serverAuth", "IP:127.0.0.1,DNS:localhost",
        ca, ca_key, days,
    )  # fmt: skip
    client_cert, client_key = _issue(
        directory, "client", "agfs-fuse test client", "clientAuth", "", ca, ca_key, days
    )
    return Certs(directory, ca, ca_key, server_cert, server_key, client_cert, client_key)


# -- the proxy --------------------------------------------------------------------------------


@dataclass
class SeenRequest:
    """One request the proxy received: header names lower-cased, repeated ones joined."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_size: int = 0


@dataclass
class _Refusal:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


class _BadRequest(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: _ProxyServer

    def setup(self) -> None:
        super().setup()
        self._upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self._drop_upstream()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    # every method goes through the same path
    def do_any(self) -> None:
        proxy = self.server.proxy
        seen = SeenRequest(
            self.command, self.path, _header_dict(self.headers.items()), status=0, body_size=0
        )
        proxy._record(seen)
        try:
            body = self._read_body()
        except (_BadRequest, ValueError):
            seen.status = 400
            self.close_connection = True
            self._reply(400, {"error": "bad request body"})
            return
        seen.body_size = len(body)
        refusal = proxy._check(self.headers)
        if refusal is not None:
            seen.status = refusal.status
            self._reply(refusal.status, {"error": refusal.message}, refusal.headers)
            return
        try:
            response = self._forward(body)
        except OSError as exc:
            seen.status = 502
            self._drop_upstream()
            self._reply(502, {"error": f"proxy: upstream failed: {exc}"})
            return
        seen.status = response.status
        try:
            self._relay(response)
        except OSError:  # the client went away mid-answer
            self.close_connection = True
            self._drop_upstream()
            return
        if response.will_close:
            self._drop_upstream()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_any

    def _read_body(self) -> bytes:
        encoding = self.headers.get("Transfer-Encoding", "")
        if "chunked" in encoding.lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise _BadRequest("connection closed inside a chunked body")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                data = self.rfile.read(size)
                if len(data) != size or self.rfile.read(2) not in (b"\r\n",):
                    raise _BadRequest("truncated chunk")
                parts.append(data)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        size = int(length)
        data = self.rfile.read(size) if size else b""
        if len(data) != size:
            raise _BadRequest("truncated body")
        return data

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _forward(self, body: bytes) -> http.client.HTTPResponse:
        """Send the request to the server; one retry when a reused connection was closed."""
        proxy = self.server.proxy
        listed = {
            token.strip().lower()
            for value in self.headers.get_all("Connection", [])
            for token in value.split(",")
        }
        for attempt in (1, 2):
            reused = self._upstream is not None
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(
                    proxy.upstream_host, proxy.upstream_port, timeout=IDLE_TIMEOUT
                )
                self._upstream.connect()
                assert self._upstream.sock is not None
                self._upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self._upstream
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", f"{proxy.upstream_host}:{proxy.upstream_port}")
                for name, value in self.headers.items():
                    lower = name.lower()
                    if lower in HOP_BY_HOP or lower in listed or lower in _REPLACED:
                        continue
                    conn.putheader(name, value)
                conn.putheader("X-Forwarded-Proto", "https")
                if body or self.command in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop_upstream()
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _relay(self, response: http.client.HTTPResponse) -> None:
        """Stream the server's answer to the client as it arrives."""
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in ("content-length", "date", "server"):
                continue
            self.send_header(name, value)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        if no_body:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            response.read()
            return
        if length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while chunk := response.read(CHUNK):
                self.wfile.write(chunk)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := response.read1(CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


def _header_dict(items: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, proxy: TlsProxy, host: str) -> None:
        self.proxy = proxy
        super().__init__((host, 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, never in the accept loop.
        request.settimeout(HANDSHAKE_TIMEOUT)
        # headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add 40 ms to every request
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.proxy.context.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as exc:
            self.proxy._handshake_failed(exc)
            return
        self.proxy._opened(tls)
        try:
            tls.settimeout(IDLE_TIMEOUT)
            self.RequestHandlerClass(tls, client_address, self)
        except OSError:
            pass
        finally:
            self.proxy._closed(tls)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that vanished is not the test's business


class TlsProxy:
    """A TLS-terminating reverse proxy on a free loopback port in front of ``upstream``.

    ``upstream``: the plain-HTTP server's URL (``http://127.0.0.1:PORT/api/v1``); the proxy's
    ``url`` keeps its path. ``client_cert``: require a client certificate signed by the CA
    (mutual TLS). ``token``: require ``Authorization: Bearer TOKEN`` (401
    ``{"error": "unauthorized"}`` otherwise). ``require_header``: ``(name, value)`` that
    every request must carry (403 otherwise). ``requests`` records what the clients sent.
    """

    def __init__(
        self,
        upstream: str,
        certs: Certs,
        *,
        client_cert: bool = False,
        token: str | None = None,
        require_header: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://HOST:PORT/...: {upstream!r}")
        self.upstream = upstream
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port
        self.path = parts.path.rstrip("/")
        self.certs = certs
        self.token = token
        self.require_header = require_header
        self.host = host
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs.server_cert, certs.server_key)
        context.set_alpn_protocols(["http/1.1"])
        if client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=certs.ca)
        self.context = context
        self.requests: list[SeenRequest] = []
        self.handshakes = 0
        self.handshake_errors: list[str] = []
        self._lock = threading.Lock()
        self._open: set[ssl.SSLSocket] = set()
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The proxy's base URL, e.g. ``https://127.0.0.1:PORT/api/v1``."""
        return f"https://{self.host}:{self.port}{self.path}"

    # -- what the proxy saw ----------------------------------------------------------------

    def header_values(self, name: str) -> list[str]:
        """The value of header ``name`` in each recorded request (missing ones skipped)."""
        with self._lock:
            seen = list(self.requests)
        return [r.headers[name.lower()] for r in seen if name.lower() in r.headers]

    def seen(self) -> list[SeenRequest]:
        """A copy of the recorded requests."""
        with self._lock:
            return list(self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def _record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def _check(self, headers: Any) -> _Refusal | None:
        if self.token is not None and headers.get("Authorization") != f"Bearer {self.token}":
            return _Refusal(401, "unauthorized", {"WWW-Authenticate": "Bearer"})
        if self.require_header is not None:
            name, value = self.require_header
            if headers.get(name) != value:
                return _Refusal(403, f"forbidden: the proxy wants header {name}")
        return None

    def _handshake_failed(self, exc: BaseException) -> None:
        with self._lock:
            self.handshake_errors.append(f"{type(exc).__name__}: {exc}")

    def _opened(self, sock: ssl.SSLSocket) -> None:
        with self._lock:
            self.handshakes += 1
            self._open.add(sock)

    def _closed(self, sock: ssl.SSLSocket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.close()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TlsProxy:
        self._server = _ProxyServer(self, self.host)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tls-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every client connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            open_sockets = list(self._open)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TlsProxy:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
