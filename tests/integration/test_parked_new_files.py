"""A new file whose first upload failed and is parked for a retry, against the running
reference server, without a kernel: the mount keeps answering for it from its spool
(stat, listing, reads) until the retry lands, an unlink drops the retry, a rename moves
it, an open for writing retries it first, and a retry given up leaves a kept spool that
names the path while the file is no longer shown.

The server's refusal is real HTTP: a transport in front of the real one answers the
file's ``PUT`` with a 500 (an unclassified server error: parked) while told to.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from agfs_fuse.errors import AgfsError, NotFound
from agfs_fuse.file_key import FileKey
from agfs_fuse.filesystem import AgfsFilesystem
from tests.integration.conftest import RawHttp, Workspace

pytestmark = pytest.mark.timeout(30)

KEY = FileKey(7373)


class RefusingPuts(httpx.AsyncBaseTransport):
    """The real transport, except that a ``PUT /files`` gets ``status`` (a JSON error, as
    AGFS sends) while ``status`` is set. Every request is recorded."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.status: int | None = None
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/api/v1")
        path = request.url.params.get("path", "")
        self.seen.append(f"{request.method} {route} {path}")
        if request.method == "PUT" and route == "/files" and self.status is not None:
            await request.aread()
            body = json.dumps({"error": "refused by the test"}).encode()
            return httpx.Response(self.status, content=body, request=request)
        return await self.inner.handle_async_request(request)

    def puts_of(self, path: str) -> int:
        return self.seen.count(f"PUT /files {path}")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _parked_new_file(fs: AgfsFilesystem, t: RefusingPuts, path: str, data: bytes) -> None:
    """Create ``path``, write ``data``, and close it while the server refuses the PUT: the
    close's upload fails and the spool is parked."""
    await fs.refresh_mounts()
    await fs.create(path, 0o644)
    writer = fs.open_new_file(KEY, path)
    await writer.write(0, data)
    t.status = 500
    with pytest.raises(AgfsError):
        await writer.flush()  # what close() reports to the program
    await fs.release_writer(KEY, writer)
    assert fs.pending.parked_count() == 1


async def _names(fs: AgfsFilesystem, directory: str) -> list[str]:
    return sorted(name for name, _ in await fs.entries_for_reading(directory))


