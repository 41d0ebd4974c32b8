"""The two ways a request reaches the AGFS server, behind one interface.

``DirectPath``: our own ``AgfsTransport``, for every request when nothing stands between
the mount and the server, which is the usual case and the one measured (see
``transport``). Whole answers and streamed ones (whole-file reads, followed streams) both
go this way: the transport reads a streamed body into buffers of its announced size,
where httpx would copy it through its decoders, and a mount streams gigabytes.

``HttpxPath``: httpx's client, for what our transport does not speak and httpx does well:
a forward proxy named by the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``,
minus ``NO_PROXY``; plain requests in absolute form, ``CONNECT`` tunnels for https), a
transport a caller hands in (unit tests use ``httpx.MockTransport``), and a server URL
whose host only httpx can judge (one IDNA refuses: its error is httpx's, as before).
It is built with public httpx API only: deadlines as ``httpx.Timeout`` objects passed
with each request, cookies refused by a ``http.cookiejar`` policy (AGFS sets none, and a
proxy's sticky cookie must not follow the mount around).

Both take a route with its encoded query, extra headers, a body and ``Timeouts``; both
answer with the transport's ``Reply`` (whole) or ``Streamed``, and raise httpx's
exceptions, which ``session`` alone turns into typed errors.
"""

from __future__ import annotations

import http.cookiejar
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

from . import __version__
from .transport import AgfsTransport, FileBody, Reply, RequestBody, Streamed, Timeouts

DEFAULT_HEADERS = {"Accept": "*/*", "User-Agent": f"agfs-fuse/{__version__}"}
"""Sent with every request, either path; the mount's own headers (``-o header=``, the
token) are added to these and win over them."""


class RequestPath(Protocol):
    """How a request gets to the server and its answer back."""

    async def whole(
        self,
        method: str,
        route_and_query: str,
        extra: Mapping[str, str] | None,
        body: RequestBody,
        timeouts: Timeouts,
    ) -> Reply: ...

    async def stream(self, method: str, route_and_query: str, timeouts: Timeouts) -> Streamed: ...

    async def aclose(self) -> None: ...


def proxied(url: str) -> bool:
    """Whether the environment sends requests for ``url`` through a proxy (the same
    variables httpx reads)."""
    parts = urlsplit(url)
    host, scheme = parts.hostname or "", parts.scheme
    proxies = urllib.request.getproxies()
    if not (proxies.get(scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(host)


def request_path_for(
    base_url: str,
    *,
    headers: Mapping[str, str],
    verify: bool | ssl.SSLContext = True,
    max_connections: int = 32,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RequestPath:
    """Our own transport, unless a transport is given, a proxy is in the way or only
    httpx can judge the URL's host."""
    merged = _merged(headers)
    if transport is None and not proxied(base_url):
        direct = DirectPath.of(
            base_url, AgfsTransport(verify=verify, max_connections=max_connections), merged
        )
        if direct is not None:
            return direct
    return HttpxPath(
        base_url,
        transport=transport,
        headers=merged,
        verify=verify,
        max_connections=max_connections,
    )


def _merged(headers: Mapping[str, str]) -> dict[str, str]:
    """``DEFAULT_HEADERS`` with ``headers`` over them (names compared without case)."""
    merged = dict(DEFAULT_HEADERS)
    for name, value in headers.items():
        for default in [d for d in merged if d.lower() == name.lower()]:
            del merged[default]
        merged[name] = value
    return merged


class DirectPath:
    """Requests straight to ``AgfsTransport``, past httpx's Request and Response objects
    (URL parsing, header models, the response's decoders): about half the CPU of a small
    request. No ``Accept-Encoding``: answers come unencoded, as nothing here decodes."""

    def __init__(
        self,
        transport: AgfsTransport,
        key: tuple[str, str, int],
        base_path: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.transport = transport
        self.key = key
        self.base_path = base_path
        self.headers = headers

    @classmethod
    def of(
        cls, base_url: str, transport: AgfsTransport, headers: Mapping[str, str]
    ) -> DirectPath | None:
        """None for a URL httpx must judge (a host IDNA refuses). (A user:password@ or a
        port out of range never gets here: ``wire.normalize_base_url`` refused them.)"""
        parts = urlsplit(base_url)
        if not parts.hostname:
            return None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default_port = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default_port
            host_header = (host if port == default_port else f"{host}:{port}").encode("idna")
        except ValueError:  # UnicodeError too
            return None
        raw = [(b"Host", host_header)]
        raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        base_path = quote(parts.path, safe="/%")
        return cls(transport, (parts.scheme, parts.hostname, port), base_path, raw)

    async def whole(
        self,
        method: str,
        route_and_query: str,
        extra: Mapping[str, str] | None,
        body: RequestBody,
        timeouts: Timeouts,
    ) -> Reply:
        headers = list(self.headers)
        for name, value in (extra or {}).items():
            if name.lower() != "content-length":  # set below, from the body itself
                headers.append((name.encode("latin-1"), value.encode("latin-1")))
        if body is not None or method in ("POST", "PUT", "PATCH"):
            size = 0 if body is None else len(body) if isinstance(body, bytes) else body.size
            headers.append((b"Content-Length", str(size).encode()))
        target = self._target(route_and_query)
        return await self.transport.exchange(self.key, method, target, headers, body, timeouts)

    async def stream(self, method: str, route_and_query: str, timeouts: Timeouts) -> Streamed:
        target = self._target(route_and_query)
        return await self.transport.stream(self.key, method, target, self.headers, timeouts)

    def _target(self, route_and_query: str) -> bytes:
        return (self.base_path + route_and_query).encode("ascii")

    async def aclose(self) -> None:
        await self.transport.aclose()


class _RefuseCookies(http.cookiejar.DefaultCookiePolicy):
    """Keeps no cookie: AGFS sets none, and a proxy's must not ride along."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class HttpxPath:
    """Requests through httpx's client (proxies, a given transport, an odd host)."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None,
        headers: Mapping[str, str],
        verify: bool | ssl.SSLContext,
        max_connections: int,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers=dict(headers),
            verify=verify,
            cookies=http.cookiejar.CookieJar(policy=_RefuseCookies()),
            follow_redirects=False,
        )

    async def whole(
        self,
        method: str,
        route_and_query: str,
        extra: Mapping[str, str] | None,
        body: RequestBody,
        timeouts: Timeouts,
    ) -> Reply:
        request = self._request(method, route_and_query, extra, body, timeouts)
        response = await self._http.send(request)
        sent = len(body) if isinstance(body, bytes) else body.size if body is not None else 0
        return Reply(response.status_code, _fields(response), response.content, sent)

    async def stream(self, method: str, route_and_query: str, timeouts: Timeouts) -> Streamed:
        request = self._request(method, route_and_query, None, None, timeouts)
        response = await self._http.send(request, stream=True)
        return Streamed(
            response.status_code, _fields(response), response.aiter_bytes(), response.aclose
        )

    def _request(
        self,
        method: str,
        route_and_query: str,
        extra: Mapping[str, str] | None,
        body: RequestBody,
        timeouts: Timeouts,
    ) -> httpx.Request:
        file_body = body if isinstance(body, FileBody) else None
        request = self._http.build_request(
            method,
            self.base_url + route_and_query,
            content=None if file_body is not None else body,
            headers=extra,
            timeout=timeouts.as_httpx(),
        )
        if file_body is None:
            return request
        # the same request, with the file as its stream (its length is in ``extra``)
        return httpx.Request(
            method,
            request.url,
            headers=request.headers,
            stream=file_body,
            extensions=request.extensions,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def _fields(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers.items()}
