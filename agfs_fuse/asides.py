"""The hidden names the mount makes on the server, and when they stay hidden.

Two kinds: the name a rename-over moves its target to, and the temporary name a large
upload goes to before it is moved over the real file (``writes.SpoolWriter``).

memfs refuses to rename over an existing file, so the mount moves the target aside first
(``rename.ServerRename``). The aside's name says when it was made: memfs keeps a file's
own modification time through a rename, so the mtime would say when the file was last
written, not when it was set aside. A listing hides a generated name when either holds:

- it is young (made less than ``HIDDEN_FOR`` ago): a rename or upload still running, here
  or on another mount;
- this mount knows it is in use, whatever its age (``AgfsFilesystem.hidden``): a replaced
  file kept aside while it is open here, or the temporary of an upload running here.

Any other one (older, and not this mount's) was left by a crash, or belongs to a long
upload or a kept file of another mount; it is listed under its own name, so that ``rm``
and ``rmdir`` work. Only the exact generated pattern counts: a user's
``.agfs-fuse-replaced-notes`` is a file.
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
