"""The Go AGFS SDK client (``agfs-sdk/go``) as proxyfs uses it, with its error texts.

proxyfs forwards every operation through this client and hands its errors back as plain
(untyped) Go errors, so the proxying server answers **500** whatever the remote said, with
the remote's status inside the text: ``HTTP 404: read: /x: not found``. The quirks kept:

- the base URL gets ``/api/v1`` appended unless it already ends with it (a trailing ``/``
  dropped first), so ``http://host:8080/api/v1/memfs`` asks ``.../memfs/api/v1/health``;
- Create, Mkdir, Remove, Rename and Chmod accept any 2xx and turn a 501 into the bare
  ``operation not supported``; Read, ReadDir and Stat want exactly 200 and quote any other
  status (501 included); an error body that is not a JSON object is ``HTTP <n>: failed to
  decode error response``;
- Write (PUT) is retried 3 times, after 1, 2 and 4 s, on a 5xx whose body decoded and on
  a transport error whose text says ``connection refused``/``reset``, ``broken pipe`` or
  ``timeout`` (a client timeout says ``Client.Timeout``, so it is *not* retried);
- every request has a 10 s deadline; a stream has none, only 60 s of silence ends it;
- listed and stat'ed ``modTime`` go through Go's ``time.Parse``: what does not parse
  becomes Go's zero time ``0001-01-01T00:00:00Z``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

from agfs_fuse.server.errors import FsError
from agfs_fuse.server.plugins.base import FileInfo
from agfs_fuse.server.plugins.proxyfs_config import go_quote

log = logging.getLogger("agfs_fuse.server.proxyfs")
# httpx logs every request at INFO: the server's log would repeat each proxied request.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: ``http.Client{Timeout: 10 * time.Second}`` of ``agfs.NewClient``.
REQUEST_TIMEOUT = 10.0
#: ``DefaultStreamingProgressTimeout``: silence that ends a stream.
STREAM_SILENCE = 60.0
#: ``Client.Write`` = ``WriteWithRetry(path, data, 3)``; waits 1 s, 2 s, 4 s.
WRITE_RETRIES = 3
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_RETRYABLE = ("connection refused", "connection reset", "broken pipe", "timeout")
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class RemoteError(FsError):
    """An error of the SDK client: always an untyped Go error (500) at the proxy."""


def normalize_base_url(base_url: str) -> str:
    """``normalizeBaseURL``: drop one trailing ``/``, append ``/api/v1`` unless present."""
    if base_url.endswith("/"):
        base_url = base_url[:-1]
    if "://" not in base_url:
        return base_url
    if not base_url.endswith("/api/v1"):
        base_url += "/api/v1"
    return base_url


def go_query(params: dict[str, str]) -> str:
    """``url.Values.Encode``: keys sorted, ``QueryEscape`` (space as ``+``)."""
    return "&".join(
        f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}" for k, v in sorted(params.items())
    )


def go_time_text(text: Any) -> str:
    """A ``modTime`` after Go's ``time.Parse(RFC3339Nano)`` and ``Format`` round trip."""
    match = _RFC3339.match(text) if isinstance(text, str) else None
    if match is None:
        return GO_ZERO_TIME
    fraction = (match[2] or "").rstrip("0")
    zone = "Z" if match[3] in ("+00:00", "-00:00") else match[3]
    return match[1] + ("" if fraction == "." else fraction) + zone


class RemoteFileInfo(FileInfo):
    """A FileInfo decoded from the remote: its ``modTime`` text is passed on as Go
    re-prints it, and a non-null empty ``Content`` stays ``{}``."""

    __slots__ = ("mod_time",)

    def __init__(self, *args: Any, mod_time: str = GO_ZERO_TIME, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mod_time = mod_time

    def as_json(self) -> dict[str, Any]:
        out = super().as_json()
        out["modTime"] = self.mod_time
        if self.content is not None:
            out["meta"]["Content"] = dict(sorted(self.content.items()))
        return out


def _field(obj: dict[str, Any], name: str) -> Any:
    """Go's case-insensitive match of a JSON key to a struct field."""
    if name in obj:
        return obj[name]
    lower = name.lower()
    for key, value in obj.items():
        if key.lower() == lower:
            return value
    return None


def _typed(value: Any, kind: type, zero: Any, what: str) -> Any:
    if value is None:
        return zero
    if kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"json: cannot unmarshal {type(value).__name__} into {what}")
    return value


