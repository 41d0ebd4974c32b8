"""JSON and time formatting exactly as Go's ``encoding/json`` and ``time`` produce them.

Go's encoder escapes ``<``, ``>``, ``&``, U+2028 and U+2029, writes each invalid UTF-8
byte as the escape ``\\ufffd``, and ``json.Encoder.Encode`` ends the body with a newline.
Timestamps are ``time.RFC3339Nano`` in the server's local zone: trailing zeros of the
fraction trimmed, ``Z`` for a zero offset.
"""

from __future__ import annotations

import codecs
import functools
import json
import time
from typing import Any

_REPLACE = "agfs-go-replace"


def _go_replace(exc: UnicodeError) -> tuple[str | bytes, int]:
    """One U+FFFD per offending byte (or per surrogate-escaped byte), like Go.

    Decoding (Go's ``string(data)`` read back as text) gives the character itself.
    Encoding JSON, where a surrogate stands for an invalid byte of a Go string, gives
    the six-character escape ``\\ufffd``: Go's encoder writes that for an invalid byte
    (and a valid U+FFFD raw), so clients see exactly Go's bytes.
    """
    if isinstance(exc, UnicodeDecodeError):
        return "\ufffd" * (exc.end - exc.start), exc.end
    if isinstance(exc, UnicodeEncodeError):
        return b"\\ufffd" * (exc.end - exc.start), exc.end
    raise exc


codecs.register_error(_REPLACE, _go_replace)

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
)
_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_bytes_text(data: bytes | bytearray | memoryview) -> str:
    """Go's ``string(data)`` about to be JSON-encoded: invalid bytes kept as surrogates,
    which ``marshal`` writes as ``\\ufffd`` escapes the way Go's encoder does."""
    return bytes(data).decode("utf-8", "surrogateescape")


def go_string(data: bytes | bytearray | memoryview) -> str:
    """Go's ``string(data)`` as JSON will render it: invalid UTF-8 bytes become U+FFFD."""
    return bytes(data).decode("utf-8", _REPLACE)


def marshal(obj: Any) -> bytes:
    """``json.Marshal``: compact, HTML-escaped, UTF-8, no trailing newline."""
    text = _ENCODER.encode(obj)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        text = text.translate(_HTML)
    return text.encode("utf-8", _REPLACE)


def encode(obj: Any) -> bytes:
    """``json.NewEncoder(w).Encode``: like ``marshal`` plus the trailing newline."""
    return marshal(obj) + b"\n"


@functools.lru_cache(maxsize=4096)
def _second(sec: int) -> tuple[str, str]:
    tm = time.localtime(sec)
    off = tm.tm_gmtoff or 0
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        off = abs(off)
        zone = f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", tm), zone


def rfc3339nano(ns: int) -> str:
    """Format nanoseconds since the epoch as Go's ``time.RFC3339Nano`` in local time."""
    sec, frac = divmod(ns, 1_000_000_000)
    base, zone = _second(sec)
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + zone
    return base + zone
