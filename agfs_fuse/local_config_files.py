"""Reading the mount's own small local files (token files, federation configs) safely.

Both are named by the user and read at mount time, before anything else runs: a FIFO or a
device there would block the mount for ever or read without end, and a huge file is a
mistake rather than a token or a config. One set of checks and one set of messages for all.
"""

from __future__ import annotations

import stat
from pathlib import Path


class LocalFileError(Exception):
    """A local file that cannot be used; the message is one line naming it."""


def require_regular_file(path: Path, what: str) -> None:
    """Refuse anything but a regular file (``what`` names it in the message)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise LocalFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise LocalFileError(f"{what} {path} is not a regular file")


def read_small_file(path: Path, limit: int, what: str) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes."""
    require_regular_file(path, what)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise LocalFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise LocalFileError(f"{what} {path} is larger than {limit} bytes")
    return data
