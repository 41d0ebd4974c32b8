"""Sparse in-place edits fall back to whole-file uploads when a plugin refuses handles."""

from __future__ import annotations

import os

import httpx

from agfs_fuse.file_key import FileKey
from agfs_fuse.writes import SpoolWriter
from tests.integration.test_filesystem_core import FaultyTransport


class NoHandles(FaultyTransport):
    """The real server, except that the handle API answers 501 as on localfs or s3fs."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/handles/open"):
            self.seen.append((request.method, "/handles/open", request.url.params.get("path")))
            return httpx.Response(
                501, json={"error": "openhandle: x: operation not supported"}, request=request
            )
        return await super().handle_async_request(request)


def test_refused_handles_fetch_the_rest_and_upload_whole(arun, make_fs, ws, raw):
    path = f"{ws.mem}/edited"
    data = bytearray(os.urandom(2 << 20))
    raw.write(path, bytes(data))
    transport = NoHandles()

    async def body():
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        info = await fs.stat(path, fresh=True)
        writer = fs.open_writer(FileKey(1), path, info, os.O_RDWR)
        assert isinstance(writer, SpoolWriter) and writer.sparse  # memfs promises handles
        await writer.write(1000, b"XYZ")
        assert await writer.read(998, 7) == bytes(data[998:1000]) + b"XYZ" + bytes(data[1003:1005])
        await fs.release_writer(FileKey(1), writer)
        return fs.caps.handles(path)

    assert arun(body) is False  # learned: no handles under this mount until the next reload
    data[1000:1003] = b"XYZ"
    assert raw.read(path) == bytes(data)
    assert transport.calls("PUT /files") == [path]
