"""A listing of a directory whose new file's first upload lands while the listing is in
flight, against the running reference server, without a kernel.

A new file is answered for locally until its first upload (``new_files``), and a listing
adds it to what the server said. The kernel sends ``release`` after ``close()`` has
returned, so an ``ls`` right after closing an empty new file can be sent while the file
is still local and answered by the server before the upload, yet be merged after it: the
file is then in neither the server's answer nor the local state. Here the listing's answer
is held (after the server gave it) while the upload lands, every time, so the window the
soak test hit by chance is hit on purpose.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from agfs_fuse.file_key import FileKey
from agfs_fuse.filesystem import AgfsFilesystem
from tests.integration.conftest import RawHttp, Workspace

pytestmark = pytest.mark.timeout(30)

KEY = FileKey(5151)


class HeldListings(httpx.AsyncBaseTransport):
    """The real transport, except that the answer of the first ``GET /directories`` is
    held once the server gave it, until ``let_go`` is set. Every request is counted."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.answered = trio.Event()
        self.let_go = trio.Event()
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/api/v1")
        self.seen.append(f"{request.method} {route}")
        response = await self.inner.handle_async_request(request)
        if route == "/directories" and request.method == "GET" and not self.answered.is_set():
            await response.aread()
            self.answered.set()
            await self.let_go.wait()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _listed_while(
    fs: AgfsFilesystem, transport: HeldListings, directory: str, meanwhile
) -> list[str]:
    """The names ``entries_for_reading(directory)`` gives when ``meanwhile()`` runs between
    the server's answer to its listing and the listing's return."""
    names: list[str] = []

    async def listing() -> None:
        names.extend(name for name, _ in await fs.entries_for_reading(directory))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listing)
        await transport.answered.wait()
        await meanwhile()
        transport.let_go.set()
    return names


async def _new_file(fs: AgfsFilesystem, path: str):
    await fs.create(path, 0o644)
    return fs.open_new_file(KEY, path)


def test_an_empty_new_file_released_during_a_listing_is_listed(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    transport = HeldListings()

    async def body() -> list[list]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        writer = await _new_file(fs, f"{ws.mem}/empty")

        async def release() -> None:  # the kernel's release, after close() returned
            await fs.release_writer(KEY, writer)
            assert fs.new_files.info(f"{ws.mem}/empty") is None  # on the server now

        first = await _listed_while(fs, transport, ws.mem, release)
        again = [name for name, _ in await fs.entries_for_reading(ws.mem)]
        info = await fs.stat(f"{ws.mem}/empty")
        return [first, again, [info.size]]

    assert arun(body) == [["empty"], ["empty"], [0]]
    assert raw.read(f"{ws.mem}/empty") == b""


def test_a_new_file_flushed_during_a_listing_is_listed(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    """Written, so its upload is the flush at ``close()``, not the release."""
    transport = HeldListings()

    async def body() -> list[str]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        raw.write(f"{ws.mem}/old", b"o")
        writer = await _new_file(fs, f"{ws.mem}/written")
        await writer.write(0, b"x\n")
        names = await _listed_while(fs, transport, ws.mem, writer.flush)
        await fs.release_writer(KEY, writer)
        return names

    assert sorted(arun(body)) == ["old", "written"]
    assert raw.read(f"{ws.mem}/written") == b"x\n"


def test_a_new_file_renamed_before_its_upload_is_listed_under_its_new_name(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    transport = HeldListings()

    async def body() -> list[str]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        writer = await _new_file(fs, f"{ws.mem}/first")

        async def rename_and_release() -> None:
            await fs.rename(f"{ws.mem}/first", f"{ws.mem}/second")
            await fs.release_writer(KEY, writer)

        return await _listed_while(fs, transport, ws.mem, rename_and_release)

    assert arun(body) == ["second"]
    assert raw.names(ws.mem) == {"second"}


def test_a_new_file_unlinked_before_its_upload_is_not_listed(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    transport = HeldListings()

    async def body() -> list[str]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        writer = await _new_file(fs, f"{ws.mem}/gone")

        async def unlink_and_release() -> None:
            await fs.unlink(f"{ws.mem}/gone")
            await fs.release_writer(KEY, writer)

        return await _listed_while(fs, transport, ws.mem, unlink_and_release)

    assert arun(body) == []
    assert raw.names(ws.mem) == set()


def test_a_new_file_unlinked_after_its_upload_during_a_listing_is_not_listed(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    """The name landed while the listing was in flight, then this mount unlinked it on
    the server: the listing follows what the mount did."""
    transport = HeldListings()

    async def body() -> list[str]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        writer = await _new_file(fs, f"{ws.mem}/brief")

        async def release_then_unlink() -> None:
            await fs.release_writer(KEY, writer)
            await fs.unlink(f"{ws.mem}/brief")

        return await _listed_while(fs, transport, ws.mem, release_then_unlink)

    assert arun(body) == []
    assert raw.names(ws.mem) == set()


def test_a_new_file_renamed_after_its_upload_during_a_listing_is_listed_renamed(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    """Renamed on the server by this mount after its upload landed: followed to its new
    name, and out of the directory."""
    transport = HeldListings()
    raw.mkdir(f"{ws.mem}/sub")

    async def body() -> list[str]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        writer = await _new_file(fs, f"{ws.mem}/two")

        async def release_then_rename() -> None:
            await fs.release_writer(KEY, writer)
            await fs.rename(f"{ws.mem}/two", f"{ws.mem}/three")
            await fs.rename(f"{ws.mem}/three", f"{ws.mem}/sub/four")

        return await _listed_while(fs, transport, ws.mem, release_then_rename)

    assert arun(body) == ["sub"]
    assert raw.names(ws.mem) == {"sub"}
    assert raw.names(f"{ws.mem}/sub") == {"four"}


def test_a_listing_with_no_upload_landing_in_it_costs_one_request(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    raw.write(f"{ws.mem}/a", b"a")
    transport = HeldListings()

    async def body() -> list[str]:
        fs = make_fs(transport=transport)
        await fs.refresh_mounts()
        transport.seen.clear()

        async def nothing() -> None:
            pass

        return await _listed_while(fs, transport, ws.mem, nothing)

    assert arun(body) == ["a"]
    assert transport.seen == ["GET /directories"]
