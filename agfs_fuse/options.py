"""Mount options: parsing ``-o`` lists into a typed configuration, with clear errors.

Options the kernel knows go to libfuse unchanged; the rest are ours. Options that only
mount(8)/fstab care about (``_netdev``, ``noauto``, ``x-systemd.*``...) are accepted and
ignored, so the same list works on the command line and in /etc/fstab.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import paths

KERNEL_FLAGS = (
    "allow_other",
    "default_permissions",
    "ro",
    "rw",
    "nosuid",
    "nodev",
    "noexec",
    "noatime",
)
FSTAB_ONLY = ("_netdev", "auto", "noauto", "user", "users", "nouser", "nofail", "defaults")
FSTAB_PREFIXES = ("x-systemd.", "x-", "comment=")


class OptionError(ValueError):
    """A bad ``-o`` option; the message says what is valid."""


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0 or number != number:
        raise ValueError("must be a number of seconds >= 0")
    return number


def _positive_seconds(value: str) -> float:
    number = _seconds(value)
    if number == 0:
        raise ValueError("must be > 0")
    return number


def _id(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be >= 0")
    return number


SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(value: str) -> int:
    """Bytes, or with a binary unit: ``512M``, ``1G`` (``1GiB`` and ``1GB`` mean the same)."""
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in SIZE_UNITS else ""
    number = text[: len(text) - len(unit)]
    if not number.isdigit():
        raise ValueError("must be a size like 1G, 512M or 1048576")
    return int(number) * SIZE_UNITS[unit]


def _umask(value: str) -> int:
    number = int(value, 8)
    if not 0 <= number <= 0o7777:
        raise ValueError("must be an octal mask like 022")
    return number


def _path(value: str) -> Path:
    """Absolute at parse time: the background mount runs from '/', not the caller's cwd."""
    if not value:
        raise ValueError("must be a path")
    return Path(value).expanduser().absolute()


def _header(value: str) -> tuple[str, str]:
    name, sep, text = value.partition(":")
    if not sep or not name.strip() or any(c in name for c in " \t\r\n"):
        raise ValueError("must be Name:Value")
    if "\n" in text or "\r" in text:
        raise ValueError("must be one line")
    return (name.strip(), text.strip())


