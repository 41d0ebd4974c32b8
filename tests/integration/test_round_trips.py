"""Requests the filesystem core saves, counted by its client against a live server.

Three things answer without a request, each no staler than ``attr_timeout`` (an injected
clock moves time here): the attributes of what this mount made (mkdir, symlink), the
emptiness of a directory it just made, and names missing from a listing younger than
``attr_timeout``. And lookups that nothing answers list their directory once instead of a
stat per name. What the server has is checked over plain HTTP (``raw``).
"""

from __future__ import annotations

from collections import Counter

import pytest

from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import AlreadyExists, NotFound
from agfs_fuse.file_key import FileKey
from agfs_fuse.filesystem import AgfsFilesystem
from agfs_fuse.path_settings import CacheTimeouts, ConstantSettings
from agfs_fuse.spool import SpoolDir
from tests.integration.conftest import Closer, RawHttp, Workspace

pytestmark = pytest.mark.timeout(30)

ATTR_TIMEOUT = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counted_fs(closer: Closer, clock: Clock) -> tuple[AgfsFilesystem, AgfsClient]:
    client = closer.client()
    fs = AgfsFilesystem(
        client,
        SpoolDir(closer.spool_root),
        client_factory=closer.client,
        settings=ConstantSettings(CacheTimeouts(attr=ATTR_TIMEOUT)),
        clock=clock,
    )
    closer.filesystems.append(fs)
    return fs, client


def requests(client: AgfsClient) -> Counter[str]:
    return Counter(client.stats.requests)


async def missing(fs: AgfsFilesystem, path: str) -> bool:
    try:
        await fs.stat(path)
    except NotFound:
        return True
    return False


def test_a_name_a_young_listing_lacks_is_missing_without_a_request(
    arun, closer, ws: Workspace, raw: RawHttp
) -> None:
    """...for ``attr_timeout``: then a file another client made meanwhile is found."""
    raw.write(f"{ws.mem}/a", b"1")
    clock = Clock()

    async def body() -> list[tuple[bool, int]]:
        fs, client = counted_fs(closer, clock)
        await fs.list(ws.mem)
        seen = [(await missing(fs, f"{ws.mem}/nothing"), client.stats.requests.total())]
        raw.write(f"{ws.mem}/other", b"made elsewhere")
        clock.now += ATTR_TIMEOUT * 0.9
        seen.append((await missing(fs, f"{ws.mem}/other"), client.stats.requests.total()))
        clock.now += ATTR_TIMEOUT * 0.1
        seen.append((await missing(fs, f"{ws.mem}/other"), client.stats.requests.total()))
        return seen

    assert arun(body) == [(True, 1), (True, 1), (False, 2)]


@pytest.mark.parametrize("where", ["mem", "local"])
def test_a_directory_made_here_costs_its_mkdir_only(
    arun, closer, ws: Workspace, raw: RawHttp, where: str
) -> None:
    """Its attributes, lookups in it (also O_EXCL's) and a listing of it need no request.
    Its permission bits are only what mkdir asked for (localfs applies the server's
    umask), so a chmod to them is still sent, and the server ends with them."""
    parent = getattr(ws, where)
    new = f"{parent}/new"
    clock = Clock()

    async def body() -> tuple[Counter[str], tuple[bool, int], list[str], Counter[str]]:
        fs, client = counted_fs(closer, clock)
        await fs.refresh_mounts()
        before = requests(client)
        await fs.mkdir(new, 0o777)
        info = await fs.stat(new)
        assert await missing(fs, f"{new}/x") and await missing(fs, f"{new}/y")
        listed = [e.name for e in await fs.list_for_reading(new)]
        await fs.create(f"{new}/f", 0o644, exclusive=True)
        made = requests(client) - before
        before = requests(client)
        await fs.chmod(new, 0o777)
        await fs.chmod(new, 0o777)  # now known: sent once
        return made, (info.is_dir, info.perm), listed, requests(client) - before

    made, (is_dir, perm), listed, chmods = arun(body)
    assert made == {"POST /directories": 1}
    assert (is_dir, perm, listed) == (True, 0o777, [])
    assert chmods == {"POST /chmod": 1}
    stat = raw.stat(new)
    assert stat is not None and stat["isDir"] and stat["mode"] & 0o777 == 0o777


