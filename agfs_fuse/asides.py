"""The hidden names a rename-over moves its target to, and when they stay hidden.

memfs refuses to rename over an existing file, so the mount moves the target aside first
(``rename.ServerRename``). The aside's name says when it was made: memfs keeps a file's
own modification time through a rename, so the mtime would say when the file was last
written, not when it was set aside. A young aside belongs to a rename still running
(here or on another mount) and is hidden; an old one was left by a crash that no intent
record explains, and is listed under its own name, so that ``rm`` and ``rmdir`` work.
Only the exact generated pattern counts: a user's ``.agfs-fuse-replaced-notes`` is a file.
"""

from __future__ import annotations

import re
import secrets

ASIDE_PREFIX = ".agfs-fuse-replaced-"
HIDDEN_FOR = 600.0
"""Seconds an aside stays hidden: far longer than any rename takes."""

_ASIDE_NAME = re.compile(re.escape(ASIDE_PREFIX) + r"([0-9a-f]{8})-[0-9a-f]{8}")


def new_aside_name(now: float) -> str:
    """A fresh aside name made at ``now`` (seconds since the epoch)."""
    return f"{ASIDE_PREFIX}{int(now) & 0xFFFFFFFF:08x}-{secrets.token_hex(4)}"


def aside_made_at(name: str) -> float | None:
    """When the aside called ``name`` was made, or None if ``name`` is no aside's."""
    match = _ASIDE_NAME.fullmatch(name)
    return float(int(match.group(1), 16)) if match else None


def is_hidden(name: str, now: float) -> bool:
    """Whether a listing hides ``name``: a generated aside made less than ``HIDDEN_FOR``
    seconds from ``now`` (either way: the clock of the mount that made it may be ahead)."""
    made = aside_made_at(name)
    return made is not None and abs(now - made) < HIDDEN_FOR
