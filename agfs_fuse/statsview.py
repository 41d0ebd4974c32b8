"""``agfs-fuse stats MOUNTPOINT``: the mount's ``/.agfs-stats`` JSON as a readable table."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

STATS_FILE = ".agfs-stats"


def _rows(prefix: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        if not value:
            return [(prefix, "-")]
        rows: list[tuple[str, str]] = []
        for key, inner in value.items():
            rows += _rows(f"{prefix}.{key}" if prefix else str(key), inner)
        return rows
    return [(prefix, str(value))]


def render(stats: dict[str, Any]) -> str:
    rows = _rows("", stats)
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def show_stats(mountpoint: str, *, raw: bool = False) -> int:
    path = os.path.join(mountpoint, STATS_FILE)
    try:
        with open(path, "rb") as handle:
            text = handle.read()
        stats = json.loads(text)
    except OSError as exc:
        print(
            f"agfs-fuse: error: cannot read {path}: {exc.strerror} (is it an agfs-fuse mount?)",
            file=sys.stderr,
        )
        return 1
    except ValueError:
        print(f"agfs-fuse: error: {path} is not agfs-fuse stats", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2) if raw else render(stats))
    return 0
