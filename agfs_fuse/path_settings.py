"""Settings that may differ per backend of a federated mount, asked for by path.

A single-server mount has one value of each (its ``-o`` options); a federated mount lets
each backend set its own (``attr_timeout: 0`` for a server other clients change all the
time, a long one for an archive). The caches and the kernel's attribute builder ask a
``PathSettings`` for the values that hold under a path and never look at backends or
options themselves, so the single-server and the federated mount share one code path.

This is also where any other per-backend behaviour of the core plugs in: whether a closed
file's upload is left to the background (``async_upload``) is answered by
``ConstantSettings`` from the mount's ``-o async_upload`` and by ``BackendTable`` from the
backend's ``BackendSpec.options`` (its own ``async_upload``, else the mount's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .options import MountOptions


@dataclass(frozen=True)
class CacheTimeouts:
    """How long what the mount learnt of a path may be served without asking again."""

    attr: float = 1.0
    """Attributes, in the mount's cache and the kernel's (``attr_timeout``)."""
    entry: float = 1.0
    """A name's inode in the kernel's cache (``entry_timeout``)."""
    negative: float = 1.0
    """A missing name in the kernel's cache, and the listing of a creation burst
    (``negative_timeout``)."""
    dir_cache: float = 0.0
    """A listing answering lookups of missing names (``dir_cache_timeout``; 0: never)."""

    @classmethod
    def of(cls, options: MountOptions) -> CacheTimeouts:
        return cls(
            attr=options.attr_timeout,
            entry=options.entry_timeout,
            negative=options.negative_timeout,
            dir_cache=options.dir_cache_timeout,
        )


DEFAULT_TIMEOUTS = CacheTimeouts()


class PathSettings(Protocol):
    """The settings that hold for a mount path (``/dc1/x``: backend ``/dc1``'s)."""

    def timeouts(self, path: str) -> CacheTimeouts: ...

    def async_upload(self, path: str) -> bool:
        """Whether the last ``close`` of the file ``path`` leaves its upload to the
        background uploader (else it uploads before returning)."""
        ...

    def any_async_upload(self) -> bool:
        """Whether ``async_upload`` holds anywhere (the mount needs a background uploader)."""
        ...


@dataclass(frozen=True)
class ConstantSettings:
    """One server, or none known for the path: the same settings everywhere."""

    values: CacheTimeouts = DEFAULT_TIMEOUTS
    async_everywhere: bool = False
    """``-o async_upload``: every file's upload is left to the background."""

    def timeouts(self, path: str) -> CacheTimeouts:
        return self.values

    def async_upload(self, path: str) -> bool:
        return self.async_everywhere

    def any_async_upload(self) -> bool:
        return self.async_everywhere


DEFAULT_SETTINGS = ConstantSettings()
"""The default options' timeouts everywhere."""
