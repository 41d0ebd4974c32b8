"""Entries the server holds that the kernel cannot name as they are, and listings whose
entries cannot be trusted as listed.

The kernel takes names of at most 255 bytes with no NUL, but AGFS takes any string: memfs
stores ``a\\0b`` or a 300-byte name when asked over HTTP. Listed as they are, the first
shows as ``a`` (the kernel stops at the NUL) and the second cannot be unlinked
(ENAMETOOLONG), so ``rm -rf`` of their directory never succeeds. Such a name is shown
escaped (its first 200 bytes, ``~`` and 8 hex digits of a hash of the whole name) and
mapped back to the real name for lookup, open, unlink and rename. Every other name,
spaces, ``+``, ``%``, unicode and newlines included, is shown exactly as it is.

Some listed entries also say less than the truth: an on-disk symlink inside a localfs
directory is listed with Go's symlink bit although the server's stat follows it and its
readlink knows only AGFS's own links; and two names that differ only in bytes that are
not UTF-8 both arrive as the same ``\\ufffd`` name. Such entries must be stat'ed by name
before they are shown, so that what the kernel is told is what a read will serve.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from .models import FileInfo
from .paths import NAME_MAX

log = logging.getLogger(__name__)

ESCAPE_MARK = "~"
KEEP_BYTES = 200
HASH_DIGITS = 8
REPLACEMENT = "\ufffd"  # what Go's JSON encoder makes of bytes that are not UTF-8
_HEX = frozenset("0123456789abcdef")


def _utf8(name: str) -> bytes | None:
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a server that is not Go's
        return None


def representable(name: str) -> bool:
    """True when the kernel can take ``name`` exactly as the server spells it."""
    raw = _utf8(name)
    return raw is not None and len(raw) <= NAME_MAX and "\0" not in name


def escape(name: str) -> str:
    """The name shown for a real name the kernel cannot take: a readable prefix (NULs
    shown as U+FFFD, at most ``KEEP_BYTES`` bytes, never cut inside a character), the
    mark, and a hash of the whole real name, so that two long names with the same prefix
    still differ and the shown name leads back to exactly one real name."""
    whole = name.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(whole).hexdigest()[:HASH_DIGITS]
    readable = name.replace("\0", REPLACEMENT).encode("utf-8", "replace")
    prefix = readable[:KEEP_BYTES].decode("utf-8", "ignore")
    return f"{prefix}{ESCAPE_MARK}{digest}"


def looks_escaped(name: str) -> bool:
    """True when ``name`` has the shape ``escape`` gives (ordinary names may too)."""
    tail = name[-HASH_DIGITS - 1 :]
    return (
        len(name) > HASH_DIGITS + 1 and tail[0] == ESCAPE_MARK and all(c in _HEX for c in tail[1:])
    )


def shown_name(name: str) -> str:
    """What the mount shows for the real name ``name``."""
    return name if representable(name) else escape(name)


def needs_stat(info: FileInfo) -> bool:
    """True when a listed entry's attributes may not be those of what its name serves:
    an on-disk link (the server's stat follows it) or a name holding U+FFFD (it may stand
    for bytes that are not UTF-8, which the server can no longer be asked about)."""
    return info.is_disk_link or REPLACEMENT in info.name


def sort_out(entries: Iterable[FileInfo]) -> tuple[list[FileInfo], set[str], set[str]]:
    """Split a listing into its entries with one per name (the first kept), the names
    that must be stat'ed before being shown, and the names listed more than once.

    A name listed twice is never two inodes: the server answers a path with one file, so
    the entry shown is whatever its stat says, never the other entry's attributes."""
    kept: list[FileInfo] = []
    seen: set[str] = set()
    doubtful: set[str] = set()
    repeated: set[str] = set()
    for info in entries:
        if info.name in seen:
            repeated.add(info.name)
            continue
        seen.add(info.name)
        kept.append(info)
        if needs_stat(info):
            doubtful.add(info.name)
    return kept, doubtful | repeated, repeated


class EscapedNames:
    """Per directory (remote path), shown name -> real name for the entries the kernel
    cannot take as they are. Filled from every listing; plain state, no I/O.

    Only directories that hold such names have a map, so it stays small. A map outlived
    by a rename or a removal is harmless: a shown name leads back only to the one real
    name whose hash it carries, which the server then finds or not."""

    def __init__(self) -> None:
        self._dirs: dict[str, dict[str, str]] = {}

    def record(self, parent: str, entries: Iterable[FileInfo]) -> list[tuple[str, FileInfo]]:
        """``(shown name, info)`` for each entry of ``parent``'s listing. An escaped name
        that equals another entry's real name (or another escaped name) is left out and
        logged: one name, one inode."""
        judged = [(info, representable(info.name)) for info in entries]
        plain = {info.name for info, ok in judged if ok}
        shown: list[tuple[str, FileInfo]] = []
        mapping: dict[str, str] = {}
        for info, ok in judged:
            if ok:
                shown.append((info.name, info))
                continue
            name = escape(info.name)
            if name in plain or name in mapping:
                log.warning(
                    "%s: %r not shown: its escaped name %r is taken", parent, info.name, name
                )
                continue
            mapping[name] = info.name
            shown.append((name, info))
        if mapping:
            self._dirs[parent] = mapping
        else:
            self._dirs.pop(parent, None)
        return shown

    def shown(self, parent: str, entries: Iterable[FileInfo]) -> list[tuple[str, FileInfo]]:
        """What ``record`` returned for these entries of ``parent`` when their listing was
        recorded, from the map alone: no second record (nor its warnings) per ``ls``."""
        mapping = self._dirs.get(parent, {})
        shown: list[tuple[str, FileInfo]] = []
        for info in entries:
            if representable(info.name):
                shown.append((info.name, info))
            elif mapping.get(name := escape(info.name)) == info.name:
                shown.append((name, info))
        return shown

    def real_name(self, parent: str, name: str) -> str | None:
        """The real name behind the shown ``name`` in ``parent``, if it is an escaped one."""
        return self._dirs.get(parent, {}).get(name)

    def forget(self, parent: str) -> None:
        self._dirs.pop(parent, None)
