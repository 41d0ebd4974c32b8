"""Open files pin their inodes; a file replaced by a rename while open is kept aside.

POSIX lets a program go on reading a file that a rename replaced. The filesystem core
can keep the replaced file on the server under a hidden aside name (``rename.KeptAside``)
but does not know what is open; the inode table knows, by the pins of open handles. This
joins the two: a rename asks whether its target is open, the replaced inode follows its
file to the aside name, and the last close of it deletes the file for good.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .inodes import InodeTable
from .rename import KeptAside


class RenamingCore(Protocol):
    """What the layer needs of the filesystem core (``AgfsFilesystem``)."""

    async def rename(
        self,
        old: str,
        new: str,
        *,
        noreplace: bool = False,
        keep_replaced: Callable[[], bool] | None = None,
    ) -> KeptAside | None: ...

    async def discard_kept(self, kept: KeptAside) -> None: ...


class KeptAsides:
    """Pins of open files, and the replaced files kept aside for them."""

    def __init__(self, core: RenamingCore, inodes: InodeTable) -> None:
        self._core = core
        self._inodes = inodes
        self._kept: dict[int, KeptAside] = {}
        """Replaced files kept aside while open here, by inode: deleted at last close."""

    def pin(self, inode: int) -> None:
        """A handle of ``inode`` is open (or an open is under way): a rename that replaces
        it keeps it aside."""
        self._inodes.pin(inode)

    async def unpin(self, inode: int, count: int = 1) -> None:
        """``count`` handles of ``inode`` are gone; if no handle of a replaced file kept
        aside is left, the file is deleted."""
        for _ in range(count):
            self._inodes.unpin(inode)
        kept = self._kept.get(inode)
        if kept is None or self.is_open(kept.aside):
            return
        del self._kept[inode]
        self._inodes.detach(kept.aside)
        await self._core.discard_kept(kept)

    def is_open(self, path: str) -> bool:
        inode = self._inodes.find(path)
        return inode is not None and self._inodes.entry(inode).pins > 0

    async def rename(self, old: str, new: str, *, noreplace: bool) -> None:
        """Rename on the server and in the inode table; an open file it replaces stays
        readable under its aside name until its last handle closes."""
        kept = await self._core.rename(
            old, new, noreplace=noreplace, keep_replaced=lambda: self.is_open(new)
        )
        replaced = self._inodes.find(new)
        self._inodes.rename(old, new)
        if kept is not None and replaced is not None:
            # Still open: its readers go on reading the old file, now under the aside name.
            self._inodes.attach(replaced, kept.aside)
            self._kept[replaced] = kept
            await self.unpin(replaced, 0)  # closed meanwhile: delete it now
