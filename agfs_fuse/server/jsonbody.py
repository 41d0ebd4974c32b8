"""Request bodies decoded the way Go's ``json.Decoder.Decode`` fills a struct.

Only the first JSON value counts (trailing bytes are ignored), field names match
case-insensitively, ``null`` leaves a field at its zero value, and a wrong type (a float
or a negative number for a ``uint32``, a number for a string) is an error.
"""

from __future__ import annotations

import json
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


def _too_deep(text: str) -> str:
    """Go's error for a value nested too deep for Python's recursive decoder.

    Go's limit is 10000 levels, Python's about 1000: a body nested between the two
    decodes in Go and is refused here with the same words (see docs/SEMANTICS.md).
    """
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > GO_MAX_DEPTH:
                return f"invalid character {ch!r} exceeded max depth"
        elif ch in "]}":
            depth -= 1
    return "invalid character '[' exceeded max depth"


def decode(raw: bytes | bytearray, struct: str, fields: dict[str, str]) -> dict[str, Any]:
    """Decode ``raw`` into ``{field: value}`` for the Go struct ``struct``.

    ``fields`` maps each JSON field name to ``string``/``uint32``/``int``/``bool``.
    """
    text = go_string(raw).lstrip(_WS)
    if not text:
        raise JSONBodyError("EOF")
    try:
        value, _ = _DECODER.raw_decode(text)
    except RecursionError:
        raise JSONBodyError(_too_deep(text)) from None
    except (json.JSONDecodeError, ValueError) as exc:
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