def test_a_parked_new_file_stays_visible_and_readable_until_its_retry_lands(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    t = RefusingPuts()
    path = f"{ws.mem}/report.txt"
    data = b"safe in the spool\n" * 100

    async def body() -> dict[str, object]:
        fs = make_fs(transport=t)
        await _parked_new_file(fs, t, path, data)
        before = len(t.seen)
        seen: dict[str, object] = {
            "size": (await fs.stat(path)).size,
            "listed": await _names(fs, ws.mem),
            "server_has_it": raw.exists(path),
        }
        spool = fs.spool_of(fs.new_file_key(path))  # an inode the kernel looks up again
        assert spool is not None
        seen["read"] = await spool.read(0, len(data) + 10)
        # The stat and the read are answered from the spool: the listing alone asks.
        seen["requests"] = [call.split(" ")[1] for call in t.seen[before:]]
        await fs.pending.parked.retry_all()  # still refused: still parked, still shown
        seen["still_parked"] = (fs.pending.parked_count(), (await fs.stat(path)).size)
        t.status = None
        await fs.pending.parked.retry_all()
        seen["after"] = (fs.pending.parked_count(), fs.new_files.info(path))
        seen["server_size"] = (await fs.stat(path)).size
        return seen

    seen = arun(body)
    assert seen == {
        "size": len(data),
        "listed": ["report.txt"],
        "server_has_it": False,
        "read": data,
        "requests": ["/directories"],
        "still_parked": (1, len(data)),
        "after": (0, None),
        "server_size": len(data),
    }
    assert raw.read(path) == data
    assert t.puts_of(path) == 3  # the close, the refused retry, the one that landed


def test_unlink_of_a_parked_new_file_drops_its_retry(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    t = RefusingPuts()
    path = f"{ws.mem}/gone.txt"

    async def body() -> tuple[int, list[str], bool]:
        fs = make_fs(transport=t)
        await _parked_new_file(fs, t, path, b"never to be uploaded")
        await fs.unlink(path)
        t.status = None
        await fs.pending.parked.retry_all()
        missing = False
        try:
            await fs.stat(path)
        except NotFound:
            missing = True
        return fs.pending.parked_count(), await _names(fs, ws.mem), missing

    assert arun(body) == (0, [], True)
    assert not raw.exists(path)
    assert t.puts_of(path) == 1  # the refused close only
    assert not [call for call in t.seen if call.startswith("DELETE")]  # nothing to delete


def test_rename_of_a_parked_new_file_moves_its_retry(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    t = RefusingPuts()
    old, new = f"{ws.mem}/draft", f"{ws.mem}/final"
    data = b"moved before it reached the server\n"

    async def body() -> tuple[list[str], int, list[str]]:
        fs = make_fs(transport=t)
        await _parked_new_file(fs, t, old, data)
        await fs.rename(old, new)
        before = await _names(fs, ws.mem)
        size = (await fs.stat(new)).size
        t.status = None
        await fs.pending.parked.retry_all()
        return before, size, await _names(fs, ws.mem)

    assert arun(body) == (["final"], len(data), ["final"])
    assert raw.read(new) == data
    assert not raw.exists(old)
    assert t.puts_of(old) == 1 and t.puts_of(new) == 1


def test_an_open_for_writing_takes_a_parked_new_file_back(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    """Appending while the server still refuses: the append goes to the spool, the close
    fails again and parks the longer content; once the server takes it, all of it lands."""
    t = RefusingPuts()
    path = f"{ws.mem}/log.txt"

    async def body() -> tuple[int, int, int]:
        fs = make_fs(transport=t)
        await _parked_new_file(fs, t, path, b"first line\n")
        await fs.upload_settled(path)
        info = await fs.stat(path, fresh=True)
        writer = fs.open_writer(KEY, path, info, os.O_WRONLY | os.O_APPEND)
        taken = fs.pending.parked_count()
        await writer.write(0, b"second line\n", append=True)
        with pytest.raises(AgfsError):
            await writer.flush()
        await fs.release_writer(KEY, writer)
        size = (await fs.stat(path)).size
        parked = fs.pending.parked_count()
        t.status = None
        await fs.pending.parked.retry_all()
        return taken, size, parked

    assert arun(body) == (0, len(b"first line\nsecond line\n"), 1)
    assert raw.read(path) == b"first line\nsecond line\n"


def test_a_truncate_of_a_parked_new_file_is_what_its_retry_uploads(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    t = RefusingPuts()
    path = f"{ws.mem}/cut.txt"

    async def body() -> tuple[int, int]:
        fs = make_fs(transport=t)
        await _parked_new_file(fs, t, path, b"0123456789")
        await fs.truncate(KEY, path, 4)
        size = (await fs.stat(path)).size
        t.status = None
        await fs.pending.parked.retry_all()
        return size, fs.pending.parked_count()

    assert arun(body) == (4, 0)
    assert raw.read(path) == b"0123"


def test_a_given_up_new_file_is_no_longer_shown_and_its_kept_spool_names_it(
    arun, make_fs, ws: Workspace, raw: RawHttp
) -> None:
    t = RefusingPuts()
    path = f"{ws.mem}/refused.txt"

    async def body() -> tuple[list[str], list[object]]:
        fs = make_fs(transport=t)
        await _parked_new_file(fs, t, path, b"kept for the user")
        t.status = 403  # a refusal a retry cannot change: given up, kept
        await fs.pending.parked.retry_all()
        kept = [spool.describe()["remote_path"] for spool in fs.kept_spools()]
        return await _names(fs, ws.mem), kept

    assert arun(body) == ([], [path])
    assert not raw.exists(path)
