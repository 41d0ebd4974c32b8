"""Streamed answers cut into pieces of at most 64 KiB, each flushed on its own (Go does)."""

from __future__ import annotations

from collections.abc import Iterator

from agfs_fuse.server.plugins.base import Bytes

STREAM_PIECE = 64 * 1024


class Pieces:
    """Re-cut a stream into pieces of at most ``STREAM_PIECE`` bytes.

    Empty chunks pass through (an idle streamfs reader's tick). ``close`` closes the
    source even if iteration never started, so a streamfs reader is always unregistered.
    """

    def __init__(self, chunks: Iterator[Bytes]) -> None:
        self.chunks = chunks
        self.view = memoryview(b"")

    def __iter__(self) -> Pieces:
        return self

    def __next__(self) -> Bytes:
        if not len(self.view):
            chunk = next(self.chunks)
            if not len(chunk):
                return chunk
            self.view = memoryview(chunk)
        piece, self.view = self.view[:STREAM_PIECE], self.view[STREAM_PIECE:]
        return piece

    def close(self) -> None:
        """Close the source stream, if it can be closed."""
        close = getattr(self.chunks, "close", None)
        if close is not None:
            close()
