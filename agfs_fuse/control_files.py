"""The mount's own files: ``reload``, ``.agfs-stats``, ``.agfs-spools`` and ``.agfs-sync``
at its root;
in a federated mount also ``.mounts`` there, and a ``reload`` in each backend's directory.

They shadow any remote entry of the same name, have fixed inode numbers below the ones
the inode table hands out (a backend's ``reload``: numbers far above any it will reach),
and are read and written as short texts: what each one says
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
    backend: str | None = None
    """The backend directory a backend's ``reload`` is in (None: at the mount root)."""


RELOAD = ControlFile("reload", 2, 0o200, listed=True)
STATS = ControlFile(".agfs-stats", 3, 0o444, listed=False)
SPOOLS = ControlFile(".agfs-spools", 4, 0o600, listed=False)  # "upload ID" / "discard ID"
MOUNTS = ControlFile(".mounts", 5, 0o600, listed=False)  # "mount /dc3 URL" / "unmount /dc3"
SYNC = ControlFile(".agfs-sync", 6, 0o200, listed=False)  # a write waits for every upload
CONTROLS = {control.name: control for control in (RELOAD, STATS, SPOOLS, SYNC)}
CONTROL_INODES = {control.inode: control for control in CONTROLS.values()}
assert all(inode < RESERVED_INODES for inode in (*CONTROL_INODES, MOUNTS.inode))

BACKEND_INODES = 1 << 48
"""A backend's ``reload`` takes a number from here up, one never given twice."""
BACKEND_RELOADS: dict[str, ControlFile] = {}
"""The ``reload`` of each backend directory of a federated mount, by its path."""
_next_backend_inode = BACKEND_INODES


def enable_federation() -> None:
    """A federated mount: the root gets ``.mounts`` (the single-server mount never has it)."""
    CONTROLS[MOUNTS.name] = MOUNTS
    CONTROL_INODES[MOUNTS.inode] = MOUNTS


def add_backend_reload(prefix: str) -> ControlFile:
    """Give the backend directory ``prefix`` its own ``reload``."""
    global _next_backend_inode
    control = ControlFile(RELOAD.name, _next_backend_inode, RELOAD.mode, True, backend=prefix)
    _next_backend_inode += 1
    BACKEND_RELOADS[prefix] = control
    CONTROL_INODES[control.inode] = control
    return control


def remove_backend_reload(prefix: str) -> None:
    control = BACKEND_RELOADS.pop(prefix, None)
    if control is not None:
        CONTROL_INODES.pop(control.inode, None)


def controls_in(inode: int, path: str | None) -> dict[str, ControlFile]:
    """The control files of the directory ``inode`` (at ``path``), by name."""
    if inode == ROOT_INODE:
        return CONTROLS
    control = BACKEND_RELOADS.get(path) if path is not None else None
    return {control.name: control} if control is not None else {}


def control_named(
    parent_inode: int, name: str, parent_path: str | None = None
) -> ControlFile | None:
    """The control file ``name`` stands for in the directory ``parent_inode`` (at
    ``parent_path``), if any: at the mount's root, and a backend directory's ``reload``."""
    return controls_in(parent_inode, parent_path).get(name)


def listed_controls(inode: int = ROOT_INODE, path: str | None = "/") -> list[ControlFile]:
    """The control files a listing of the directory ``inode`` shows."""
    return [control for control in controls_in(inode, path).values() if control.listed]


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
