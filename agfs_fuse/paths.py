"""Remote path arithmetic and name decoding, shared by every layer above the client.

AGFS paths are absolute, '/'-separated Unicode strings that travel in JSON, so a name
that is not valid UTF-8 cannot be represented at all: it is refused with EINVAL rather
than mangled into a different name.
"""

from __future__ import annotations

from .errors import InvalidArgument, NameTooLong

NAME_MAX = 255


def decode_name(raw: bytes) -> str:
    """Turn a kernel-supplied name into a str, refusing what AGFS cannot carry."""
    if len(raw) > NAME_MAX:
        raise NameTooLong("file name too long", path=raw.decode("utf-8", "replace"))
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(
            "name is not valid UTF-8", path=raw.decode("utf-8", "replace")
        ) from None
    if "/" in name or "\0" in name:
        raise InvalidArgument("name contains '/' or NUL", path=name)
    return name


def join(parent: str, name: str) -> str:
    """Child path of ``parent``; ``parent`` is absolute and normalised."""
    return f"/{name}" if parent == "/" else f"{parent}/{name}"


def split(path: str) -> tuple[str, str]:
    """``(parent, name)`` of an absolute path other than '/'."""
    parent, _, name = path.rpartition("/")
    return (parent or "/", name)


def normalize(path: str) -> str:
    """Absolute, no trailing slash, '.' and '..' resolved: what the server does too."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def is_within(path: str, ancestor: str) -> bool:
    """True when ``path`` is ``ancestor`` or below it."""
    return ancestor == "/" or path == ancestor or path.startswith(ancestor + "/")


def rebase(path: str, old_prefix: str, new_prefix: str) -> str:
    """``path`` with its ``old_prefix`` replaced by ``new_prefix`` (after a rename)."""
    if path == old_prefix:
        return new_prefix
    return (
        join(new_prefix, path[len(old_prefix) + 1 :])
        if old_prefix != "/"
        else join(new_prefix, path[1:])
    )