def decode_file_info(obj: Any) -> RemoteFileInfo:
    """``FileInfoResponse`` into a FileInfo (``ValueError`` with Go's reason)."""
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ValueError("json: cannot unmarshal into Go value of type FileInfoResponse")
    meta = _field(obj, "meta") or {}
    if not isinstance(meta, dict):
        raise ValueError("json: cannot unmarshal into Go struct field .meta of type MetaData")
    content = _field(meta, "Content")
    if content is not None and (
        not isinstance(content, dict) or not all(isinstance(v, str) for v in content.values())
    ):
        raise ValueError("json: cannot unmarshal into Go struct field .meta.Content")
    mode = _typed(_field(obj, "mode"), int, 0, "mode of type uint32")
    if not 0 <= mode < 1 << 32:
        raise ValueError("json: cannot unmarshal number into Go struct field .mode of type uint32")
    return RemoteFileInfo(
        _typed(_field(obj, "name"), str, "", "name of type string"),
        _typed(_field(obj, "size"), int, 0, "size of type int64"),
        mode,
        0,
        _typed(_field(obj, "isDir"), bool, False, "isDir of type bool"),
        _typed(_field(meta, "Name"), str, "", "Name of type string"),
        _typed(_field(meta, "Type"), str, "", "Type of type string"),
        content,
        mod_time=go_time_text(_field(obj, "modTime")),
    )


def _first_json(body: bytes) -> Any:
    """``json.NewDecoder(body).Decode``: the first JSON value, trailing bytes ignored."""
    text = body.decode("utf-8", "replace").lstrip(" \t\r\n")
    return json.JSONDecoder().raw_decode(text)[0]


def error_text(resp: httpx.Response) -> tuple[str, bool]:
    """(``HTTP <status>: <error>``, whether the body decoded as Go's ``ErrorResponse``)."""
    try:
        body = _first_json(resp.read())
    except ValueError:
        body = ()
    if body is None:
        body = {}
    message = _field(body, "error") if isinstance(body, dict) else None
    if not isinstance(body, dict) or not isinstance(message, str | type(None)):
        return f"HTTP {resp.status_code}: failed to decode error response", False
    return f"HTTP {resp.status_code}: {message or ''}", True


