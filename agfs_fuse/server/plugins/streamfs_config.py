"""streamfs's configuration as the Go plugin reads it: ``Validate`` checks the size
strings (``config.ParseSize``), ``Initialize`` parses them again with the plugin's own
``parseSize`` (no TB) and divides the byte sizes into 64 KiB chunks. Go's quirks kept:
``int64(f)`` of NaN or out-of-range floats, and a bad string falling back to the default.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

log = logging.getLogger("agfs_fuse.server.streamfs")

CHUNK_BYTES = 64 * 1024  # Initialize divides the byte sizes by this
DEFAULT_BUFFER_BYTES = 6 * 1024 * 1024

_GO_INT = re.compile(r"^[+-]?[0-9]+$")
_GO_FLOAT = re.compile(r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:E[+-]?[0-9]+)?|INF|INFINITY|NAN)$")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _go_int64(value: float) -> int:
    """Go's ``int64(f)`` on amd64: NaN and out-of-range values become the minimum."""
    if math.isnan(value) or not _INT64_MIN <= value < 2.0**63:
        return _INT64_MIN
    return int(value)


def _parse_int(text: str) -> int | None:
    if not _GO_INT.match(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def _parse_float(text: str) -> float | None:
    return float(text) if _GO_FLOAT.match(text) else None


def validate_size(text: str) -> None:
    """``config.ParseSize`` as ``Validate`` uses it (accepts TB, integer units first)."""
    s = text.strip().upper()
    if _parse_int(s) is not None:
        return
    for suffix in ("B", "KB", "MB", "GB", "TB"):
        if s.endswith(suffix):
            num = s[: -len(suffix)].strip()
            if _parse_int(num) is not None or _parse_float(num) is not None:
                return
    raise ValueError(
        f"invalid size format: {s} (expected format: number with optional unit B/KB/MB/GB/TB)"
    )


def parse_size(text: str) -> int | None:
    """The plugin's own ``parseSize`` used by ``Initialize`` (no TB): ``None`` = invalid."""
    s = text.strip().upper()
    value = _parse_int(s)
    if value is not None:
        return value
    units = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
    for suffix, mult in units.items():
        if s.endswith(suffix):
            num = _parse_float(s[: -len(suffix)].strip())
            if num is not None:
                return _go_int64(num * mult)
    return None


def format_size(n: int) -> str:
    """``formatSize``: ``512B``, ``1.0MB``..."""
    if n < 1024:
        return f"{n}B"
    div, exp = 1024, 0
    m = n // 1024
    while m >= 1024:
        div *= 1024
        exp += 1
        m //= 1024
    return f"{n / div:.1f}{('KB', 'MB', 'GB', 'TB')[min(exp, 3)]}"


def _check_size_value(key: str, value: Any, example: str) -> None:
    if isinstance(value, str):
        try:
            validate_size(value)
        except ValueError as exc:
            raise ValueError(f"invalid {key}: {exc}") from None
        return
    if isinstance(value, float) or (
        isinstance(value, int) and not isinstance(value, bool) and _INT64_MIN <= value <= _INT64_MAX
    ):
        return
    raise ValueError(f"{key} must be a size string (e.g., '{example}') or number")


def _size_bytes(key: str, value: Any) -> int:
    if value is None:
        return DEFAULT_BUFFER_BYTES
    if isinstance(value, str):
        parsed = parse_size(value)
        if parsed is None:
            log.warning("[streamfs] Invalid %s '%s', using default", key, value)
            return DEFAULT_BUFFER_BYTES
        return parsed
    if isinstance(value, float):
        return _go_int64(value)
    return int(value)


def check_stream_config(config: dict[str, Any]) -> tuple[int, int]:
    """``Validate`` then ``Initialize``: (channel chunks, ring chunks); ``ValueError``."""
    if "channel_buffer_size" in config:
        _check_size_value("channel_buffer_size", config["channel_buffer_size"], "512KB")
    if "ring_buffer_size" in config:
        _check_size_value("ring_buffer_size", config["ring_buffer_size"], "1MB")
    channel_bytes = _size_bytes("channel_buffer_size", config.get("channel_buffer_size"))
    ring_bytes = _size_bytes("ring_buffer_size", config.get("ring_buffer_size"))
    channel = max(1, channel_bytes // CHUNK_BYTES)
    ring = max(1, ring_bytes // CHUNK_BYTES)
    log.info(
        "[streamfs] Initialized with channel buffer: %s (%d chunks), ring buffer: %s (%d chunks)",
        format_size(channel_bytes),
        channel,
        format_size(ring_bytes),
        ring,
    )
    return channel, ring
