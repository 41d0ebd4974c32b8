"""``mount.fuse.agfs``: the helper mount(8) runs for ``-t fuse.agfs`` and fstab lines.

For ``mount -t fuse.agfs URL MOUNTPOINT -o OPTS`` and for an fstab line of type
``fuse.agfs``, mount(8) (libmount) looks for ``/sbin/mount.fuse.agfs`` and runs::

    mount.fuse.agfs SOURCE MOUNTPOINT [-s] [-f] [-n] [-v] [-o OPTS] [-t TYPE] [-N NS]

SOURCE and MOUNTPOINT always come first (MOUNTPOINT canonicalised); the flags come as
separate words in that order; ``-o`` always comes, as one separate argument starting
with ``rw`` or ``ro``. mount(8) itself drops ``defaults``, ``auto``, ``noauto``, ``comment=`` and
``x-*`` (the whole ``x-systemd.*`` family), but passes ``_netdev``, ``nofail`` and
``user``/``users`` on (and adds ``noexec,nosuid,nodev`` for ``user``). ``-t`` is only
given when the helper's name does not already say the type, and ``-N`` only for
``mount -N``. This helper also takes glued ``-oOPTS``, repeated ``-o`` and combined
flags (``-sv``), so it can be called by hand the same way. mount(8) also removes
``HOME`` and ``PATH`` from the helper's environment (the rest passes through).

It turns that into ``agfs-fuse mount SOURCE MOUNTPOINT -o OPTS`` in background mode, which
returns only once the mount answers, or prints a one-line error: so ``mount`` (and
``mount -a`` at boot) reports failure instead of leaving a dead mountpoint behind.

A SOURCE that is an absolute path ending in ``.yaml`` or ``.yml`` is a federation config
file: ``agfs-fuse mount -c SOURCE MOUNTPOINT -o OPTS`` (several servers in one mount; the
file is read and checked before anything runs, and is what ``/proc/mounts`` shows).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import cli, errors
from .federation_config import FederationError, load_config
from .options import FSTAB_ONLY, FSTAB_PREFIXES, OptionError, parse_options
from .wire import normalize_base_url

PROG = "mount.fuse.agfs"
FSTYPES = ("fuse.agfs", "agfs")
"""What ``-t`` may say: our own type, with or without mount.fuse3's ``fuse.`` prefix."""

# mount(8)'s documented helper exit codes: mount passes the helper's status through.
EX_USAGE = 1
"""Incorrect invocation: a bad option, URL or mountpoint (nothing was tried)."""
EX_FAIL = 32
"""Mount failure: the server or the mount itself said no."""

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CONFIG_SUFFIXES = (".yaml", ".yml")

DROPPED = frozenset((*FSTAB_ONLY, "rw"))
"""Options only mount(8) and fstab care about, plus ``rw`` (which mount(8) always adds
and is the default): not passed on, so ``ps`` shows the options that matter."""


