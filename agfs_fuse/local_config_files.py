"""Reading the mount's own small local files (token files, federation configs) safely.

Both are named by the user and read at mount time, before anything else runs: a FIFO or a
device there would block the mount for ever or read without end, and a huge file is a
mistake rather than a token or a config. One set of checks and one set of messages for all.
Both may hold secrets: a token file always, a federation config when a backend's ``token``
is in it; ``shared_mode`` says when other users can read one (a warning, as ssh would).
"""

from __future__ import annotations

import stat
from pathlib import Path


class LocalFileError(Exception):
    """A local file that cannot be used; the message is one line naming it."""


def shared_mode(path: Path) -> int | None:
    """The permission bits of ``path`` when its group or other users may read it, else
    None (also when it cannot be looked at: reading it will say why)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o044 else None


def readable_by_others_warning(path: Path, what: str) -> str | None:
    """The one-line warning for a file holding a secret that others may read, or None;
    ``what`` names the file (``token file /etc/x.token``)."""
    mode = shared_mode(path)
    if mode is None:
        return None
    return f"{what} can be read by other users (mode {mode:04o}); chmod 600 it"


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
