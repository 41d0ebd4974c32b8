"""A body over the server's limit is a 413 (EFBIG, or the handle fallback), not a lost
connection, when the server refuses it the way the real Go server does: it reads limit+1
bytes, answers 413 and closes while the client is still sending (``GoLikeServer``).

Before the client read the answer after a failed send, the upload raised ``ConnectionLost``
(EIO at close(), then endless background retries of a spool that could never fit).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from agfs_fuse.capabilities import Capabilities
from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import ConnectionLost, FileTooLarge
from agfs_fuse.models import MountPoint
from agfs_fuse.spool import SpoolDir
from agfs_fuse.writes import HANDLE_CHUNK, SpoolWriter
from tests.support.golike import GoLikeServer

pytestmark = pytest.mark.timeout(30)

LIMIT = 1 << 20
BIG = 8 << 20  # far over the limit and over what the socket buffers can absorb


def _spool_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "spool"
    path.write_bytes(data)
    return path


def test_a_plain_upload_over_the_limit_is_file_too_large(tmp_path: Path) -> None:
    data = os.urandom(BIG)
    source = _spool_file(tmp_path, data)

    async def main() -> FileTooLarge:
        client = AgfsClient(server.url, timeout=10)
        try:
            with source.open("rb") as f, pytest.raises(FileTooLarge) as caught:
                await client.write_from("/memfs/big", f, BIG)
            await client.write("/memfs/small", b"after")  # the pool still works
        finally:
            await client.aclose()
        return caught.value

    with GoLikeServer(LIMIT) as server:
        error = trio.run(main)
    assert error.errno == errno.EFBIG
    assert f"exceeds maximum size of {LIMIT} bytes" in str(error)
    assert server.refused("PUT /files") == [BIG]  # once: a 413 is not retried
    assert server.files["/memfs/small"] == b"after"


@pytest.mark.timeout(90)
def test_the_answer_is_read_as_soon_as_it_comes_not_at_the_reset(tmp_path: Path) -> None:
    """Go answers 413, then waits 500 ms (here 20 s) before it resets the connection; the
    client stops sending when the answer arrives instead of waiting for the reset.

    The linger is long so that waiting for the reset (20 s per request) and a slow, loaded
    machine (well under 10 s for both) cannot be mistaken for each other."""
    source = _spool_file(tmp_path, bytes(BIG))

    async def main() -> float:
        client = AgfsClient(server.url, timeout=30)  # longer than the linger
        try:
            started = trio.current_time()
            with source.open("rb") as f, pytest.raises(FileTooLarge):
                await client.write_from("/memfs/big", f, BIG)  # a file: by sendfile
            with pytest.raises(FileTooLarge):
                await client.handle_write(1, 0, bytes(BIG))  # bytes
            return trio.current_time() - started
        finally:
            await client.aclose()

    with GoLikeServer(LIMIT, linger=20.0) as server:
        elapsed = trio.run(main)
    assert elapsed < 10.0, f"{elapsed:.1f} s: the client waited for the reset"


def test_a_send_cut_short_without_an_answer_is_still_a_lost_connection() -> None:
    async def main() -> None:
        client = AgfsClient(server.url, timeout=10)
        try:
            with pytest.raises(ConnectionLost, match="sending the request failed"):
                await client.write("/memfs/big", bytes(BIG))
        finally:
            await client.aclose()

    with GoLikeServer(LIMIT, hang_up_silently=True) as server:
        trio.run(main)
    assert server.refused("PUT /files") == [BIG]


def test_a_handle_write_over_the_limit_is_file_too_large() -> None:
    async def main() -> None:
        client = AgfsClient(server.url, timeout=10)
        try:
            handle = await client.open_handle("/memfs/h", os.O_WRONLY | os.O_CREAT)
            with pytest.raises(FileTooLarge):
                await client.handle_write(handle, 0, bytes(BIG))
            assert await client.handle_write(handle, 0, b"fits") == 4
            await client.close_handle(handle)
        finally:
            await client.aclose()

    with GoLikeServer(LIMIT) as server:
        trio.run(main)
    assert server.refused("PUT /handles/{id}/write") == [BIG]
    assert server.files["/memfs/h"] == b"fits"


def test_a_spool_over_the_limit_goes_up_through_a_handle_in_halved_chunks(
    tmp_path: Path,
) -> None:
    """The whole path of a ``cp`` of a big file to memfs: the PUT gets 413, the spool goes
    through a handle, whose chunks are halved until they fit under the limit."""
    data = os.urandom(BIG)
    caps = Capabilities([MountPoint("/memfs", "memfs")])

    async def upload(client: AgfsClient, path: str) -> None:
        spools = SpoolDir(tmp_path / "spools")

        async def replace(temporary: Callable[[], str], target: Callable[[], str]) -> None:
            await client.rename(temporary(), target())

        writer = SpoolWriter(lambda: client, spools, path, None, server.url, caps, replace=replace)
        writer.start_empty()
        await writer.write(0, data)
        await writer.close()

    async def main() -> list[int]:
        client = AgfsClient(server.url, timeout=10)
        try:
            await upload(client, "/memfs/big")
            refused_before = len(server.seen)
            await upload(client, "/memfs/second")
            return [s.size for s in server.seen[refused_before:] if s.refused]
        finally:
            await client.aclose()

    with GoLikeServer(LIMIT) as server:
        refused_second_time = trio.run(main)
    assert server.files["/memfs/big"] == server.files["/memfs/second"] == data
    assert server.refused("PUT /files") == [BIG]
    assert server.refused("PUT /handles/{id}/write") == [HANDLE_CHUNK, HANDLE_CHUNK // 2]
    assert set(server.accepted("PUT /handles/{id}/write")) == {LIMIT}
    assert refused_second_time == []  # what the first upload learned is remembered
    assert list((tmp_path / "spools").iterdir()) == []  # uploaded: no spool left
