"""``AgfsClient`` behind a forward proxy named by ``HTTP_PROXY``: every request goes
through the proxy (which counts them), files read and write byte for byte, streamed
reads flow through, errors map as they do directly, and ``NO_PROXY`` bypasses it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agfs_fuse import errors
from agfs_fuse.client import UPLOAD_CHUNK
from agfs_fuse.request_paths import DirectPath, HttpxPath
from tests.integration.conftest import LiveServer, RawHttp, Workspace
from tests.support.forward_proxy import ForwardProxy

pytestmark = pytest.mark.timeout(60)

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def pattern(size: int) -> bytes:
    block = bytes(range(251))  # prime length: an off-by-one shows as a mismatch
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A forward proxy, named by ``HTTP_PROXY`` for the clients this test makes."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with ForwardProxy() as running:
        monkeypatch.setenv("HTTP_PROXY", running.url)
        yield running


def test_every_request_goes_through_the_proxy_and_files_round_trip(
    arun, make_client, ws: Workspace, raw: RawHttp, proxy: ForwardProxy, tmp_path: Path
) -> None:
    small, large = pattern(5000), pattern(3 * UPLOAD_CHUNK + 17)
    spool = tmp_path / "spool"
    spool.write_bytes(large)

    async def body():  # noqa: ANN202
        client = make_client()
        assert isinstance(client._path, HttpxPath)
        await client.write(f"{ws.mem}/small", small)
        with open(spool, "rb") as f:
            await client.write_from(f"{ws.mem}/large", f, len(large))  # a file body
        got_small = await client.read(f"{ws.mem}/small")
        got_range = await client.read(f"{ws.mem}/large", UPLOAD_CHUNK - 3, 10)
        pieces: list[bytes] = []
        streamed = await client.read_into(f"{ws.mem}/large", pieces.append)
        listing = sorted(info.name for info in await client.list(ws.mem))
        size = (await client.stat(f"{ws.mem}/large")).size
        return got_small, got_range, b"".join(pieces), streamed, listing, size, client.stats

    got_small, got_range, streamed_bytes, streamed, listing, size, stats = arun(body)
    assert got_small == small
    assert got_range == large[UPLOAD_CHUNK - 3 : UPLOAD_CHUNK + 7]
    assert streamed_bytes == large and streamed == len(large) == size
    assert listing == ["large", "small"]
    assert raw.read(f"{ws.mem}/small") == small and raw.read(f"{ws.mem}/large") == large
    assert proxy.refused == []
    assert proxy.relayed("PUT", "/api/v1/files") == 2
    assert proxy.relayed("GET", "/api/v1/files") == 3  # two reads and the streamed one
    assert proxy.relayed("GET", "/api/v1/directories") == 1
    assert proxy.relayed("GET", "/api/v1/stat") == 1
    assert len(proxy.requests) == sum(stats.requests.values()) == 7


def test_errors_through_the_proxy_map_as_they_do_directly(
    arun, make_client, ws: Workspace, proxy: ForwardProxy
) -> None:
    async def body():  # noqa: ANN202
        client = make_client()
        with pytest.raises(errors.NotFound):
            await client.stat(f"{ws.mem}/missing")
        with pytest.raises(errors.NotFound):
            await client.read_into(f"{ws.mem}/missing", lambda piece: None)
        with pytest.raises(errors.IsADirectory):
            await client.read(ws.mem)

    arun(body)
    assert proxy.relayed("GET", "/api/v1/stat") == 1
    assert proxy.relayed("GET", "/api/v1/files") == 2


def test_no_proxy_naming_the_server_bypasses_the_proxy(
    arun,
    make_client,
    ws: Workspace,
    raw: RawHttp,
    proxy: ForwardProxy,
    server: LiveServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert "127.0.0.1" in server.url

    async def body():  # noqa: ANN202
        client = make_client()
        assert isinstance(client._path, DirectPath)
        await client.write(f"{ws.mem}/direct", b"no proxy")
        return await client.read(f"{ws.mem}/direct")

    assert arun(body) == b"no proxy"
    assert proxy.requests == [] and os.environ["HTTP_PROXY"] == proxy.url
