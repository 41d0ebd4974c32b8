"""File keys: how the filesystem core names one file's pending writes.

An open file's spool is shared by all its handles, so the core needs a name for "this
file" that the kernel's inode numbers cannot give: a file keeps its pending writes through
a rename (new path), an unlink (no path) and, once uploads run in the background, beyond
the kernel's forget of its inode. The core mints a key the first time a file needs one and
never mints the same key twice, so a writer still registered under an old key can never be
mistaken for a later file's. Whoever maps the kernel's inodes (the open-file layer) keeps
the key beside the inode and hands it back on every call.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FileKey:
    """One file's key; opaque to everyone but the core that minted it."""

    serial: int


class FileKeys:
    """The core's mint: keys in ascending order, never one twice."""

    def __init__(self) -> None:
        self._serials = itertools.count(1)

    def mint(self) -> FileKey:
        return FileKey(next(self._serials))