def _host_port(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 0
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _resolver() -> str:
    """`` on NS:53``, the first ``/etc/resolv.conf`` nameserver Go's resolver names."""
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    ns = fields[1]
                    return f" on [{ns}]:53" if ":" in ns else f" on {ns}:53"
    except OSError:
        pass
    return ""


def transport_error(method: str, url: str, exc: httpx.HTTPError) -> str:
    """Go's ``*url.Error`` text for a request that got no answer."""
    text = str(exc)
    if isinstance(exc, httpx.TimeoutException):
        reason = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    elif isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        reason = f"dial tcp {_host_port(url)}: connect: connection refused"
    elif isinstance(exc, httpx.ConnectError) and (
        "name or service not known" in text.lower() or "no address" in text.lower()
    ):
        reason = f"dial tcp: lookup {urlsplit(url).hostname}{_resolver()}: no such host"
    elif isinstance(exc, httpx.RemoteProtocolError):
        reason = "EOF"
    elif "reset" in text.lower():
        reason = f"read tcp {_host_port(url)}: read: connection reset by peer"
    else:
        reason = text or type(exc).__name__
    return f"{method.capitalize()} {go_quote(url)}: {reason}"


class RemoteAgfs:
    """``agfs.Client`` for one base URL; safe to share between request threads."""

    def __init__(
        self,
        base_url: str,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``sleep`` and ``transport`` are for tests: the waits between write retries, and
        where requests go instead of the network."""
        self.base_url = normalize_base_url(base_url)
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=REQUEST_TIMEOUT, follow_redirects=True, transport=transport
        )
        self._stream_http = httpx.Client(
            timeout=httpx.Timeout(None, read=STREAM_SILENCE), follow_redirects=True
        )

    def close(self) -> None:
        """Drop the pooled connections."""
        self._http.close()
        self._stream_http.close()

    def _url(self, endpoint: str, params: dict[str, str] | None) -> str:
        url = self.base_url + endpoint
        return f"{url}?{go_query(params)}" if params else url

    def _do(
        self,
        method: str,
        endpoint: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> httpx.Response:
        """``doRequest``: a body always goes as ``application/json`` (even file data)."""
        url = self._url(endpoint, params)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            return self._http.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise RemoteError(
                "failed to execute request: " + transport_error(method, url, exc)
            ) from None
        except httpx.InvalidURL as exc:
            raise RemoteError(f"failed to create request: {exc}") from None

    @staticmethod
    def _expect_2xx(resp: httpx.Response) -> None:
        """``handleErrorResponse``."""
        if 200 <= resp.status_code < 300:
            return
        if resp.status_code == 501:
            raise RemoteError("operation not supported")
        raise RemoteError(error_text(resp)[0])

    @staticmethod
    def _expect_200(resp: httpx.Response) -> None:
        if resp.status_code != 200:
            raise RemoteError(error_text(resp)[0])

    def health(self) -> None:
        """``Health``: any 200 will do."""
        resp = self._do("GET", "/health")
        if resp.status_code != 200:
            raise RemoteError(f"health check failed with status: {resp.status_code}")

    def create(self, path: str) -> None:
        self._expect_2xx(self._do("POST", "/files", {"path": path}))

    def mkdir(self, path: str, perm: int) -> None:
        self._expect_2xx(self._do("POST", "/directories", {"path": path, "mode": f"{perm:o}"}))

    def remove(self, path: str) -> None:
        self._expect_2xx(self._do("DELETE", "/files", {"path": path, "recursive": "false"}))

    def remove_all(self, path: str) -> None:
        self._expect_2xx(self._do("DELETE", "/files", {"path": path, "recursive": "true"}))

    def rename(self, old: str, new: str) -> None:
        body = json.dumps({"newPath": new}, separators=(",", ":")).encode()
        self._expect_2xx(self._do("POST", "/rename", {"path": old}, body))

    def chmod(self, path: str, mode: int) -> None:
        body = json.dumps({"mode": mode & 0xFFFFFFFF}).encode()
        self._expect_2xx(self._do("POST", "/chmod", {"path": path}, body))

    def read(self, path: str, offset: int, size: int) -> bytes:
        """``Read``: ``offset`` sent only when > 0, ``size`` only when >= 0."""
        params = {"path": path}
        if offset > 0:
            params["offset"] = str(offset)
        if size >= 0:
            params["size"] = str(size)
        resp = self._do("GET", "/files", params)
        self._expect_200(resp)
        return resp.content

    def write(self, path: str, data: bytes) -> int:
        """``Write`` = ``WriteWithRetry(path, data, 3)``; returns ``len(data)``."""
        for attempt in range(WRITE_RETRIES + 1):
            wait = float(1 << attempt)
            try:
                resp = self._do("PUT", "/files", {"path": path}, data)
            except RemoteError as exc:
                if attempt < WRITE_RETRIES and any(r in exc.message for r in _RETRYABLE):
                    log.warning("upload failed (attempt %d/4): %s", attempt + 1, exc.message)
                    self._sleep(wait)
                    continue
                raise
            if resp.status_code != 200:
                text, decoded = error_text(resp)
                if decoded and 500 <= resp.status_code < 600 and attempt < WRITE_RETRIES:
                    log.warning("server error %d (attempt %d/4)", resp.status_code, attempt + 1)
                    self._sleep(wait)
                    continue
                raise RemoteError(text)
            try:
                _first_json(resp.content)
            except ValueError as exc:
                raise RemoteError(f"failed to decode success response: {exc}") from None
            return len(data)
        raise AssertionError("unreachable")

    def read_dir(self, path: str) -> list[RemoteFileInfo]:
        resp = self._do("GET", "/directories", {"path": path})
        self._expect_200(resp)
        try:
            body = _first_json(resp.content)
            files = _field(body, "files") if isinstance(body, dict) else ()
            if not isinstance(files, list | type(None)):
                raise ValueError("json: cannot unmarshal into Go struct field .files")
            return [decode_file_info(f) for f in files or []]
        except ValueError as exc:
            raise RemoteError(f"failed to decode list response: {exc}") from None

    def stat(self, path: str) -> RemoteFileInfo:
        resp = self._do("GET", "/stat", {"path": path})
        self._expect_200(resp)
        try:
            return decode_file_info(_first_json(resp.content))
        except ValueError as exc:
            raise RemoteError(f"failed to decode file info response: {exc}") from None

    def read_stream(self, path: str) -> Iterator[bytes]:
        """``ReadStream``: the remote's ``stream=true`` body, piece by piece as it comes."""
        url = self._url("/files", {"path": path, "stream": "true"})
        try:
            resp = self._stream_http.send(self._stream_http.build_request("GET", url), stream=True)
        except httpx.HTTPError as exc:
            raise RemoteError(
                "failed to execute request: " + transport_error("GET", url, exc)
            ) from None
        if resp.status_code != 200:
            try:
                raise RemoteError(error_text(resp)[0])
            finally:
                resp.close()
        return _pieces(resp)


def _pieces(resp: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives; a broken or silent remote just ends the stream."""
    try:
        yield from resp.iter_raw()
    except httpx.HTTPError as exc:
        log.info("proxied stream ended: %s", exc)
    finally:
        resp.close()
