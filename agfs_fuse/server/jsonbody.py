"""Request bodies decoded the way Go's ``json.Decoder.Decode`` fills a struct.

Only the first JSON value counts (trailing bytes are ignored), field names match
case-insensitively, ``null`` leaves a field at its zero value, and a wrong type (a float
or a negative number for a ``uint32``, a number for a string) is an error.
"""

from __future__ import annotations

import itertools
import json
import json.scanner
import re
import sys
import threading
from typing import Any

from agfs_fuse.server.gojson import go_string

_WS = " \t\r\n"
_ZERO = {"string": "", "uint32": 0, "int": 0, "bool": False}
_GO_TYPE = {"string": "string", "uint32": "uint32", "int": "int", "bool": "bool"}


class JSONBodyError(ValueError):
    """The body does not decode into the request struct."""


def _no_constants(name: str) -> Any:
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_PY_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_PY_DECODER.scan_once = json.scanner.py_make_scanner(_PY_DECODER)  # type: ignore[attr-defined]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _check(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    if kind == "uint32":
        return 0 <= value < 1 << 32
    return -(1 << 63) <= value < 1 << 63


#: Go's ``encoding/json`` refuses values nested deeper than this.
GO_MAX_DEPTH = 10000
#: A JSON string, or the unterminated rest of one: brackets inside it do not nest.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

_DECODE_LOCK = threading.Lock()


def _first_value_depth(text: str) -> tuple[int, str]:
    """How deep the first JSON value of ``text`` nests, and the bracket that opened the
    level past Go's limit (``""`` if none did), without recursing.

    Only the first value counts: Go's ``Decode`` never scans what follows it.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets or not text.startswith(("[", "{")):
        return 0, ""
    deepest = 0
    for i, depth in enumerate(itertools.accumulate(map(_STEP.__getitem__, brackets))):
        if depth > deepest:
            deepest = depth
            if depth > GO_MAX_DEPTH:
                return deepest, brackets[i]
        if depth <= 0:
            break
    return deepest, ""


def _first_value(text: str) -> Any:
    """The first JSON value of ``text``, decoded as deep as Go's limit allows.

    Python's C decoder recurses on the C stack and gives up near 1000 levels, where Go
    goes on to 10000. A value it gives up on is measured without recursing, refused with
    Go's words past 10000, and otherwise decoded by the pure-Python scanner, whose
    recursion costs no C stack (Python 3.11+), under a raised recursion limit. That limit
    is process-wide, so every decode holds the lock: no C decode ever runs while it is
    raised (the C decoder holds the GIL throughout anyway, so nothing is lost).
    """
    with _DECODE_LOCK:
        try:
            return _DECODER.raw_decode(text)[0]
        except RecursionError:
            pass
        depth, opener = _first_value_depth(text)
        if opener:
            raise JSONBodyError(f"invalid character {opener!r} exceeded max depth")
        previous = sys.getrecursionlimit()
        sys.setrecursionlimit(max(previous, 4 * depth + 1000))
        try:
            return _PY_DECODER.raw_decode(text)[0]
        finally:
            sys.setrecursionlimit(previous)


def decode(raw: bytes | bytearray, struct: str, fields: dict[str, str]) -> dict[str, Any]:
    """Decode ``raw`` into ``{field: value}`` for the Go struct ``struct``.

    ``fields`` maps each JSON field name to ``string``/``uint32``/``int``/``bool``.
    """
    text = go_string(raw).lstrip(_WS)
    if not text:
        raise JSONBodyError("EOF")
    try:
        value = _first_value(text)
    except JSONBodyError:
        raise  # already in Go's words; the ValueError branch below would reword it
    except ValueError as exc:  # json.JSONDecodeError, or a refused NaN/Infinity constant
        pos = getattr(exc, "pos", 0)
        if pos >= len(text.rstrip(_WS)):
            raise JSONBodyError("unexpected EOF") from None
        raise JSONBodyError(
            f"invalid character {text[pos]!r} looking for beginning of value"
        ) from None
    out = {name: _ZERO[kind] for name, kind in fields.items()}
    if value is None:
        return out
    if not isinstance(value, dict):
        raise JSONBodyError(f"json: cannot unmarshal {_kind(value)} into Go value of type {struct}")
    lowered = {name.lower(): name for name in fields}
    for key, item in value.items():
        name = key if key in fields else lowered.get(key.lower())
        if name is None:
            continue
        kind = fields[name]
        if not _check(item, kind):
            raise JSONBodyError(
                f"json: cannot unmarshal {_kind(item)} into Go struct field "
                f"{struct}.{name} of type {_GO_TYPE[kind]}"
            )
        out[name] = _ZERO[kind] if item is None else item
    return out
