"""The filesystem core's listings against canned answers shaped like the real Go server's
(``agfs-server/pkg/plugins/localfs``: ``ReadDir`` reports ``os.ReadDir``'s lstat info,
``Stat`` follows links with ``os.Stat``; ``mountablefs.Readlink`` knows only its own table),
and escaped names mapped back. No kernel, no server: ``httpx.MockTransport``."""

from __future__ import annotations

import errno
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from agfs_fuse import names
from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import AgfsError
from agfs_fuse.filesystem import AgfsFilesystem
from agfs_fuse.models import FileInfo
from agfs_fuse.spool import SpoolDir

pytestmark = pytest.mark.timeout(20)

BASE = "http://agfs.test:8080/api/v1"
GO_SYMLINK = 1 << 27
GO_DIR = 1 << 31
TIME = "2026-05-11T13:56:07.123456789-07:00"


def go_info(name: str, size: int, mode: int, *, is_dir: bool = False, **meta: Any) -> dict:
    return {
        "name": name,
        "size": size,
        "mode": mode,
        "modTime": TIME,
        "isDir": is_dir,
        "meta": {"Name": "localfs", "Type": "local", "Content": meta or None},
    }


class CannedServer:
    """Answers ``GET /directories`` and ``GET /stat`` from dicts; counts every request."""

    def __init__(self, listings: dict[str, list[dict]], stats: dict[str, Any]) -> None:
        self.listings = listings
        self.stats = stats  # path -> FileInfo dict, or (status, error text)
        self.requests: Counter[str] = Counter()

    def handler(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/api/v1")
        path = request.url.params.get("path", "")
        self.requests[f"{request.method} {route} {path}"] += 1
        if route == "/directories" and path in self.listings:
            return httpx.Response(200, json={"files": self.listings[path] or None})
        if route == "/stat" and path in self.stats:
            answer = self.stats[path]
            if isinstance(answer, tuple):
                return httpx.Response(answer[0], json={"error": answer[1]})
            return httpx.Response(200, json=answer)
        relative = path.removeprefix("/local")
        return httpx.Response(500, json={"error": f"no such file or directory: {relative}"})

    def count(self, route: str) -> int:
        return sum(n for key, n in self.requests.items() if key.split(" ")[1] == route)


def run_fs(tmp_path: Path, server: CannedServer, fn) -> Any:
    async def main() -> Any:
        client = AgfsClient(BASE, transport=httpx.MockTransport(server.handler))
        fs = AgfsFilesystem(client, SpoolDir(tmp_path / "spool"), client_factory=lambda url: client)
        try:
            return await fn(fs)
        finally:
            await fs.aclose()

    return trio.run(main)


def by_name(entries: list[FileInfo]) -> dict[str, FileInfo]:
    return {info.name: info for info in entries}


# -- on-disk links inside a localfs directory ----------------------------------------------

LOCAL_LINKS = CannedServer(
    listings={
        "/local/d": [
            go_info("dangling", 7, GO_SYMLINK | 0o777),
            go_info("link.txt", 10, GO_SYMLINK | 0o777),
            go_info("sub", 4096, GO_DIR | 0o755, is_dir=True),
            go_info("subl", 3, GO_SYMLINK | 0o777),
            go_info("target.txt", 6, 0o644),
        ]
    },
    stats={
        "/local/d/link.txt": go_info("link.txt", 6, 0o644, local_path="/srv/d/link.txt"),
        "/local/d/subl": go_info("subl", 4096, GO_DIR | 0o755, is_dir=True),
    },
)


def test_disk_links_are_listed_as_what_stat_says(tmp_path: Path, caplog) -> None:
    server = CannedServer(LOCAL_LINKS.listings, LOCAL_LINKS.stats)
    caplog.set_level(logging.WARNING, logger="agfs_fuse.filesystem")

    async def go(fs: AgfsFilesystem):
        first = by_name(await fs.list("/local/d"))
        second = by_name(await fs.list("/local/d"))
        return first, second, await fs.stat("/local/d/link.txt")

    first, second, cached = run_fs(tmp_path, server, go)
    assert first == second
    assert sorted(first) == ["link.txt", "sub", "subl", "target.txt"]  # dangling left out
    link, dir_link = first["link.txt"], first["subl"]
    assert (link.is_symlink, link.is_dir, link.size, link.perm) == (False, False, 6, 0o644)
    assert (dir_link.is_symlink, dir_link.is_dir) == (False, True)
    assert cached == link  # the kernel is told the target's size, from the listing
    assert server.count("/readlink") == 0
    stats = sorted(k for k in server.requests if k.startswith("GET /stat"))
    assert stats == [f"GET /stat /local/d/{n}" for n in ("dangling", "link.txt", "subl")]
    dangling = [r for r in caplog.records if "dangling" in r.getMessage()]
    assert len(dangling) == 1  # logged once, not at every listing
    assert "dangling link" in dangling[0].getMessage()


def test_agfs_links_are_not_stat_at_listing(tmp_path: Path) -> None:
    """AGFS's own links (meta Type ``symlink``, no Go symlink bit) stay links."""
    agfs_link = go_info("l", 0, 0o777)
    agfs_link["meta"] = {"Type": "symlink"}
    server = CannedServer({"/memfs/d": [agfs_link]}, {})
    (entry,) = run_fs(tmp_path, server, lambda fs: fs.list("/memfs/d"))
    assert entry.is_symlink and not entry.is_disk_link
    assert server.count("/stat") == 0


def test_a_failing_stat_of_a_doubtful_entry_fails_the_listing(tmp_path: Path) -> None:
    stats = {**LOCAL_LINKS.stats, "/local/d/subl": (500, "failed to stat: permission denied")}
    server = CannedServer(LOCAL_LINKS.listings, stats)

    async def go(fs: AgfsFilesystem):
        with pytest.raises(AgfsError) as caught:
            await fs.list("/local/d")
        return caught.value

    assert run_fs(tmp_path, server, go).errno == errno.EACCES


# -- names that differ only in bytes that are not UTF-8 --------------------------------------

COLLIDING = "caf\ufffd.txt"


def test_a_name_listed_twice_is_one_entry_with_the_stat_size(tmp_path: Path, caplog) -> None:
    """Go lists ``caf\\xe9.txt`` (55 bytes) and ``caf\\xef\\xbf\\xbd.txt`` (6 bytes) both as
    ``caf\\ufffd.txt``; a path with that name reaches the 6-byte one only."""
    server = CannedServer(
        {"/local/d": [go_info(COLLIDING, 55, 0o644), go_info(COLLIDING, 6, 0o644)]},
        {f"/local/d/{COLLIDING}": go_info(COLLIDING, 6, 0o644)},
    )
    caplog.set_level(logging.WARNING, logger="agfs_fuse.filesystem")

    async def go(fs: AgfsFilesystem):
        return await fs.list("/local/d"), await fs.stat(f"/local/d/{COLLIDING}")

    listed, cached = run_fs(tmp_path, server, go)
    assert [(i.name, i.size) for i in listed] == [(COLLIDING, 6)]
    assert cached.size == 6
    assert "listed more than once" in caplog.text


def test_a_replacement_name_the_server_cannot_stat_is_left_out(tmp_path: Path, caplog) -> None:
    server = CannedServer({"/local/d": [go_info(COLLIDING, 55, 0o644), go_info("b", 1, 0o644)]}, {})
    caplog.set_level(logging.WARNING, logger="agfs_fuse.filesystem")
    listed = run_fs(tmp_path, server, lambda fs: fs.list("/local/d"))
    assert [i.name for i in listed] == ["b"]
    assert "server cannot stat it" in caplog.text


# -- escaped names lead back to the real ones ------------------------------------------------

NUL_NAME, LONG_NAME = "a\0b", "L" * 300


def memfs_dir() -> CannedServer:
    files = [go_info(n, 1, 0o644) for n in (NUL_NAME, LONG_NAME, "backup~deadbeef")]
    return CannedServer({"/memfs/d": files}, {})


def test_escaped_names_lead_back_after_a_listing(tmp_path: Path) -> None:
    async def go(fs: AgfsFilesystem):
        await fs.list("/memfs/d")
        return [fs.child_path("/memfs/d", names.escape(n)) for n in (NUL_NAME, LONG_NAME)]

    assert run_fs(tmp_path, memfs_dir(), go) == ["/memfs/d/a\0b", "/memfs/d/" + LONG_NAME]


def test_a_lookup_of_an_unseen_escaped_name_lists_the_directory_once(tmp_path: Path) -> None:
    server = memfs_dir()

    async def go(fs: AgfsFilesystem):
        found = await fs.lookup_path("/memfs/d", names.escape(NUL_NAME))
        again = await fs.lookup_path("/memfs/d", names.escape(LONG_NAME))
        plain = await fs.lookup_path("/memfs/d", "plain")
        return found, again, plain

    found, again, plain = run_fs(tmp_path, server, go)
    assert (found, again, plain) == ("/memfs/d/a\0b", "/memfs/d/" + LONG_NAME, "/memfs/d/plain")
    assert server.count("/directories") == 1


def test_an_ordinary_name_shaped_like_an_escape_stays_itself(tmp_path: Path) -> None:
    server = memfs_dir()

    async def go(fs: AgfsFilesystem):
        return fs.child_path("/memfs/d", "backup~deadbeef"), await fs.lookup_path(
            "/memfs/d", "backup~deadbeef"
        )

    assert run_fs(tmp_path, server, go) == ("/memfs/d/backup~deadbeef",) * 2
