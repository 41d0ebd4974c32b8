"""Query parameters parsed as Go's ``strconv`` parses them.

Python's ``int`` accepts more than Go (``1_000``, surrounding spaces, values beyond
64 bits); a value Go rejects must be rejected here too, with the same 400.
"""

from __future__ import annotations

import re

_INT = re.compile(r"^[+-]?[0-9]+$")
_OCTAL = re.compile(r"^[0-7]+$")


def parse_int(text: str, bits: int = 64) -> int | None:
    """``strconv.ParseInt(text, 10, bits)``; ``None`` when Go would fail."""
    if not _INT.match(text):
        return None
    value = int(text)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        return None
    return value


def parse_octal(text: str) -> int | None:
    """``strconv.ParseUint(text, 8, 32)``."""
    if not _OCTAL.match(text):
        return None
    value = int(text, 8)
    return value if value < 1 << 32 else None
