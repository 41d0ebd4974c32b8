"""proxyfs's configuration as the Go plugin reads it.

``Validate`` refuses any key but ``base_url`` and ``mount_path`` (naming the *first*
unknown one; the sample config's ``remote_path`` is one of them), wants ``base_url`` as a
non-empty *string* (a number counts as missing) and runs Go's ``url.Parse`` on it, whose
complaints are few: ``127.0.0.1:8080`` fails ("first path segment in URL cannot contain
colon") while ``localhost:8080`` parses as scheme ``localhost``. ``Initialize`` then wants
``://`` somewhere in the text, and only then checks the remote's ``/health``.
"""

from __future__ import annotations

from typing import Any

ALLOWED_KEYS = ("base_url", "mount_path")
REQUIRED = "base_url is required in configuration"

_HEX = "0123456789abcdefABCDEF"
# Characters Go's url package accepts unescaped in a host name (besides letters/digits).
_HOST_SAFE = set("-_.~!$&'()*+,;=:[]<>\"")


class ProxyConfigError(ValueError):
    """The plugin refused its configuration; the text is the Go error's."""


def go_quote(text: str) -> str:
    """Go's ``%q`` of a string: double quotes, control characters escaped."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _bad_escape(text: str, host: bool) -> str | None:
    """``url.unescape``'s complaint about ``text``, if any."""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            piece = text[i : i + 3]
            if len(piece) < 3 or piece[1] not in _HEX or piece[2] not in _HEX:
                return f"invalid URL escape {go_quote(piece)}"
            if host and int(piece[1], 16) < 8 and piece != "%25":
                return f"invalid URL escape {go_quote(piece)}"
            i += 3
            continue
        if host and ord(ch) < 0x80 and not ch.isalnum() and ch not in _HOST_SAFE:
            return f"invalid character {go_quote(ch)} in host name"
        i += 1
    return None


def _valid_port(colon_port: str) -> bool:
    """Go's ``validOptionalPort``: nothing, or ``:`` followed by ASCII digits only."""
    if not colon_port:
        return True
    return colon_port[0] == ":" and all(c in "0123456789" for c in colon_port[1:])


def _bad_host(host: str) -> str | None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            return "missing ']' in host"
        if not _valid_port(host[end + 1 :]):
            return f"invalid port {go_quote(host[end + 1 :])} after host"
    elif ":" in host:
        colon_port = host[host.rfind(":") :]
        if not _valid_port(colon_port):
            return f"invalid port {go_quote(colon_port)} after host"
    return _bad_escape(host, host=True)


def _parse_problem(raw: str) -> str | None:
    """What Go's ``url.Parse(raw)`` objects to (without the ``parse "..."`` prefix)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "net/url: invalid control character in URL"
    scheme, rest = "", raw
    for i, ch in enumerate(raw):
        if ch.isascii() and ch.isalpha():
            continue
        if ch.isascii() and (ch.isdigit() or ch in "+-."):
            if i == 0:
                break
            continue
        if ch == ":":
            if i == 0:
                return "missing protocol scheme"
            scheme, rest = raw[:i], raw[i + 1 :]
        break
    if not (rest.endswith("?") and rest.count("?") == 1):
        rest = rest.split("?", 1)[0]
    if not rest.startswith("/"):
        if scheme:
            return None  # opaque: "localhost:8080" parses
        if ":" in rest.split("/", 1)[0]:
            return "first path segment in URL cannot contain colon"
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, rest = rest[2:].partition("/")
        rest = slash + rest
        problem = _bad_host(authority[authority.rfind("@") + 1 :])
        if problem:
            return problem
    return _bad_escape(rest, host=False)


def url_parse_error(raw: str) -> str | None:
    """Go's ``url.Parse(raw)`` error text, or ``None`` when Go accepts ``raw``."""
    url, _, fragment = raw.partition("#")
    problem = _parse_problem(url)
    if problem:
        return f"parse {go_quote(url)}: {problem}"
    problem = _bad_escape(fragment, host=False)
    return f"parse {go_quote(raw)}: {problem}" if problem else None


def check_proxy_config(config: dict[str, Any]) -> str:
    """``Validate`` and the format half of ``Initialize``: the ``base_url`` to use."""
    for key in config:
        if key not in ALLOWED_KEYS:
            raise ProxyConfigError(
                f"unknown configuration parameter: {key} (allowed: [{' '.join(ALLOWED_KEYS)}])"
            )
    base_url = config.get("base_url")
    if not isinstance(base_url, str) or not base_url:
        raise ProxyConfigError(REQUIRED)
    problem = url_parse_error(base_url)
    if problem:
        raise ProxyConfigError(f"invalid base_url format: {problem}")
    if "://" not in base_url:
        raise ProxyConfigError(
            f"invalid base_url format: {base_url} (expected format: http://hostname:port or "
            "http://hostname:port/api/v1). Did you forget to quote the URL?"
        )
    return base_url
