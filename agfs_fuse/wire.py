"""The AGFS wire format: URLs, JSON fields, times, mode bits and flag values.

Pure functions with no I/O, used by the client, which alone speaks HTTP. They encode
the quirks of the real server (docs/PROTOCOL.md, File info and mode bits; Handles): Go's
mode bits, RFC 3339 times with nanoseconds and local offsets, capitalised or lowercase
``meta`` keys, and AGFS's own open-flag values.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import errors
from .models import FileInfo

log = logging.getLogger(__name__)

API_SUFFIX = "/api/v1"

# Go's os.FileMode keeps its type and special bits high up (docs/PROTOCOL.md, File info and
# mode bits).
_GO_SYMLINK = 1 << 27
_GO_SPECIAL_BITS = ((1 << 23, 0o4000), (1 << 22, 0o2000), (1 << 20, 0o1000))

# AGFS handle flags are AGFS's own values, not Linux's (docs/PROTOCOL.md, Handles).
_AGFS_ACCESS = {os.O_RDONLY: 0, os.O_WRONLY: 1, os.O_RDWR: 2}
_AGFS_FLAG_BITS = ((os.O_APPEND, 8), (os.O_CREAT, 16), (os.O_EXCL, 32), (os.O_TRUNC, 64))

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)$")

_announced_suffix: set[str] = set()


MAX_URL_LENGTH = 2048
"""Longer server URLs are refused: no AGFS base URL needs more, httpx refuses 64 KiB, and
the URL is repeated in the log, ``/proc/mounts`` and ``.agfs-stats``."""

CREDENTIALS_HINT = "put a token in -o token_file=PATH or $AGFS_TOKEN instead"


def shown_url(url: str, limit: int = 100) -> str:
    """The URL as an error message may quote it: cut to ``limit`` characters, so a
    hostile ``/reload`` write cannot make megabyte log lines, and not at all when it may
    hold a password."""
    if "@" in url:
        return "(not shown: it may hold a password)"
    return repr(url) if len(url) <= limit else f"{url[:limit]!r}... ({len(url)} characters)"


def normalize_base_url(url: str) -> str:
    """Return the API base URL, appending ``/api/v1`` (and saying so once) when missing.

    Raises ``InvalidArgument`` for anything that is not an http(s) URL with a host, and
    for a user name or password in it: those would show in ``/proc/mounts`` (readable
    by everyone), ``ps``, the log and ``.agfs-stats``. The message never quotes such a URL.
    """
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise errors.InvalidArgument(
            f"server URL is {len(url)} characters long; at most {MAX_URL_LENGTH} are allowed"
        )
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise errors.InvalidArgument(
            f"server URL must not contain spaces, control characters or backslashes: "
            f"{shown_url(url)}"
        )
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            raise errors.InvalidArgument(
                f"server URL must not contain a user name or password; {CREDENTIALS_HINT}"
            )
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError as exc:  # a bad [IPv6] host or port
        raise errors.InvalidArgument(f"server URL is malformed ({exc}): {shown_url(url)}") from None
    if parts.scheme not in ("http", "https"):
        raise errors.InvalidArgument(
            f"server URL must start with http:// or https://, got {shown_url(url)}"
        )
    if not parts.hostname:
        raise errors.InvalidArgument(f"server URL has no host: {shown_url(url)}")
    if parts.query or parts.fragment:
        raise errors.InvalidArgument(
            f"server URL must not have a query or fragment: {shown_url(url)}"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(API_SUFFIX):
        path += API_SUFFIX
        fixed = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        if fixed not in _announced_suffix:
            _announced_suffix.add(fixed)
            log.info("server URL %s has no %s suffix; using %s", url, API_SUFFIX, fixed)
        return fixed
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def parse_mtime_ns(text: str) -> int:
    """RFC 3339 with up to nine fractional digits -> nanoseconds since the epoch (>= 0)."""
    match = _RFC3339.match(text)
    if not match:
        raise errors.ProtocolError(f"bad modTime {text!r}")
    whole, fraction, zone = match.groups()
    if whole.startswith("0000-"):
        return 0  # Go's zero time printed west of UTC: "no time"
    try:
        seconds = _epoch_seconds(whole, zone)
    except ValueError as exc:
        raise errors.ProtocolError(f"bad modTime {text!r}: {exc}") from None
    nanos = int((fraction or "").ljust(9, "0"))
    return max(0, seconds * 1_000_000_000 + nanos)


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(whole: str, zone: str) -> int:
    """Seconds since the epoch of a whole-second RFC 3339 time. Cached: the files of one
    listing mostly share a few seconds, and this is most of parsing a 10k-entry answer."""
    zone = "+00:00" if zone in ("Z", "z") else zone
    return int(datetime.fromisoformat(whole + zone).timestamp())


def agfs_open_flags(os_flags: int) -> int:
    """Translate ``os.O_*`` flags to the AGFS handle API's values."""
    value = _AGFS_ACCESS.get(os_flags & os.O_ACCMODE, 0)
    for linux_bit, agfs_bit in _AGFS_FLAG_BITS:
        if os_flags & linux_bit:
            value |= agfs_bit
    return value


def _perm_from_mode(mode: int) -> int:
    perm = mode & 0o7777
    for go_bit, posix_bit in _GO_SPECIAL_BITS:
        if mode & go_bit:
            perm |= posix_bit
    return perm


def _field(obj: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise errors.ProtocolError(f"field {key!r} should be {kind.__name__}, got {value!r}")
    return value


def parse_file_info(obj: Any) -> FileInfo:
    """Build a ``FileInfo`` from the server's JSON, tolerating its known variations."""
    if not isinstance(obj, dict):
        raise errors.ProtocolError(f"expected a file object, got {type(obj).__name__}")
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        raise errors.ProtocolError("field 'meta' should be an object")
    meta_name = meta.get("Name", meta.get("name")) or ""
    meta_type = meta.get("Type", meta.get("type")) or ""
    content = meta.get("Content", meta.get("content"))
    mode = _field(obj, "mode", int, 0)
    mod_time = _field(obj, "modTime", str, "")
    return FileInfo(
        name=_field(obj, "name", str, ""),
        size=max(0, _field(obj, "size", int, 0)),
        perm=_perm_from_mode(mode),
        is_dir=_field(obj, "isDir", bool, False),
        is_symlink=meta_type == "symlink" or bool(mode & _GO_SYMLINK),
        mtime_ns=parse_mtime_ns(mod_time) if mod_time else 0,
        meta_name=str(meta_name),
        meta_type=str(meta_type),
        meta_content=content if isinstance(content, dict) else None,
    )