def test_a_symlink_made_here_is_known_as_the_server_would_show_it(
    arun, closer, ws: Workspace, raw: RawHttp
) -> None:
    link = f"{ws.mem}/link"
    clock = Clock()

    async def body() -> tuple[Counter[str], tuple[bool, int, str], tuple[bool, int, str]]:
        fs, client = counted_fs(closer, clock)
        before = requests(client)
        await fs.symlink("some/target", link)
        here = await fs.stat(link)
        spent = requests(client) - before
        there = await fs.stat(link, fresh=True)
        return (
            spent,
            (here.is_symlink, here.size, here.meta_type),
            (there.is_symlink, there.size, there.meta_type),
        )

    spent, here, there = arun(body)
    assert spent == {"POST /symlink": 1}
    assert here == there == (True, len("some/target"), "symlink")


def test_two_misses_in_a_directory_list_it_once(arun, closer, ws: Workspace, raw: RawHttp):
    """``stat`` of missing names then of present ones: one stat, one listing."""
    for i in range(5):
        raw.write(f"{ws.mem}/f{i}", b"x" * i)
    clock = Clock()

    async def body() -> tuple[list[bool], Counter[str]]:
        fs, client = counted_fs(closer, clock)
        before = requests(client)
        names = ["miss1", "miss2", "miss3", *(f"f{i}" for i in range(5))]
        found = [not await missing(fs, f"{ws.mem}/{name}") for name in names]
        return found, requests(client) - before

    found, spent = arun(body)
    assert found == [False, False, False, True, True, True, True, True]
    assert spent == {"GET /stat": 1, "GET /directories": 1}


def test_during_a_walk_the_first_miss_in_a_directory_lists_it(
    arun, closer, ws: Workspace, raw: RawHttp
):
    """``git status``, ``tar x``: once one directory was listed for its misses, the next
    directories are listed at their first."""
    for d in ("a", "b", "c"):
        raw.mkdir(f"{ws.mem}/{d}")
        raw.write(f"{ws.mem}/{d}/file", b"x")
    clock = Clock()

    async def body() -> Counter[str]:
        fs, client = counted_fs(closer, clock)
        before = requests(client)
        for d in ("a", "b", "c"):
            assert await missing(fs, f"{ws.mem}/{d}/.gitignore")
            assert await missing(fs, f"{ws.mem}/{d}/.git")
            assert not await missing(fs, f"{ws.mem}/{d}/file")
        return requests(client) - before

    assert arun(body) == {"GET /stat": 1, "GET /directories": 3}


def test_a_new_file_not_uploaded_yet_is_found_whatever_the_listing_says(
    arun, closer, ws: Workspace, raw: RawHttp
):
    """A listing taken before a create lacks the name: the pending file still answers,
    and once uploaded, it is on the listing's names."""
    clock = Clock()
    key = FileKey(77)

    async def body() -> tuple[bool, bool, bool]:
        fs, _ = counted_fs(closer, clock)
        await fs.refresh_mounts()
        await fs.list(ws.mem)
        await fs.create(f"{ws.mem}/new", 0o644)
        writer = fs.open_new_file(key, f"{ws.mem}/new")
        pending = not await missing(fs, f"{ws.mem}/new")
        await fs.release_writer(key, writer)
        uploaded = not await missing(fs, f"{ws.mem}/new")
        return pending, uploaded, raw.exists(f"{ws.mem}/new")

    assert arun(body) == (True, True, True)


def test_a_create_that_keeps_content_asks_the_server_past_a_young_listing(
    arun, closer, ws: Workspace, raw: RawHttp
):
    """O_CREAT without O_TRUNC (``>>``, ``touch``) must open a file another client made
    after the listing, not replace it: EEXIST, which the caller turns into an open. O_EXCL
    and O_TRUNC creates go by the listing (one replaces the file anyway, the other is best
    effort across clients)."""
    clock = Clock()

    async def body() -> tuple[str, Counter[str]]:
        fs, client = counted_fs(closer, clock)
        await fs.refresh_mounts()
        await fs.list(ws.mem)
        raw.write(f"{ws.mem}/theirs", b"keep me")
        before = requests(client)
        try:
            await fs.create(f"{ws.mem}/theirs", 0o644, keeps_content=True)
            outcome = "created"
        except AlreadyExists:
            outcome = "EEXIST"
        await fs.create(f"{ws.mem}/truncated", 0o644)
        return outcome, requests(client) - before

    outcome, spent = arun(body)
    assert (outcome, spent) == ("EEXIST", {"GET /stat": 1})
    assert raw.read(f"{ws.mem}/theirs") == b"keep me"
