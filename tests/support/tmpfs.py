"""A small tmpfs of the test's own, to fill a disk on purpose (a cache dir, a server's
localfs directory) without touching anything else on the machine."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_tmpfs(where: Path, size: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` bytes on ``where`` (created), unmount it afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        check=True,
    )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)
