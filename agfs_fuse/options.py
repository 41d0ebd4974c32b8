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
from .spool import DEFAULT_MAX_KEPT

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


MAX_SECONDS = 366 * 24 * 3600
"""Timeouts are capped at a year: ``inf`` or ``1e300`` would overflow a deadline somewhere."""
MAX_ID = 2**32 - 2
"""uid_t is 32 bits and (uid_t)-1 means "no id": a larger uid= mounted, then made every
getattr fail with EIO."""
TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""The characters of an HTTP header name (RFC 9110 section 5.6.2, ``token``)."""
FORBIDDEN_HEADERS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "host",
    }
)
"""Headers that frame the request or belong to one hop (RFC 9110 section 7.6.1): set by
the client for each request; a fixed one would break the framing or smuggle requests."""


def _seconds(value: str) -> float:
    number = float(value)
    if not 0 <= number <= MAX_SECONDS:  # also refuses nan
        raise ValueError(f"must be a number of seconds from 0 to {MAX_SECONDS}")
    return number


def _positive_seconds(value: str) -> float:
    number = _seconds(value)
    if number == 0:
        raise ValueError("must be > 0")
    return number


def _id(value: str) -> int:
    number = int(value)
    if not 0 <= number <= MAX_ID:
        raise ValueError(f"must be a number from 0 to {MAX_ID}")
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


def _dir_path(value: str) -> Path:
    """A path that is a directory or does not exist yet (the mount creates it)."""
    path = _path(value)
    if path.exists() and not path.is_dir():
        raise ValueError("is not a directory")
    return path


def check_header_value(value: str) -> None:
    """Raise ``ValueError`` unless ``value`` can travel as one header value: a CR or LF
    would end the header and start another (header injection), other control characters
    are refused by servers, and the wire carries only Latin-1."""
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line")
    if any(c != "\t" and not c.isprintable() for c in value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError("must be Latin-1 text") from None


def _header(value: str) -> tuple[str, str]:
    name, sep, text = value.partition(":")
    name = name.strip()
    if not sep or not name or not set(name) <= TCHARS:
        raise ValueError("must be Name:Value")
    if name.lower() in FORBIDDEN_HEADERS:
        raise ValueError(f"{name} is set by agfs-fuse for each request and cannot be fixed")
    if name.lower() == "authorization":
        raise ValueError(
            "a token on the command line shows in ps; use -o token_file=PATH or $AGFS_TOKEN"
        )
    check_header_value(text)
    return (name, text.strip())


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
        "seconds a listing answers lookups of missing names, if longer than attr_timeout "
        "(default 0: attr_timeout)",
    ),
    "timeout": (_positive_seconds, "per-request inactivity deadline in seconds (default 30)"),
    "uid": (_id, "owner shown for every file (default: the mounting user; max 4294967294)"),
    "gid": (_id, "group shown for every file (default: the mounting user's)"),
    "umask": (_umask, "octal mask applied to the server's permission bits"),
    "cache_dir": (
        _dir_path,
        "where write spools live (default $XDG_CACHE_HOME/agfs-fuse); must be yours alone",
    ),
    "max_kept": (
        _size,
        "room for spools kept after failed uploads (default 1G); past it new writes get"
        " ENOSPC until 'agfs-fuse spools' re-uploads or discards some",
    ),
    "root": (_root, "remote directory shown as the mount root, e.g. /memfs"),
    "cafile": (_path, "PEM file of CA certificates to verify an https:// server with"),
    "certfile": (_path, "PEM client certificate for mutual TLS (with keyfile=)"),
    "keyfile": (_path, "PEM private key of the client certificate"),
    "token_file": (_path, "bearer token file, one line (or AGFS_TOKEN); warns unless chmod 600"),
    "header": (
        _header,
        "extra HTTP header Name:Value for a proxy (may repeat; not Content-Length, Host,"
        " Authorization or other framing headers)",
    ),
}
REPEATABLE = frozenset({"header"})
FLAGS: dict[str, str] = {
    "nonempty": "allow mounting over a non-empty directory",
    "debug": "log every FUSE operation and HTTP request (same as --debug)",
    "insecure": "do not verify the server's TLS certificate (dangerous)",
    "async_upload": (
        "close returns once the data is in the local spool; uploads run in the background"
        " (4 at once, retried), 'agfs-fuse sync' waits for them and reports failures (see"
        " docs/SEMANTICS.md)"
    ),
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
    max_kept: int = DEFAULT_MAX_KEPT
    root: str = "/"
    nonempty: bool = False
    debug: bool = False
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    token_file: Path | None = None
    token: str | None = field(default=None, repr=False)
    """A backend's token written in a federation config file (never an ``-o`` option:
    the command line shows in ``ps``). A backend given one of ``token`` and ``token_file``
    drops the other, so a mount-wide ``token_file`` never overrides it."""
    insecure: bool = False
    writeback_cache: bool = False
    async_upload: bool = False
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
                    shown = repr(value) if len(value) <= 100 else f"{value[:100]!r}..."
                    raise OptionError(f"bad value for -o {name}: {shown} ({exc})") from None
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


_METAVARS: dict[Callable[[str], Any], str] = {
    _seconds: "SECONDS",
    _positive_seconds: "SECONDS",
    _id: "N",
    _umask: "OCTAL",
    _size: "SIZE",
    _path: "PATH",
    _dir_path: "DIR",
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
