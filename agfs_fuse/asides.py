"""The hidden names the mount makes on the server, and when they stay hidden.

Two kinds: the name a rename-over moves its target to, and the temporary name a large
upload goes to before it is moved over the real file (``writes.SpoolWriter``).

memfs refuses to rename over an existing file, so the mount moves the target aside first
(``rename.ServerRename``). The aside's name says when it was made: memfs keeps a file's
own modification time through a rename, so the mtime would say when the file was last
written, not when it was set aside. A young aside belongs to a rename still running
(here or on another mount) and is hidden; an old one was left by a crash that no intent
record explains, and is listed under its own name, so that ``rm`` and ``rmdir`` work.
The same holds for an upload's temporary that a crash left with no sidecar to explain it.
Only the exact generated pattern counts: a user's ``.agfs-fuse-replaced-notes`` is a file.
"""

from __future__ import annotations

import re
import secrets

ASIDE_PREFIX = ".agfs-fuse-replaced-"
UPLOAD_PREFIX = ".agfs-fuse-upload-"
HIDDEN_FOR = 600.0
"""Seconds a generated name stays hidden: far longer than any rename or upload takes."""

_GENERATED_NAME = re.compile(
    "(?:" + re.escape(ASIDE_PREFIX) + "|" + re.escape(UPLOAD_PREFIX) + r")([0-9a-f]{8})-[0-9a-f]{8}"
)


def _new_name(prefix: str, now: float) -> str:
    return f"{prefix}{int(now) & 0xFFFFFFFF:08x}-{secrets.token_hex(4)}"


def new_aside_name(now: float) -> str:
    """A fresh aside name made at ``now`` (seconds since the epoch)."""
    return _new_name(ASIDE_PREFIX, now)


def new_upload_name(now: float) -> str:
    """A fresh name for an upload's temporary, made at ``now``."""
    return _new_name(UPLOAD_PREFIX, now)


def aside_made_at(name: str) -> float | None:
    """When the generated name ``name`` was made, or None if the mount made no such name."""
    match = _GENERATED_NAME.fullmatch(name)
    return float(int(match.group(1), 16)) if match else None


def is_hidden(name: str, now: float) -> bool:
    """Whether a listing hides ``name``: a generated name made less than ``HIDDEN_FOR``
    seconds from ``now`` (either way: the clock of the mount that made it may be ahead)."""
    made = aside_made_at(name)
    return made is not None and abs(now - made) < HIDDEN_FOR
