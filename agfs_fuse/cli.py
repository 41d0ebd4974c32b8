"""The ``agfs-fuse`` command line: ``mount`` (the product) and ``serve`` (the reference server).

Without ``-f`` the mount runs in a detached child process and this command returns only
once the mount is usable, or with the child's one-line error: scripts and fstab can rely
on the exit status.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from . import __version__
from .errors import InvalidArgument
from .federation_config import Federation, FederationError, from_maps, load_config
from .options import OptionError, options_help, parse_options
from .wire import normalize_base_url

PROG = "agfs-fuse"
BACKGROUND_START_TIMEOUT = 120.0

MOUNT_EPILOG = f"""\
mount options (-o, comma-separated, may repeat):
{options_help()}

examples:
  agfs-fuse mount http://127.0.0.1:8080/api/v1 /mnt/agfs
  agfs-fuse mount http://agfs:8080 /mnt/agfs -o root=/memfs,attr_timeout=5
  echo > /mnt/agfs/reload                          # reconnect
  echo http://other:8080/api/v1 > /mnt/agfs/reload # switch servers
  agfs-fuse mount -o async_upload URL /mnt/agfs     # close returns before the upload
  agfs-fuse sync /mnt/agfs                          # wait for pending uploads; 1 on failure
  fusermount3 -u /mnt/agfs                          # unmount

federation (several servers, one top-level directory each):
  agfs-fuse mount --map /dc1=http://dc1:8080/api/v1 --map /dc2=https://dc2:8443 /mnt/agfs
  agfs-fuse mount -c /etc/agfs-fuse/fed.yaml /mnt/agfs
      # fed.yaml: backends: {{/dc1: {{url: ..., root: /memfs, cafile: ..., token_file: ...,
      #                      headers: {{X-Team: a}}, timeout: 10, insecure: false,
      #                      attr_timeout: 0, entry_timeout: 0, negative_timeout: 0,
      #                      dir_cache_timeout: 0, async_upload: true}}}}
      #                      # token: ... (then chmod 600)
      #           options: {{attr_timeout: 1}}      # mount-wide defaults, as -o
  echo > /mnt/agfs/dc1/reload                       # reconnect one backend
  echo http://dc1b:8080/api/v1 > /mnt/agfs/dc1/reload  # switch one backend
  cat /mnt/agfs/.mounts                             # backends: path, URL, up/down, uploads
  echo 'mount /dc3 http://dc3:8080 root=/memfs attr_timeout=0 async_upload' > /mnt/agfs/.mounts
  echo 'unmount /dc3' > /mnt/agfs/.mounts           # EBUSY while its uploads are pending
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mount a remote AGFS server as a local directory (FUSE), "
        "or run the AGFS-compatible reference server.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    mount = commands.add_parser(
        "mount",
        help="mount an AGFS server on a local directory",
        usage=f"{PROG} mount [options] URL MOUNTPOINT\n"
        f"       {PROG} mount [options] --map /PREFIX=URL [--map ...] MOUNTPOINT\n"
        f"       {PROG} mount [options] -c CONFIG.yaml MOUNTPOINT",
        description="Mount the AGFS server at URL (http(s)://host:port/api/v1; the /api/v1 "
        "suffix is added when missing; no user:password@, a token goes in -o token_file=) "
        "on MOUNTPOINT. With --map or -c, mount several servers (a federation), each as "
        "one top-level directory. Returns once the mount is usable; "
        "unmount with 'fusermount3 -u MOUNTPOINT'.",
        epilog=MOUNT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mount.add_argument("url", metavar="URL", nargs="?", help="AGFS API base URL")
    mount.add_argument(
        "mountpoint", metavar="MOUNTPOINT", nargs="?", help="an existing, empty directory"
    )
    mount.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="/PREFIX=URL",
        help="federation: show the server at URL as the directory /PREFIX (may repeat); "
        "each backend takes the -o connection options",
    )
    mount.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="federation: backends and options from a YAML file (see below)",
    )
    mount.add_argument(
        "-f", "--foreground", action="store_true", help="stay in the foreground until unmounted"
    )
    mount.add_argument(
        "-o",
        dest="options",
        action="append",
        default=[],
        metavar="OPT[,OPT...]",
        help="mount options, see below",
    )
    mount.add_argument("--debug", action="store_true", help="log every operation and request")
    mount.add_argument("--log-file", metavar="FILE", help="write the log to FILE")
    mount.add_argument(
        "--systemd",
        action="store_true",
        help="log for journald (priority prefixes, no timestamps); automatic when "
        "$JOURNAL_STREAM is set",
    )
    mount.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    stats = commands.add_parser(
        "stats",
        help="show a mount's request counts, latencies, caches and pending uploads",
        description="Read MOUNTPOINT/.agfs-stats (JSON) and print it as a table.",
    )
    stats.add_argument("mountpoint", metavar="MOUNTPOINT")
    stats.add_argument("--json", action="store_true", help="print the raw JSON")

    spools = commands.add_parser(
        "spools",
        help="list the spools a mount kept after failed uploads; re-upload or discard one",
        description="List the spools kept for MOUNTPOINT (id, size, remote path, why kept, "
        "local path). --upload copies one onto its file through the running mount (so with "
        "the mount's own connection settings) and then discards it; --discard deletes one.",
    )
    spools.add_argument("mountpoint", metavar="MOUNTPOINT")
    action = spools.add_mutually_exclusive_group()
    action.add_argument("--upload", metavar="ID", help="re-upload this spool (an id prefix)")
    action.add_argument("--discard", metavar="ID", help="delete this spool (an id prefix)")
    spools.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="the mount's -o cache_dir, when it is not running (default: as for mount)",
    )
    spools.add_argument("--json", action="store_true", help="print the list as JSON")

    sync = commands.add_parser(
        "sync",
        help="wait until every pending upload of a mount has reached the server",
        description="Wait until every upload pending on MOUNTPOINT has been sent (with -o "
        "async_upload, close returns before the upload): queued ones at once, failed ones "
        "tried again. Prints one line per file that did not reach the server and exits 1 "
        "if there is any.",
    )
    sync.add_argument("mountpoint", metavar="MOUNTPOINT")

    serve = commands.add_parser(
        "serve",
        help="run the AGFS-compatible reference server (memfs, localfs, queuefs, streamfs)",
        description="Run an AGFS-compatible HTTP server for tests and demos. It behaves "
        "like the real Go server, quirks included.",
    )
    from .server.cli import configure_parser

    configure_parser(serve)
    return parser