class UsageError(Exception):
    """A bad command line; the message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints the whole usage and exits 2; mount(8) users want one line
        # and mount's own status code for a bad invocation.
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Mount helper for mount(8): `mount -t fuse.agfs URL MOUNTPOINT -o OPTS` "
        "and fstab lines of type fuse.agfs run this. Returns once the mount is usable. "
        "A SOURCE that is an absolute path to a .yaml file mounts the federation it "
        "describes, as `agfs-fuse mount -c SOURCE`.",
        epilog="Same options as `agfs-fuse mount -o`; fstab-only options (_netdev, nofail, "
        "noauto, auto, defaults, user, users, comment=..., x-systemd.*) are ignored.",
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="the AGFS server URL, or a federation config file (/etc/agfs-fuse/NAME.yaml)",
    )
    parser.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing, empty directory")
    parser.add_argument("-s", dest="sloppy", action="store_true", help="ignore unknown options")
    parser.add_argument(
        "-f", dest="fake", action="store_true", help="fake: check everything, mount nothing"
    )
    parser.add_argument(
        "-n", dest="no_mtab", action="store_true", help="no mtab (accepted; there is none)"
    )
    parser.add_argument("-v", dest="verbose", action="store_true", help="say what is run")
    parser.add_argument(
        "-o", dest="options", action="append", default=[], metavar="OPTS", help="mount options"
    )
    parser.add_argument("-t", dest="fstype", metavar="TYPE", help="fuse.agfs (accepted)")
    parser.add_argument("-N", dest="namespace", metavar="NS", help=argparse.SUPPRESS)
    return parser


def is_config_source(source: str) -> bool:
    """Whether SOURCE names a federation config file rather than a server URL."""
    return source.startswith("/") and source.endswith(CONFIG_SUFFIXES)


def _is_dropped(item: str) -> bool:
    name = item.partition("=")[0]
    return name in DROPPED or item.startswith(FSTAB_PREFIXES)


def filter_options(groups: Sequence[str], *, sloppy: bool) -> list[str]:
    """The options to pass on, in order: fstab-only ones dropped, and unknown ones too
    when ``sloppy``; raises ``OptionError`` for anything ``agfs-fuse mount`` would refuse.

    Every item is checked by ``options.parse_options`` itself (so there is one list of
    valid options): an item that parses sloppily but not strictly is an unknown option,
    dropped under ``-s``. A bad value for a known option fails even under ``-s``: sloppy
    means "not for this file system", not "wrong".
    """
    kept: list[str] = []
    for group in groups:
        for raw in group.split(","):
            item = raw.strip()
            if not item or _is_dropped(item):
                continue
            parse_options([item], sloppy=True)
            try:
                parse_options([item])
            except OptionError:
                if not sloppy:
                    raise
                continue
            kept.append(item)
    parse_options([",".join(kept)])  # contradictions between options (ro and rw...)
    return kept


def _check(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Validate the whole invocation without touching the server; returns
    (absolute mountpoint, options to pass on)."""
    if args.fstype is not None and args.fstype not in FSTYPES:
        raise UsageError(f"-t {args.fstype}: this helper only mounts fuse.agfs")
    if args.namespace is not None:
        raise UsageError("-N (mount in another namespace) is not supported")
    try:
        options = filter_options(args.options, sloppy=args.sloppy)
    except OptionError as exc:
        raise UsageError(str(exc)) from None
    if is_config_source(args.source):
        try:
            load_config(Path(args.source), [",".join(options)])
        except FederationError as exc:
            raise UsageError(str(exc)) from None
    else:
        try:
            normalize_base_url(args.source)
        except errors.InvalidArgument as exc:
            raise UsageError(exc.message) from None
    mountpoint = os.path.abspath(args.mountpoint)
    if not os.path.isdir(mountpoint):
        raise UsageError(f"mountpoint {args.mountpoint} does not exist or is not a directory")
    return mountpoint, options


@contextlib.contextmanager
def _mount_environment() -> Iterator[None]:
    """Run the mount from ``/`` with ``$HOME`` and ``$PATH`` set; restore all three after.

    The mount process detaches and outlives us: started from the caller's directory it
    would keep that directory busy (and its file system unmountable) for as long as the
    mount lives. mount(8) removes ``HOME`` and ``PATH`` (among others) from a helper's
    environment, and at boot there may be none at all: like mount.fuse3, fill ``HOME``
    in from the password database, and give ``PATH`` the usual default so tools such as
    fusermount3 are found.
    """
    cwd = os.getcwd()
    saved = {name: os.environ.get(name) for name in ("HOME", "PATH")}
    if not saved["HOME"]:
        with contextlib.suppress(KeyError):
            os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    if not saved["PATH"]:
        os.environ["PATH"] = DEFAULT_PATH
    os.chdir("/")
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: Sequence[str] | None = None) -> int:
    """Run as mount(8) does; returns the exit status (0 only once the mount is usable)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        mountpoint, options = _check(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EX_USAGE
    source = ["-c", args.source] if is_config_source(args.source) else [args.source]
    command = ["mount", *source, mountpoint]
    if options:
        command += ["-o", ",".join(options)]
    if args.verbose:
        print(
            f"{PROG}: {'would run' if args.fake else 'running'}: {shlex.join([cli.PROG, *command])}"
        )
    if args.fake:
        return 0
    with _mount_environment():
        try:
            status = cli.main(command)
        except SystemExit as exc:  # argparse in cli: cannot happen after _check, but be sure
            status = exc.code if isinstance(exc.code, int) else 1
    return 0 if status == 0 else EX_FAIL


if __name__ == "__main__":
    sys.exit(main())
