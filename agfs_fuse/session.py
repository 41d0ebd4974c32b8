"""How the AGFS client's requests travel: each request sent, retried, counted and turned
into a typed error.

With ``client`` (which builds each endpoint's request on this), the only code that speaks
HTTP to the server. Which way a request takes (our own transport, or httpx for a proxy or
a transport of the caller's) is chosen once per session by ``request_paths``; everything
here is the same on both.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import ssl
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx
import trio

from . import errors
from .request_paths import request_path_for
from .retry import RETRY_STATUSES, Backoff, StalledDirectories
from .stats import RequestStats
from .transport import Reply, RequestBody, Streamed, Timeouts
from .wire import normalize_base_url

# The request log keeps the name it has always had: `--debug` readers filter on it.
log = logging.getLogger("agfs_fuse.client")

_HANDLE_ID = re.compile(r"/handles/\d+")


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
        self._timeouts = Timeouts(
            connect=min(connect_timeout, timeout), read=timeout, write=timeout, pool=timeout
        )
        self._path = request_path_for(
            self.base_url,
            headers=headers or {},
            verify=verify,
            max_connections=max_connections,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._path.aclose()

    # -- plumbing -------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        route: str,
        path: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: RequestBody = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> Reply:
        """Send one request and read its whole answer; return it when successful, else
        raise a typed error (see ``_request`` for retries)."""
        answer = await self._request(
            method, route, path, params, json_body, content, headers, idempotent=idempotent
        )
        assert isinstance(answer, Reply)
        return answer

    async def _stream(
        self,
        route: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        follow: bool = False,
        idempotent: bool = False,
    ) -> Streamed:
        """A ``GET`` whose successful answer's body the caller reads as it arrives and
        then closes. ``follow`` lifts the inactivity deadline for reading: a followed
        stream may be quiet for as long as nobody writes to it."""
        answer = await self._request(
            "GET", route, path, params, stream=True, follow=follow, idempotent=idempotent
        )
        assert isinstance(answer, Streamed)
        return answer

    async def _request(
        self,
        method: str,
        route: str,
        path: str | None,
        params: Mapping[str, Any] | None,
        json_body: Any = None,
        content: RequestBody = None,
        headers: Mapping[str, str] | None = None,
        *,
        stream: bool = False,
        follow: bool = False,
        idempotent: bool = False,
    ) -> Reply | Streamed:
        """Send one request until it is answered or may not be tried again.

        A request that never reached the server (connection refused) is retried with
        backoff for a couple of seconds; one that may have reached it is retried (also on
        502/503/504) only when ``idempotent``: sending it twice must change nothing.
        """
        kind = f"{method} {_HANDLE_ID.sub('/handles/{id}', route)}"
        delays = self.backoff.delays()
        directory = posixpath.dirname(path) if path else None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        target = route + _query(path, params or {})
        while True:
            started = time.monotonic()
            short = self.stalled.timeout_for(directory) if idempotent and directory else None
            timeouts = self._timeouts_for(short, follow)
            try:
                answer = await self._exchange(
                    method, route, target, path, content, headers, stream, timeouts
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
            self._account(kind, started, answer, path=path)
            return answer

    def _timeouts_for(self, short: float | None, follow: bool) -> Timeouts:
        """The session's deadlines; one ``short`` one for every step while the directory
        is known to stall; no read deadline for a followed stream."""
        if short is not None:
            return Timeouts.all(short)
        if follow:
            t = self._timeouts
            return Timeouts(connect=t.connect, read=None, write=t.write, pool=t.pool)
        return self._timeouts

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
        answer: Reply | Streamed | None,
        *,
        error: str = "",
        path: str | None,
    ) -> None:
        """Count one request; a streamed body is counted by its reader as it arrives."""
        elapsed = time.monotonic() - started
        sent = received = 0
        if isinstance(answer, Reply):
            sent, received = answer.sent, len(answer.content)
        self.stats.record(kind, elapsed, sent=sent, received=received, error=error)
        if log.isEnabledFor(logging.DEBUG):
            outcome = str(answer.status_code) if answer is not None else error
            log.debug("%s %s -> %s (%.1f ms)", kind, path or "", outcome, elapsed * 1000)

    async def _exchange(
        self,
        method: str,
        route: str,
        target: str,
        path: str | None,
        body: RequestBody,
        headers: Mapping[str, str] | None,
        stream: bool,
        timeouts: Timeouts,
    ) -> Reply | Streamed:
        """One attempt: the answer if successful, else the typed error for it."""
        answer: Reply | Streamed
        try:
            if stream:
                answer = await self._path.stream(method, target, timeouts)
            else:
                answer = await self._path.whole(method, target, headers, body, timeouts)
        except httpx.ConnectTimeout as exc:
            raise errors.ServerUnreachable(
                f"cannot connect to {self.base_url}: timed out", path=path
            ) from exc
        except httpx.TimeoutException as exc:
            raise errors.RequestTimeout(
                f"{method} {route}: no answer from {self.base_url} within "
                f"{timeouts.read or self.timeout:g} s",
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
        if answer.status_code < 300:
            return answer
        whole = await answer.read_whole() if isinstance(answer, Streamed) else answer
        raise self._error_for(whole, route, path)

    def _error_for(self, response: Reply, route: str, path: str | None) -> errors.AgfsError:
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
