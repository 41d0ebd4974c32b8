"""How the AGFS client's requests travel: one connection pool, each request sent,
retried, counted and turned into a typed error.

With ``client`` (which builds each endpoint's request on this), the only code that speaks
HTTP to the server. Answers read whole go straight to the transport (``_DirectRoute``):
that halves a small request's CPU. httpx carries the streamed ones, and everything when a
proxy or a transport of the caller's is in the way.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import trio

from . import errors
from .retry import RETRY_STATUSES, Backoff, StalledDirectories
from .stats import RequestStats
from .transport import AgfsTransport, FileBody, Reply, Timeouts
from .wire import normalize_base_url

# The request log keeps the name it has always had: `--debug` readers filter on it.
log = logging.getLogger("agfs_fuse.client")

Body = bytes | FileBody | Callable[[], AsyncIterator[bytes]] | None
"""A request body: bytes, a file, or a function making a fresh stream (so a retry can
resend)."""

_HANDLE_ID = re.compile(r"/handles/\d+")


def _proxied(url: str) -> bool:
    """Whether the environment sends requests for ``url`` through a proxy, which only
    httpx's own transport speaks."""
    parts = urlsplit(url)
    host, scheme = parts.hostname or "", parts.scheme
    proxies = urllib.request.getproxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


def _ignore_cookies(response: httpx.Response) -> None:
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(exc: BaseException) -> str:
    """The first non-empty message down an exception's cause chain.

    Under trio, httpx raises ``ConnectError('')`` for a TLS failure; the reason
    ("CERTIFICATE_VERIFY_FAILED", a refused client certificate) sits a few causes down.
    """
    return next((str(e).strip() for e in _causes(exc) if str(e).strip()), type(exc).__name__)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return any(isinstance(e, kind) for e in _causes(exc))


def _query(path: str | None, params: Mapping[str, Any]) -> str:
    """``?path=...&k=v``, every value fully percent-encoded (Go reads ``+`` as a space)."""
    query = []
    if path is not None:
        query.append("path=" + quote(path, safe="/"))
    for key, value in params.items():
        if value is not None:
            query.append(f"{key}={quote(str(value), safe='')}")
    return "?" + "&".join(query) if query else ""


class _DirectRoute:
    """Requests straight to ``AgfsTransport.exchange``, past httpx's Request and Response
    objects (URL parsing, header models, the response's decoders): about half the CPU of
    a small request. Same headers as through httpx, except ``Accept-Encoding``: answers
    come unencoded, as nothing here would decode them."""

    def __init__(
        self, transport: AgfsTransport, key: tuple[str, str, int], base_path: str, headers: list
    ) -> None:
        self.transport = transport
        self.key = key
        self.base_path = base_path
        self.headers = headers

    @classmethod
    def of(
        cls, base_url: str, transport: httpx.AsyncBaseTransport | None, defaults: httpx.Headers
    ) -> _DirectRoute | None:
        """None unless the transport is ours; a URL httpx must judge (a port out of range,
        a host IDNA refuses) goes through it. (A user:password@ never gets here: the
        base URL was refused by ``wire.normalize_base_url``.)"""
        parts = urlsplit(base_url)
        if not isinstance(transport, AgfsTransport) or not parts.hostname:
            return None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default_port = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default_port
            host_header = (host if port == default_port else f"{host}:{port}").encode("idna")
        except ValueError:  # UnicodeError too
            return None
        headers = [(b"Host", host_header)]
        headers += [(k, v) for k, v in defaults.raw if k.lower() != b"accept-encoding"]
        base_path = quote(parts.path, safe="/%")
        return cls(transport, (parts.scheme, parts.hostname, port), base_path, headers)

    async def send(
        self,
        method: str,
        route_and_query: str,
        extra: Mapping[str, str] | None,
        body: bytes | FileBody | None,
        timeouts: Timeouts,
    ) -> Reply:
        headers = list(self.headers)
        for name, value in (extra or {}).items():
            if name.lower() != "content-length":  # set below, from the body itself
                headers.append((name.encode("latin-1"), value.encode("latin-1")))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            size = 0 if body is None else len(body) if isinstance(body, bytes) else body.size
            headers.append((b"Content-Length", str(size).encode()))
        target = (self.base_path + route_and_query).encode("ascii")
        return await self.transport.exchange(self.key, method, target, headers, body, timeouts)


