"""``agfs-fuse serve``: the command line of the reference server.

The lead wires ``configure_parser`` and ``run`` as a subcommand; ``python -m
agfs_fuse.server`` builds its own parser from the same two functions. Bad input gives one
line on stderr and exit status 2; a listener that cannot bind gives status 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from agfs_fuse.server.config import DEFAULT_ADDR, DEFAULT_MAX_BODY, ConfigError, build_settings

PROG = "agfs-fuse serve"
LEVELS = {
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``."""
    parser.description = (
        "Run an AGFS-compatible HTTP server (API v1), faithful to the real Go server's "
        "behaviour, for tests and local use. Without -c it mounts memfs at /memfs and "
        "queuefs at /queuefs; devfs is always at /dev. A config can mount memfs, localfs, "
        "queuefs, streamfs and proxyfs."
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="CONFIG",
        help="the real server's config.yaml; its plugins (memfs, localfs, queuefs, streamfs, "
        "proxyfs) "
        "replace the default mounts",
    )
    parser.add_argument(
        "--addr",
        metavar="HOST:PORT",
        help=f"listen address (default {DEFAULT_ADDR}, or server.address from the config; "
        "port 0 picks a free port)",
    )
    parser.add_argument(
        "--max-body",
        metavar="BYTES",
        type=int,
        help=f"request body limit (default {DEFAULT_MAX_BODY}, or server.max_request_body_bytes)",
    )
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        choices=sorted(LEVELS),
        help="debug, info, warn or error (default info, or server.log_level)",
    )
    parser.add_argument(
        "--test-hooks",
        action="store_true",
        help="TEST ONLY, not part of AGFS: serve GET /api/v1/_test/stats (request counts, "
        "open handles) and POST /api/v1/_test/reset",
    )


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return status


def run(args: argparse.Namespace) -> int:
    """Start the server and block until SIGINT/SIGTERM; returns the exit status."""
    try:
        settings = build_settings(
            args.config, args.addr, args.max_body, args.log_level, args.test_hooks
        )
    except ConfigError as exc:
        return _fail(str(exc), 2)

    logging.basicConfig(
        stream=sys.stderr,
        level=LEVELS.get(settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )

    from agfs_fuse.server.app import AgfsServer  # imported late: keeps --help fast

    try:
        server = AgfsServer(settings)
    except OSError as exc:
        return _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", 1)

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.serve_in_thread()
        logging.getLogger("agfs_fuse.server").info(
            "agfs-fuse reference server listening on %s (body limit %d bytes)",
            server.url,
            settings.max_body,
        )
        print(f"listening on {server.url}", flush=True)
        while not stop.wait(3600):
            pass
    finally:
        server.shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
    logging.getLogger("agfs_fuse.server").info("stopped")
    return 0
