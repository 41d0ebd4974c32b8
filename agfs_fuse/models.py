"""Domain objects the client returns: plain, frozen, and free of HTTP and FUSE."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# meta.Type values whose size cannot be trusted or whose reads change state
# (docs/PROTOCOL.md, Volatile and stream files): such files are read with one GET per open,
# never cached.
UNTRUSTED_TYPES = frozenset(
    {
        "control",
        "status",
        "stream",
        "info",
        "traffic",
        "keepalive",
        "ctl",
        "session-ctl",
        "query",
        "device",
    }
)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One AGFS entry as the server describes it."""

    name: str
    size: int
    perm: int
    """Permission bits only (0o7777); the file type lives in ``is_dir``/``is_symlink``."""
    is_dir: bool
    is_symlink: bool
    mtime_ns: int
    meta_name: str = ""
    meta_type: str = ""
    meta_content: Mapping[str, str] | None = field(default=None, compare=False)

    @property
    def untrusted(self) -> bool:
        """True when size/reads are not what they seem (control, status, stream, ...)."""
        return self.meta_type in UNTRUSTED_TYPES

    @property
    def is_disk_link(self) -> bool:
        """A link on the plugin's own disk (localfs): listed with Go's symlink bit, but the
        server's stat follows it and its readlink knows only AGFS's links (meta Type
        ``symlink``), so it must be shown as what it points to."""
        return self.is_symlink and self.meta_type != "symlink"

    @property
    def write_only(self) -> bool:
        """True for files nobody may read (queuefs enqueue, proxyfs reload)."""
        return not self.is_dir and self.perm & 0o444 == 0


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health``: the server's own view of itself."""

    status: str
    version: str
    ready: bool
    degraded: bool


@dataclass(frozen=True, slots=True)
class MountPoint:
    """One entry of ``GET /mounts``: which plugin serves which path."""

    path: str
    plugin: str
    status: str = ""