class AgfsSession:
    """One connection pool to one AGFS server, and how a request goes over it.

    ``timeout`` is the per-request inactivity deadline: no single read, write or pool wait
    may take longer, so a silent server gives ``RequestTimeout`` instead of a hang.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        max_connections: int = 32,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        stats: RequestStats | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.timeout = timeout
        self.stats = stats or RequestStats()
        self.backoff = backoff or Backoff()
        self.stalled = StalledDirectories(timeout)
        if transport is None and not _proxied(self.base_url):
            transport = AgfsTransport(verify=verify, max_connections=max_connections)
        self._timeouts = Timeouts(
            connect=min(connect_timeout, timeout), read=timeout, write=timeout, pool=timeout
        )
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(connect_timeout, timeout)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers=dict(headers or {}),
            verify=verify,
            follow_redirects=False,
        )
        # AGFS sets no cookies, but httpx wraps every response in urllib's cookie classes
        # to look for them: a tenth of the CPU of a small request.
        self._http.cookies.extract_cookies = _ignore_cookies  # type: ignore[method-assign]
        self._direct = _DirectRoute.of(self.base_url, transport, self._http.headers)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------

    def _url(self, route: str, path: str | None = None, **params: Any) -> str:
        return self.base_url + route + _query(path, params)

    async def _send(
        self,
        method: str,
        route: str,
        path: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Body = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        follow: bool = False,
        idempotent: bool = False,
    ) -> httpx.Response | Reply:
        """Send one request; return a successful answer or raise a typed error. A streamed
        answer (``stream=True``) is an ``httpx.Response``; others may be a ``Reply``.

        A request that never reached the server (connection refused) is retried with
        backoff for a couple of seconds; one that may have reached it is retried (also on
        502/503/504) only when ``idempotent``: sending it twice must change nothing.
        ``follow`` lifts the inactivity deadline for reading: a followed stream may be
        quiet for as long as nobody writes to it.
        """
        kind = f"{method} {_HANDLE_ID.sub('/handles/{id}', route)}"
        delays = self.backoff.delays()
        directory = posixpath.dirname(path) if path else None
        while True:
            started = time.monotonic()
            short = self.stalled.timeout_for(directory) if idempotent and directory else None
            try:
                response = await self._exchange(
                    method,
                    route,
                    path,
                    params,
                    json_body,
                    content,
                    headers,
                    stream,
                    follow,
                    deadline=short,
                )
            except errors.AgfsError as exc:
                self._account(kind, started, None, error=type(exc).__name__, path=path)
                if isinstance(exc, errors.RequestTimeout) and directory:
                    self.stalled.timed_out(directory)
                delay = next(delays, None) if self._may_retry(exc, idempotent) else None
                if delay is None:
                    raise
                log.debug("%s %s: %s; retrying in %.2f s", kind, path or "", exc, delay)
                await trio.sleep(delay)
                continue
            if directory:
                self.stalled.answered(directory)
            self._account(kind, started, response, path=path, streamed=stream)
            return response

    @staticmethod
    def _may_retry(exc: errors.AgfsError, idempotent: bool) -> bool:
        if isinstance(exc, errors.TlsFailure):
            return False
        if isinstance(exc, errors.ConnectionLost):
            return idempotent  # it may have reached the server
        if isinstance(exc, errors.ServerUnreachable):
            return True  # never sent
        return idempotent and exc.status in RETRY_STATUSES

    def _account(
        self,
        kind: str,
        started: float,
        response: httpx.Response | Reply | None,
        *,
        error: str = "",
        path: str | None,
        streamed: bool = False,
    ) -> None:
        """Count one request; a streamed body is counted by its reader as it arrives."""
        elapsed = time.monotonic() - started
        sent = received = 0
        if isinstance(response, Reply):
            sent, received = response.sent, len(response.content)
        elif response is not None:
            sent = int(response.request.headers.get("content-length") or 0)
            received = 0 if streamed else len(response.content)
        self.stats.record(kind, elapsed, sent=sent, received=received, error=error)
        if log.isEnabledFor(logging.DEBUG):
            outcome = str(response.status_code) if response is not None else error
            log.debug("%s %s -> %s (%.1f ms)", kind, path or "", outcome, elapsed * 1000)

    async def _exchange(
        self,
        method: str,
        route: str,
        path: str | None,
        params: Mapping[str, Any] | None,
        json_body: Any,
        content: Body,
        headers: Mapping[str, str] | None,
        stream: bool,
        follow: bool = False,
        *,
        deadline: float | None = None,
    ) -> httpx.Response | Reply:
        body = content() if callable(content) else content  # a fresh stream per attempt
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            if (
                self._direct is not None
                and not stream
                and isinstance(body, bytes | FileBody | None)
            ):
                timeouts = self._timeouts if deadline is None else Timeouts(*[deadline] * 4)
                response: httpx.Response | Reply = await self._direct.send(
                    method, route + _query(path, params or {}), headers, body, timeouts
                )
            else:
                response = await self._send_with_httpx(
                    method, route, path, params, body, headers, stream, follow, deadline
                )
        except httpx.ConnectTimeout as exc:
            raise errors.ServerUnreachable(
                f"cannot connect to {self.base_url}: timed out", path=path
            ) from exc
        except httpx.TimeoutException as exc:
            raise errors.RequestTimeout(
                f"{method} {route}: no answer from {self.base_url} within "
                f"{deadline or self.timeout:g} s",
                path=path,
            ) from exc
        except httpx.ConnectError as exc:
            cls = errors.TlsFailure if _caused_by(exc, ssl.SSLError) else errors.ServerUnreachable
            raise cls(f"cannot connect to {self.base_url}: {_reason(exc)}", path=path) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise errors.ConnectionLost(
                f"{method} {route}: connection to {self.base_url} lost: {_reason(exc)}",
                path=path,
            ) from exc
        if response.status_code < 300:
            return response
        if stream:
            await response.aread()
            await response.aclose()
        raise self._error_for(response, route, path)

    async def _send_with_httpx(
        self,
        method: str,
        route: str,
        path: str | None,
        params: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, str] | None,
        stream: bool,
        follow: bool,
        deadline: float | None,
    ) -> httpx.Response:
        """Through httpx's client: streamed answers, a proxy, or a transport given."""
        if follow:
            timeout: Any = httpx.Timeout(self.timeout, read=None)
        elif deadline is not None:
            timeout = httpx.Timeout(deadline)
        else:
            timeout = httpx.USE_CLIENT_DEFAULT
        file_body = body if isinstance(body, FileBody) else None
        request = self._http.build_request(
            method,
            self._url(route, path, **(params or {})),
            content=None if file_body is not None else body,
            headers=headers,
            timeout=timeout,
        )
        if file_body is not None:  # the same request, with the file as its stream
            request = httpx.Request(
                method,
                request.url,
                headers=request.headers,
                stream=file_body,
                extensions=request.extensions,
            )
        return await self._http.send(request, stream=stream)

    def _error_for(
        self, response: httpx.Response | Reply, route: str, path: str | None
    ) -> errors.AgfsError:
        status = response.status_code
        if 300 <= status < 400:
            target = response.headers.get("location", "?")
            return errors.ProtocolError(
                f"{route}: unexpected redirect {status} to {target}", path=path, status=status
            )
        try:
            body = response.json()
            message = body.get("error") if isinstance(body, dict) else None
        except ValueError:
            message = None
        if isinstance(message, str):
            return errors.error_from_answer(status, message, path)
        if status == 404:
            return errors.ProtocolError(
                f"{self.base_url}{route} is not an AGFS route (HTTP 404 {response.text[:60]!r});"
                " is the URL the server's /api/v1 endpoint?",
                path=path,
                status=status,
            )
        cls = errors.error_class_for(status, "")
        return cls(f"HTTP {status} from server: {response.text[:80]!r}", path=path, status=status)

    async def _json(self, method: str, route: str, path: str | None = None, **kw: Any) -> Any:
        response = await self._send(method, route, path, **kw)
        try:
            return response.json()
        except ValueError as exc:
            raise errors.ProtocolError(
                f"{route}: answer is not JSON: {response.text[:80]!r}", path=path
            ) from exc
