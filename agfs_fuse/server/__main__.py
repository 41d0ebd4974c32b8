"""``python -m agfs_fuse.server ...``: run the reference server without the main CLI."""

from __future__ import annotations

import argparse
import sys

from agfs_fuse.server.cli import configure_parser, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` with the ``serve`` options and run the server."""
    parser = argparse.ArgumentParser(
        prog="agfs-fuse serve", description="Run the AGFS-compatible reference server."
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
