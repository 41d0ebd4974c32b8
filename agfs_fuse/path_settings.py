"""Settings that may differ per backend of a federated mount, asked for by path.

A single-server mount has one value of each (its ``-o`` options); a federated mount lets
each backend set its own (``attr_timeout: 0`` for a server other clients change all the
time, a long one for an archive). The caches and the kernel's attribute builder ask a
``PathSettings`` for the values that hold under a path and never look at backends or
options themselves, so the single-server and the federated mount share one code path.

This is also where any other per-backend behaviour of the core plugs in: a per-backend
``async_upload`` flag (once ``-o async_upload`` exists) would be one more method here,
answered by ``ConstantSettings`` from the mount's options and by ``BackendTable`` from
the backend's ``BackendSpec.options``.
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


@dataclass(frozen=True)
class ConstantSettings:
    """One server, or none known for the path: the same settings everywhere."""

    values: CacheTimeouts = DEFAULT_TIMEOUTS

    def timeouts(self, path: str) -> CacheTimeouts:
        return self.values


DEFAULT_SETTINGS = ConstantSettings()
"""The default options' timeouts everywhere."""
