"""Streamed bodies: write_from uploads a spool file, read_into collects a download."""

from __future__ import annotations

import errno
import gzip
import random
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agfs_fuse import errors
from agfs_fuse.client import UPLOAD_CHUNK, AgfsClient

BASE = "http://agfs.test:8080/api/v1"
MIB = 1 << 20


def run(transport: httpx.AsyncBaseTransport, call: Callable[[AgfsClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = AgfsClient(BASE, transport=transport)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return trio.run(main)


class UploadRecorder(httpx.AsyncBaseTransport):
    """Reads the request body piece by piece, the way a real connection would."""

    def __init__(self, status: int = 200, body: Any = None):
        self.status = status
        self.body = body if body is not None else {"message": "Written bytes"}
        self.requests: list[httpx.Request] = []
        self.pieces: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        async for piece in request.stream:
            self.pieces.append(bytes(piece))
        return httpx.Response(self.status, json=self.body)

    @property
    def received(self) -> bytes:
        return b"".join(self.pieces)


@pytest.fixture
def spool(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(1234).randbytes(3 * MIB + 12345)
    path = tmp_path / "spool.bin"
    path.write_bytes(data)
    return path, data


# -- write_from --------------------------------------------------------------------------


def test_write_from_streams_the_exact_file(spool: tuple[Path, bytes]) -> None:
    path, data = spool
    transport = UploadRecorder()
    with path.open("rb") as source:
        run(transport, lambda c: c.write_from("/memfs/big file+1.bin", source, len(data)))
    (req,) = transport.requests
    assert req.method == "PUT"
    assert req.url.raw_path == b"/api/v1/files?path=/memfs/big%20file%2B1.bin"
    assert req.headers["content-length"] == str(len(data))
    assert "transfer-encoding" not in req.headers
    assert len(transport.received) == len(data)
    assert transport.received == data


def test_write_from_sends_bounded_pieces(spool: tuple[Path, bytes]) -> None:
    path, data = spool
    transport = UploadRecorder()
    with path.open("rb") as source:
        run(transport, lambda c: c.write_from("/memfs/f", source, len(data)))
    # streamed, never one big buffer: at least 4 pieces for 3 MiB + a bit
    assert len(transport.pieces) >= 4
    assert max(len(p) for p in transport.pieces) <= UPLOAD_CHUNK


def test_write_from_reads_from_offset_zero_whatever_the_file_position(
    spool: tuple[Path, bytes],
) -> None:
    path, data = spool
    transport = UploadRecorder()
    with path.open("rb") as source:
        source.seek(0, 2)  # at EOF
        run(transport, lambda c: c.write_from("/memfs/f", source, len(data)))
    assert transport.received == data


def test_write_from_sends_only_size_bytes(spool: tuple[Path, bytes]) -> None:
    path, data = spool
    size = MIB + 7
    transport = UploadRecorder()
    with path.open("rb") as source:
        run(transport, lambda c: c.write_from("/memfs/f", source, size))
    assert transport.requests[0].headers["content-length"] == str(size)
    assert transport.received == data[:size]


def test_write_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    transport = UploadRecorder()
    with path.open("rb") as source:
        run(transport, lambda c: c.write_from("/memfs/empty", source, 0))
    (req,) = transport.requests
    assert req.method == "PUT"
    assert req.headers["content-length"] == "0"
    assert transport.received == b""


def test_write_from_with_a_spool_that_shrank(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"x" * 100)
    transport = UploadRecorder()
    with path.open("rb") as source, pytest.raises(errors.AgfsError) as info:
        run(transport, lambda c: c.write_from("/memfs/f", source, 1000))
    assert info.value.errno == errno.EIO
    assert "shrank" in info.value.message


def test_write_from_oversized_body_is_efbig(spool: tuple[Path, bytes]) -> None:
    path, data = spool
    transport = UploadRecorder(
        413, {"error": "request body exceeds maximum size of 67108864 bytes"}
    )
    with path.open("rb") as source, pytest.raises(errors.FileTooLarge) as info:
        run(transport, lambda c: c.write_from("/memfs/f", source, len(data)))
    assert info.value.errno == errno.EFBIG
    assert info.value.status == 413


def test_write_from_a_named_temporary_file() -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
    transport = UploadRecorder()
    with tempfile.TemporaryFile() as source:
        source.write(data)
        source.flush()
        run(transport, lambda c: c.write_from("/memfs/t", source, len(data)))
    assert transport.requests[0].headers["content-length"] == str(len(data))
    assert transport.received == data


# -- read_into ---------------------------------------------------------------------------


class Pieces(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes], fail_after: int | None = None):
        self.pieces = pieces
        self.fail_after = fail_after
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, piece in enumerate(self.pieces):
            if self.fail_after is not None and i == self.fail_after:
                raise httpx.ReadError("connection reset by peer")
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def download(
    stream: httpx.AsyncByteStream, *, headers: dict[str, str] | None = None
) -> tuple[list[httpx.Request], list[bytes], int]:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, stream=stream, headers=headers or {})

    got: list[bytes] = []
    total = run(httpx.MockTransport(handler), lambda c: c.read_into("/memfs/a b", got.append))
    return requests, got, total


def test_read_into_collects_every_piece_in_order() -> None:
    pieces = [b"alpha", b"", b"\x00\xff" * 1000, b"omega"]
    stream = Pieces(pieces)
    requests, got, total = download(stream)
    assert b"".join(got) == b"".join(pieces)
    assert total == sum(len(p) for p in pieces)
    assert stream.closed
    (req,) = requests
    assert req.method == "GET"
    # a plain GET: stream=true would 404 on plugins that do not stream
    assert req.url.raw_path == b"/api/v1/files?path=/memfs/a%20b"


def test_read_into_large_body() -> None:
    data = random.Random(7).randbytes(2 * MIB + 3)
    pieces = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    _, got, total = download(Pieces(pieces))
    assert total == len(data)
    assert b"".join(got) == data


def test_read_into_empty_body() -> None:
    _, got, total = download(Pieces([]))
    assert total == 0
    assert b"".join(got) == b""


def test_read_into_connection_lost_midway_is_eio_not_enoent() -> None:
    stream = Pieces([b"abc", b"def", b"ghi"], fail_after=2)
    with pytest.raises(errors.ServerUnreachable) as info:
        download(stream)
    assert info.value.errno == errno.EIO
    assert info.value.path == "/memfs/a b"
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert stream.closed


def test_read_into_read_timeout_midway() -> None:
    class Stalls(Pieces):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"abc"
            raise httpx.ReadTimeout("timed out")

    stream = Stalls([])
    with pytest.raises(errors.AgfsError) as info:
        download(stream)
    assert info.value.errno in (errno.EIO, errno.ETIMEDOUT)
    assert stream.closed


def test_read_into_sink_errors_propagate_and_close_the_response() -> None:
    stream = Pieces([b"a", b"b"])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream)

    def sink(chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, "disk full")

    with pytest.raises(OSError) as info:
        run(httpx.MockTransport(handler), lambda c: c.read_into("/memfs/a", sink))
    assert info.value.errno == errno.ENOSPC
    assert stream.closed


def test_read_into_error_answer_is_typed_and_closed() -> None:
    stream = Pieces([b'{"error":"no such file or directory: /a"}'])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, stream=stream, headers={"Content-Type": "application/json"})

    got: list[bytes] = []
    with pytest.raises(errors.NotFound) as info:
        run(httpx.MockTransport(handler), lambda c: c.read_into("/memfs/a", got.append))
    assert info.value.errno == errno.ENOENT
    assert got == []
    assert stream.closed


