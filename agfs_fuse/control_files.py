"""The mount's own files at its root: ``reload``, ``.agfs-stats`` and ``.agfs-spools``.

They shadow any remote entry of the same name, have fixed inode numbers below the ones
the inode table hands out, and are read and written as short texts: what each one says
and does when written is the open-file layer's business (``open_files``); here is only
which ones exist and where.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .errors import AccessRefused, AgfsError, AlreadyExists, NotPermitted
from .inodes import RESERVED_INODES, ROOT_INODE

RELOAD_HELP = (
    b"agfs-fuse control file: write nothing to reconnect, or an http(s):// URL to switch"
    b" servers (echo > reload; echo http://host:8080/api/v1 > reload)\n"
)


@dataclass(frozen=True)
class ControlFile:
    """A file of the mount itself, at its root, shadowing any remote entry of that name."""

    name: str
    inode: int
    mode: int
    listed: bool
    """Shown by ``ls``; a hidden one is found by its name only."""


RELOAD = ControlFile("reload", 2, 0o200, listed=True)
STATS = ControlFile(".agfs-stats", 3, 0o444, listed=False)
SPOOLS = ControlFile(".agfs-spools", 4, 0o600, listed=False)  # "upload ID" / "discard ID"
CONTROLS = {control.name: control for control in (RELOAD, STATS, SPOOLS)}
CONTROL_INODES = {control.inode: control for control in CONTROLS.values()}
assert all(inode < RESERVED_INODES for inode in CONTROL_INODES)


def control_named(parent_inode: int, name: str) -> ControlFile | None:
    """The control file ``name`` stands for in the directory ``parent_inode``, if any:
    they exist at the mount's root only."""
    return CONTROLS.get(name) if parent_inode == ROOT_INODE else None


def listed_controls() -> list[ControlFile]:
    """The control files a listing of the root shows."""
    return [control for control in CONTROLS.values() if control.listed]


def control_create_refused(flags: int) -> AgfsError:
    """Why a create of a control file's name fails: it exists (EEXIST) for ``O_EXCL``;
    otherwise the program may not replace it (EACCES)."""
    if flags & os.O_EXCL:
        return AlreadyExists("a control file of the mount")
    return AccessRefused("a control file of the mount")


_FIXED_ATTRIBUTES = ("update_mode", "update_uid", "update_gid", "update_atime", "update_mtime")


def check_control_setattr(fields: Any) -> None:
    """A setattr of a control file (``fields``: which attributes it sets). The truncate
    that comes with every ``echo > reload`` (O_TRUNC) changes nothing and succeeds; a mode,
    owner or time would be silently dropped, so it fails (EPERM), as in /proc."""
    if any(getattr(fields, name) for name in _FIXED_ATTRIBUTES):
        raise NotPermitted("a control file keeps its attributes")