def _root(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute remote path like /memfs")
    return paths.normalize(value)


VALUED: dict[str, tuple[Callable[[str], Any], str]] = {
    "attr_timeout": (_seconds, "seconds the kernel caches attributes (default 1)"),
    "entry_timeout": (_seconds, "seconds the kernel caches names (default 1)"),
    "negative_timeout": (_seconds, "seconds a missing name is cached (default 1)"),
    "dir_cache_timeout": (
        _seconds,
        "seconds a listing also answers lookups of missing names (default 0: off)",
    ),
    "timeout": (_positive_seconds, "per-request inactivity deadline in seconds (default 30)"),
    "uid": (_id, "owner shown for every file (default: the mounting user)"),
    "gid": (_id, "group shown for every file (default: the mounting user's)"),
    "umask": (_umask, "octal mask applied to the server's permission bits"),
    "cache_dir": (_path, "where write spools live (default $XDG_CACHE_HOME/agfs-fuse)"),
    "max_kept": (
        _size,
        "room for spools kept after failed uploads (default 1G); past it new writes get"
        " ENOSPC until 'agfs-fuse spools' re-uploads or discards some",
    ),
    "root": (_root, "remote directory shown as the mount root, e.g. /memfs"),
    "cafile": (_path, "PEM file of CA certificates to verify an https:// server with"),
    "certfile": (_path, "PEM client certificate for mutual TLS (with keyfile=)"),
    "keyfile": (_path, "PEM private key of the client certificate"),
    "token_file": (_path, "file holding a bearer token (or set AGFS_TOKEN)"),
    "header": (_header, "extra HTTP header Name:Value for a proxy (may repeat)"),
}
REPEATABLE = frozenset({"header"})
FLAGS: dict[str, str] = {
    "nonempty": "allow mounting over a non-empty directory",
    "debug": "log every FUSE operation and HTTP request (same as --debug)",
    "insecure": "do not verify the server's TLS certificate (dangerous)",
    "writeback_cache": (
        "let the kernel gather small writes into large ones (off by default: sizes changed"
        " by other clients are then not seen; see docs/SEMANTICS.md)"
    ),
}


@dataclass
class MountOptions:
    attr_timeout: float = 1.0
    entry_timeout: float = 1.0
    negative_timeout: float = 1.0
    dir_cache_timeout: float = 0.0
    timeout: float = 30.0
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    cache_dir: Path | None = None
    max_kept: int = 1 << 30
    root: str = "/"
    nonempty: bool = False
    debug: bool = False
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    token_file: Path | None = None
    insecure: bool = False
    writeback_cache: bool = False
    header: list[tuple[str, str]] = field(default_factory=list)
    kernel: list[str] = field(default_factory=list)

    @property
    def read_only(self) -> bool:
        return "ro" in self.kernel


def valid_options_text() -> str:
    valued = ", ".join(f"{name}=" for name in VALUED)
    flags = ", ".join([*FLAGS, *KERNEL_FLAGS])
    return f"{valued}, {flags}"


def parse_options(groups: Iterable[str], *, sloppy: bool = False) -> MountOptions:
    """Parse repeated ``-o a,b=c`` groups; raises ``OptionError`` with a one-line message.

    ``sloppy`` (mount(8)'s ``-s``) drops unknown options instead of refusing them.
    """
    options = MountOptions()
    for group in groups:
        for item in group.split(","):
            item = item.strip()
            if not item:
                continue
            name, has_value, value = item.partition("=")
            if name in KERNEL_FLAGS and not has_value:
                if name not in options.kernel:
                    options.kernel.append(name)
            elif name in FLAGS and not has_value:
                setattr(options, name, True)
            elif name in VALUED and has_value:
                convert, _ = VALUED[name]
                try:
                    converted = convert(value)
                    if name in REPEATABLE:
                        getattr(options, name).append(converted)
                    else:
                        setattr(options, name, converted)
                except ValueError as exc:
                    raise OptionError(f"bad value for -o {name}: {value!r} ({exc})") from None
            elif name in FSTAB_ONLY or item.startswith(FSTAB_PREFIXES):
                continue
            elif name in VALUED:
                raise OptionError(f"-o {name} needs a value: {name}=...")
            elif name in FLAGS or name in KERNEL_FLAGS:
                raise OptionError(f"-o {name} takes no value")
            elif not sloppy:
                raise OptionError(
                    f"unknown mount option {name!r}; valid options: {valid_options_text()}"
                )
    if "ro" in options.kernel and "rw" in options.kernel:
        raise OptionError("-o ro and -o rw contradict each other")
    if (options.certfile is None) != (options.keyfile is None):
        raise OptionError("-o certfile= and -o keyfile= go together")
    if "allow_other" in options.kernel and "default_permissions" not in options.kernel:
        # Other users must meet the permission bits: without this the kernel checks nothing.
        options.kernel.append("default_permissions")
    return options


_METAVARS = {
    _seconds: "SECONDS",
    _positive_seconds: "SECONDS",
    _id: "N",
    _umask: "OCTAL",
    _size: "SIZE",
    _path: "PATH",
    _root: "/PATH",
    _header: "NAME:VALUE",
}


def options_help() -> str:
    """The option list for ``--help``, generated from the tables above."""
    rows = [(f"{name}={_METAVARS[convert]}", text) for name, (convert, text) in VALUED.items()]
    rows += list(FLAGS.items())
    rows.append(
        (", ".join(KERNEL_FLAGS), "passed to the kernel (allow_other adds default_permissions)")
    )
    width = max(len(left) for left, _ in rows[:-1])
    lines = [f"  {left:<{width}}  {text}" for left, text in rows[:-1]]
    lines.append(f"  {rows[-1][0]}\n  {'':<{width}}  {rows[-1][1]}")
    return "\n".join(lines)
