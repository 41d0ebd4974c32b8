"""``agfs-fuse sync MOUNTPOINT``: wait for every pending upload of a mount, report failures.

With ``-o async_upload`` a ``close`` returns before the upload; this is how a script knows
its files have reached the server. It writes to the mount's hidden control file
``/.agfs-sync``, which returns once every pending upload has been sent (queued ones at
once, whatever their backoff; parked ones retried; open files' writes sent as by fsync),
and fails with EIO when any did not make it. Which ones, and why, it then reads from
``.agfs-stats`` (``last_sync_failures``) and prints one line per path; the exit status is
1 on any failure. In the default mode there is little to wait for, but the same holds; a
read-only mount (``-o ro``, the control file cannot be written) has nothing pending: 0.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

from .statsview import STATS_FILE

PROG = "agfs-fuse"
SYNC_FILE = ".agfs-sync"


def _failures(mountpoint: str) -> list[dict[str, Any]]:
    """The last sync's failures as ``.agfs-stats`` lists them (empty when unreadable)."""
    try:
        with open(os.path.join(mountpoint, STATS_FILE), "rb") as f:
            stats = json.loads(f.read())
    except (OSError, ValueError):
        return []
    found = stats.get("last_sync_failures") if isinstance(stats, dict) else None
    return [f for f in found if isinstance(f, dict)] if isinstance(found, list) else []


def _line(failure: dict[str, Any]) -> str:
    then = "kept, see: agfs-fuse spools" if failure.get("kept") else "will be retried"
    return f"{PROG}: upload failed: {failure.get('path')}: {failure.get('error')} ({then})"


def sync_command(mountpoint: str) -> int:
    mountpoint = os.path.realpath(mountpoint)
    if not os.path.ismount(mountpoint):
        print(f"{PROG}: error: {mountpoint} is not a mount point", file=sys.stderr)
        return 1
    try:
        fd = os.open(os.path.join(mountpoint, SYNC_FILE), os.O_WRONLY)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return 0  # a read-only mount writes nothing: there is nothing to wait for
        print(
            f"{PROG}: error: cannot open {SYNC_FILE} on {mountpoint}: {exc.strerror} "
            "(is it an agfs-fuse mount?)",
            file=sys.stderr,
        )
        return 1
    try:
        os.write(fd, b"sync\n")
    except OSError as exc:
        failures = _failures(mountpoint)
        for failure in failures:
            print(_line(failure), file=sys.stderr)
        if not failures:
            print(f"{PROG}: error: sync failed: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)
    return 0
