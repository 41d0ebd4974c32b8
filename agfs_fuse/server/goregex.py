"""Regular expressions as Go's ``regexp`` package compiles and runs them, on RE2.

The real server greps with Go's RE2 engine: linear time, no lookaround, no
backreferences. Python's backtracking ``re`` would accept patterns Go rejects and can
spend exponential time on others (``(a+)+$`` against a run of ``a`` and a ``!``), holding
a request thread for seconds per line. google-re2 is the same engine with Go's syntax,
so one ``POST /grep`` can neither freeze the server nor succeed where Go says 400.
"""

from __future__ import annotations

from typing import TypeAlias

import re2

from agfs_fuse.server.gojson import go_string

#: RE2's error texts mapped to Go's ``syntax.ErrorCode`` strings, so a rejected pattern
#: reads ``error parsing regexp: <Go's words>: `<fragment>```.
_GO_CODES = {
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid escape sequence": "invalid escape sequence",
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "missing ]": "missing closing ]",
    "bad repetition operator": "invalid nested repetition operator",
    "no argument for repetition operator": "missing argument to repetition operator",
    "trailing \\": "trailing backslash at end of expression",
    "invalid character class range": "invalid character class range",
    "invalid character class": "invalid character class",
    "invalid repetition size": "invalid repeat count",
    "invalid UTF-8": "invalid UTF-8",
    "invalid named capture group": "invalid named capture",
}

#: A compiled pattern (google-re2's class).
Regex: TypeAlias = re2._Regexp

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every rejected pattern to stderr


class RegexError(ValueError):
    """The pattern does not compile; the text is Go's ``err.Error()``."""


def compile_go(pattern: str, case_insensitive: bool = False) -> Regex:
    """Compile like the server's grep: ``(?i)`` prefixed when case-insensitive.

    The compiled pattern matches ``bytes`` (a file's raw lines, as Go's strings are).
    """
    if case_insensitive:
        pattern = "(?i)" + pattern
    try:
        return re2.compile(pattern.encode("utf-8", "surrogateescape"), _OPTIONS)
    except re2.error as exc:
        raise RegexError(_go_message(exc)) from None


def search_line(regex: Regex, line: bytes) -> bool:
    """Whether ``regex`` matches ``line`` as Go's ``MatchString`` sees it.

    Go reads each invalid UTF-8 byte of the string as U+FFFD, so ``caf.x`` matches
    ``caf\\xe9x`` there; RE2 on the raw bytes would not. A line that is not valid UTF-8
    is therefore matched in Go's decoding (one U+FFFD per bad byte), re-encoded.
    """
    if not line.isascii():
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            line = go_string(line).encode("utf-8")
    return regex.search(line) is not None


def _go_message(exc: re2.error) -> str:
    raw = exc.args[0] if exc.args else b""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    code, sep, fragment = text.partition(": ")
    if not sep:
        code, fragment = text, ""
    return f"error parsing regexp: {_GO_CODES.get(code, code)}: `{fragment}`"
