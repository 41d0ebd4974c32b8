"""A tiny, independent AGFS HTTP client for checking the server's state in mount tests.

It deliberately does not use ``agfs_fuse.client``: the mount tests check what the mount did
against the server itself, over plain httpx, following ``agfs-protocol.md``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

import httpx

_MISSING_HINTS = ("no such", "not found", "does not exist")


class AgfsHttpError(AssertionError):
    """An unexpected answer from the server."""


class AgfsHttp:
    """Direct calls to ``BASE/api/v1`` routes; paths are fully percent-encoded."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    # -- plumbing ------------------------------------------------------------------------

    def _url(self, route: str, path: str | None = None, **params: Any) -> str:
        query = []
        if path is not None:
            query.append("path=" + quote(path, safe=""))
        query += [f"{k}={quote(str(v), safe='')}" for k, v in params.items()]
        return f"{self.base_url}{route}" + ("?" + "&".join(query) if query else "")

    def request(
        self,
        method: str,
        route: str,
        path: str | None = None,
        *,
        content: bytes | None = None,
        json_body: Any = None,
        **params: Any,
    ) -> httpx.Response:
        """One request; returns the response whatever its status."""
        if json_body is not None:
            content = json.dumps(json_body).encode()
        return self.client.request(method, self._url(route, path, **params), content=content)

    def _ok(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise AgfsHttpError(
                f"{response.request.method} {response.request.url} -> "
                f"{response.status_code} {response.text[:500]}"
            )
        return response

    @staticmethod
    def is_missing(response: httpx.Response) -> bool:
        """True when the answer means "no such file" (404, or a 500 whose text says so)."""
        if response.status_code == 404:
            return True
        return response.status_code >= 400 and any(
            hint in response.text.lower() for hint in _MISSING_HINTS
        )

    # -- queries -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._ok(self.request("GET", "/health")).json()

    def stat(self, path: str) -> dict[str, Any] | None:
        """The FileInfo of ``path``, or None when it does not exist."""
        response = self.request("GET", "/stat", path)
        if self.is_missing(response):
            return None
        return self._ok(response).json()

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def list(self, path: str) -> list[dict[str, Any]]:
        """The FileInfo list of a directory (``{"files": null}`` -> [])."""
        return self._ok(self.request("GET", "/directories", path)).json()["files"] or []

    def names(self, path: str) -> set[str]:
        """The entry names of a directory."""
        return {info["name"] for info in self.list(path)}

    def read(self, path: str, offset: int | None = None, size: int | None = None) -> bytes:
        params: dict[str, Any] = {}
        if offset is not None:
            params["offset"] = offset
        if size is not None:
            params["size"] = size
        return self._ok(self.request("GET", "/files", path, **params)).content

    def sha256(self, path: str) -> str:
        """sha256 of a file's content, streamed."""
        digest = hashlib.sha256()
        with self.client.stream("GET", self._url("/files", path)) as response:
            if response.status_code >= 400:
                response.read()
                self._ok(response)
            for chunk in response.iter_bytes():
                digest.update(chunk)
        return digest.hexdigest()

    def readlink(self, path: str) -> str:
        return self._ok(self.request("GET", "/readlink", path)).json()["target"]

    def meta_type(self, path: str) -> str | None:
        info = self.stat(path)
        if info is None:
            return None
        meta = info.get("meta") or {}
        return meta.get("Type", meta.get("type"))

    # -- mutations -------------------------------------------------------------------------

    def write(self, path: str, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._ok(self.request("PUT", "/files", path, content=data))

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self._ok(self.request("POST", "/directories", path, mode=format(mode, "o")))

    def delete(self, path: str, *, recursive: bool = False) -> None:
        params = {"recursive": "true"} if recursive else {}
        self._ok(self.request("DELETE", "/files", path, **params))

    def symlink(self, target: str, link: str) -> None:
        self._ok(self.request("POST", "/symlink", link, json_body={"target": target}))

    def chmod(self, path: str, mode: int) -> None:
        self._ok(self.request("POST", "/chmod", path, json_body={"mode": mode}))
