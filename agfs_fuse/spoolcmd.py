"""``agfs-fuse spools MOUNTPOINT``: list the spools a mount kept, re-upload or discard one.

A kept spool is the content of a file whose upload failed for good (see ``uploads``). A
running mount lists them in ``/.agfs-stats`` and takes ``upload ID`` / ``discard ID`` on
its hidden control file ``/.agfs-spools``: the mount itself re-uploads the spool, with its
own server, TLS, token and headers and its way of uploading large files, and keeps it
(with the new reason) if that fails too. Without a running mount the spools can still be
listed and discarded, from the spool directory of MOUNTPOINT under the cache dir.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .spool import KeptSpool, SpoolDir, UnsafeSpoolDir, default_cache_dir, spool_dir_path
from .statsview import STATS_FILE

PROG = "agfs-fuse"
SPOOLS_FILE = ".agfs-spools"


class SpoolsError(Exception):
    """One line for the user."""


def _running_stats(mountpoint: str) -> dict[str, Any] | None:
    """The mount's stats when an agfs-fuse mount is serving MOUNTPOINT, else None."""
    if not os.path.ismount(mountpoint):
        return None
    try:
        with open(os.path.join(mountpoint, STATS_FILE), "rb") as f:
            stats = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return stats if isinstance(stats, dict) and "kept_spools" in stats else None


def _on_disk(mountpoint: str, cache_dir: Path | None) -> list[dict[str, Any]]:
    root = spool_dir_path(cache_dir or default_cache_dir(), mountpoint)
    if not root.is_dir():
        return []
    try:
        return [spool.describe() for spool in SpoolDir(root).kept(in_use=set())]
    except UnsafeSpoolDir as exc:  # e.g. run with sudo on a user's cache dir
        raise SpoolsError(str(exc)) from None
    except OSError as exc:
        raise SpoolsError(f"cannot read the spools in {root}: {exc.strerror or exc}") from None


def _find(kept: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    matches = [spool for spool in kept if str(spool["id"]).startswith(wanted)]
    if len(matches) != 1:
        known = ", ".join(str(spool["id"])[:8] for spool in kept) or "none"
        what = "matches no" if not matches else "matches more than one"
        raise SpoolsError(f"{wanted!r} {what} kept spool (kept: {known})")
    return matches[0]


def _discard(spool: dict[str, Any], mountpoint: str, running: bool) -> None:
    if running:
        _tell_mount(mountpoint, f"discard {spool['id']}")
    else:
        try:
            KeptSpool(Path(spool["path"]), None, 0).discard()
        except OSError as exc:
            where = exc.filename or spool["path"]
            raise SpoolsError(f"cannot discard {where}: {exc.strerror or exc}") from None


def _tell_mount(mountpoint: str, command: str) -> None:
    """Write one command to the mount's control file; its errors come back as OSError."""
    control = os.path.join(mountpoint, SPOOLS_FILE)
    try:
        fd = os.open(control, os.O_WRONLY)
        try:
            os.write(fd, command.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise SpoolsError(
            f"{command.split()[0]} failed: {exc.strerror or exc} (the spool is still kept; "
            "the mount's log says more)"
        ) from None


def _upload(spool: dict[str, Any], mountpoint: str) -> None:
    if spool["remote_path"] is None or spool["partial"]:
        raise SpoolsError(
            f"{spool['id']} is not a whole file (no sidecar, or only the changed ranges of "
            f"{spool['remote_path']}): copy what you need from {spool['path']} by hand, "
            "then discard it"
        )
    _tell_mount(mountpoint, f"upload {spool['id']}")


def _table(kept: list[dict[str, Any]]) -> str:
    if not kept:
        return "no kept spools"
    lines = []
    for spool in kept:
        lines.append(
            f"{spool['id']}  {spool['size']:>12}  {spool['remote_path'] or '?'}\n"
            f"    why:  {spool['reason']}\n    path: {spool['path']}"
        )
    return "\n".join(lines)


def spools_command(
    mountpoint: str,
    *,
    cache_dir: Path | None = None,
    upload: str | None = None,
    discard: str | None = None,
    as_json: bool = False,
) -> int:
    mountpoint = os.path.realpath(mountpoint)
    try:
        stats = _running_stats(mountpoint)
        kept = stats["kept_spools"] if stats is not None else _on_disk(mountpoint, cache_dir)
        if discard is not None:
            spool = _find(kept, discard)
            _discard(spool, mountpoint, running=stats is not None)
            print(f"discarded {spool['id']} ({spool['remote_path']}, {spool['size']} bytes)")
        elif upload is not None:
            spool = _find(kept, upload)
            if stats is None:
                raise SpoolsError(f"no agfs-fuse mount on {mountpoint}: mount it to re-upload")
            _upload(spool, mountpoint)
            done = f"{spool['remote_path']} ({spool['size']} bytes)"
            print(f"uploaded {done} and discarded its spool")
        else:
            print(json.dumps(kept, indent=2) if as_json else _table(kept))
    except SpoolsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0
