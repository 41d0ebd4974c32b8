"""Small helpers shared by the server contract tests."""

from __future__ import annotations

import contextlib
import re
import socket
from datetime import datetime
from typing import Any

import httpx

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


def check_file_info(info: dict[str, Any]) -> None:
    """Assert the FileInfo shape the real server sends (capitalised meta keys)."""
    assert list(info) == ["name", "size", "mode", "modTime", "isDir", "meta"]
    assert list(info["meta"]) == ["Name", "Type", "Content"]
    assert RFC3339NANO.match(info["modTime"]), info["modTime"]
    datetime.fromisoformat(info["modTime"])


def err(resp: httpx.Response) -> str:
    """The ``error`` text of a JSON error answer."""
    assert resp.headers["content-type"] == "application/json"
    return resp.json()["error"]


def raw_exchange(host: str, port: int, data: bytes, read_until_close: bool = True) -> bytes:
    """Send raw bytes on a new connection and return everything the server answers.

    A server that answers an error and closes with part of the request unread resets the
    connection (Go does): the answer read before the reset is the answer."""
    with socket.create_connection((host, port), timeout=5) as s:
        # answered and closed before the whole request was sent: read the answer
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)