def test_read_into_plain_text_404_is_protocol_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="404 page not found")

    with pytest.raises(errors.ProtocolError) as info:
        run(httpx.MockTransport(handler), lambda c: c.read_into("/memfs/a", lambda b: None))
    assert info.value.errno == errno.EIO


def gzip_when_allowed(data: bytes) -> Callable[[httpx.Request], httpx.Response]:
    """A TLS proxy in front of AGFS that compresses whatever the client says it accepts."""

    def handler(request: httpx.Request) -> httpx.Response:
        accepted = request.headers.get("accept-encoding", "")
        if "gzip" in accepted:
            packed = gzip.compress(data)
            return httpx.Response(
                200,
                stream=Pieces([packed[:100], packed[100:]]),
                headers={"Content-Encoding": "gzip"},
            )
        return httpx.Response(200, stream=Pieces([data[:100], data[100:]]))

    return handler


def test_read_through_a_compressing_proxy_gives_the_file() -> None:
    data = b"hello world\n" * 1000
    got = run(httpx.MockTransport(gzip_when_allowed(data)), lambda c: c.read("/memfs/a"))
    assert got == data


def test_read_into_through_a_compressing_proxy_gives_the_file() -> None:
    # read() and read_into() must agree on the content of the same file: a compressing
    # proxy must not leak its Content-Encoding into the file the user sees.
    data = b"hello world\n" * 1000
    got: list[bytes] = []
    total = run(
        httpx.MockTransport(gzip_when_allowed(data)),
        lambda c: c.read_into("/memfs/a", got.append),
    )
    assert b"".join(got) == data
    assert total == len(data)