class JournalFormatter(logging.Formatter):
    """``<N>message``: journald reads the syslog priority from the prefix and adds the time."""

    PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITIES.get(record.levelno, 2 if record.levelno > 40 else 6)
        text = super().format(record).replace("\n", "\n  ")
        return f"<{priority}>{text}"


def setup_logging(debug: bool, log_file: str | None, journal: bool = False) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    if journal and not log_file:
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Quiet on a terminal; a log file or the journal also gets the lifecycle lines.
    quiet = logging.INFO if (log_file or journal) else logging.WARNING
    root.setLevel(logging.DEBUG if debug else quiet)
    # Our client logs each request with its duration; httpx's own lines would repeat it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("pyfuse3").setLevel(logging.DEBUG if debug else logging.WARNING)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


def _start_in_background(argv: list[str]) -> int:
    """Run the mount in a detached child; wait for its 'ok' or its one-line error."""
    read_end, write_end = os.pipe()
    child = subprocess.Popen(
        [sys.executable, "-m", "agfs_fuse", *argv, "--foreground", "--ready-fd", str(write_end)],
        pass_fds=(write_end,),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write_end)
    answer = b""
    deadline = time.monotonic() + BACKGROUND_START_TIMEOUT
    with os.fdopen(read_end, "rb") as pipe:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], 0.5)
            if ready:
                chunk = os.read(pipe.fileno(), 4096)
                if not chunk:
                    break
                answer += chunk
            elif child.poll() is not None:
                break
        else:
            child.kill()
            return _fail("the mount did not become ready in time")
    text = answer.decode("utf-8", "replace").strip()
    if text == "ok":
        return 0
    if text:
        return _fail(text)
    return _fail(f"the mount process exited with status {child.wait()} before mounting")


def _federation(args: argparse.Namespace) -> Federation | None:
    """The backends of a federated mount (``--map`` or ``-c``), or None for one URL; the
    one positional argument is then the mountpoint. Raises ``FederationError``."""
    if not args.map and args.config is None:
        if args.mountpoint is None:
            raise FederationError("expected URL MOUNTPOINT (or --map/-c and MOUNTPOINT)")
        return None
    if args.map and args.config is not None:
        raise FederationError("give the backends with --map or with -c, not both")
    if args.mountpoint is not None:
        raise FederationError("with --map or -c, give only the MOUNTPOINT (no URL)")
    if args.url is None:
        raise FederationError("MOUNTPOINT is missing")
    args.mountpoint, args.url = args.url, None
    if args.config is not None:
        return load_config(Path(args.config).expanduser().absolute(), args.options)
    try:
        options = parse_options(args.options)
    except OptionError as exc:
        raise FederationError(str(exc)) from None
    return from_maps(args.map, options)


def _mount(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        federation = _federation(args)
    except FederationError as exc:
        return _fail(str(exc))
    try:
        options = parse_options(args.options) if federation is None else federation.options
    except OptionError as exc:
        return _fail(str(exc))
    try:  # before the background child exists: its command line shows in `ps`
        if federation is None:
            normalize_base_url(args.url)
    except InvalidArgument as exc:
        return _fail(exc.message)
    if not args.foreground:
        return _start_in_background(argv)

    from .mount import MountRequest, run_mount

    journal = args.systemd or bool(os.environ.get("JOURNAL_STREAM"))
    log_file = os.path.abspath(args.log_file) if args.log_file else None
    setup_logging(args.debug or options.debug, log_file, journal)
    mountpoint = os.path.abspath(args.mountpoint)
    if args.ready_fd is not None:
        os.chdir("/")  # a daemon must not keep the caller's directory busy

    def ready(error: str | None) -> None:
        if args.ready_fd is None:
            if error:
                _fail(error)
            return
        os.write(args.ready_fd, b"ok\n" if error is None else error.encode() + b"\n")
        os.close(args.ready_fd)
        args.ready_fd = None
        if error is None:  # detach from the caller's terminal or pipe for good
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)

    url = args.url if federation is None else federation.source
    request = MountRequest(url=url, mountpoint=mountpoint, options=options, federation=federation)
    return run_mount(request, ready)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "mount":
        return _mount(args, argv)
    if args.command == "stats":
        from .statsview import show_stats

        return show_stats(args.mountpoint, raw=args.json)
    if args.command == "sync":
        from .synccmd import sync_command

        return sync_command(args.mountpoint)
    if args.command == "spools":
        from pathlib import Path

        from .spoolcmd import spools_command

        return spools_command(
            args.mountpoint,
            cache_dir=Path(args.cache_dir).absolute() if args.cache_dir else None,
            upload=args.upload,
            discard=args.discard,
            as_json=args.json,
        )
    from .server.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
