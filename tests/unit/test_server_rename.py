"""``ServerRename`` asks about its source and target at once, and still reports what POSIX
says: a missing source first, an existing target under ``RENAME_NOREPLACE``."""

from __future__ import annotations

from typing import cast

import pytest
import trio
import trio.testing

from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import AlreadyExists, NotFound, ServerError
from agfs_fuse.models import FileInfo
from agfs_fuse.rename import ServerRename


def _file(name: str) -> FileInfo:
    return FileInfo(name, 3, 0o644, False, False, 1)


class FakeServer:
    """Files by path; counts the stats in flight at once (each one lets every other
    runnable task run before it answers)."""

    base_url = "http://fake/api/v1"

    def __init__(self, *files: str, broken: frozenset[str] = frozenset()) -> None:
        self.files = {path: _file(path.rsplit("/", 1)[1]) for path in files}
        self.broken = broken
        self.in_flight = 0
        self.most_in_flight = 0
        self.renamed: list[tuple[str, str]] = []

    async def stat(self, path: str) -> FileInfo:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await trio.testing.wait_all_tasks_blocked()
            if path in self.broken:
                raise ServerError("the server failed", path=path)
            if path not in self.files:
                raise NotFound("no such file", path=path)
            return self.files[path]
        finally:
            self.in_flight -= 1

    async def stat_or_none(self, path: str) -> FileInfo | None:
        try:
            return await self.stat(path)
        except NotFound:
            return None

    async def rename(self, old: str, new: str) -> None:
        if new in self.files:
            raise AlreadyExists("file exists", path=new)
        self.files[new] = self.files.pop(old)
        self.renamed.append((old, new))

    def server_rename(self) -> ServerRename:
        return ServerRename(cast(AgfsClient, self), self.stat, self.stat_or_none)


def test_the_source_and_target_stats_are_in_flight_together() -> None:
    server = FakeServer("/d/old")
    trio.run(server.server_rename().run, "/d/old", "/d/new", False)
    assert server.most_in_flight == 2
    assert server.renamed == [("/d/old", "/d/new")]
    assert set(server.files) == {"/d/new"}


def test_a_missing_source_is_reported_before_the_targets_failure() -> None:
    server = FakeServer(broken=frozenset({"/d/new"}))
    with pytest.raises(NotFound):
        trio.run(server.server_rename().run, "/d/old", "/d/new", False)
    assert server.renamed == []


def test_a_failed_target_stat_stops_the_rename() -> None:
    server = FakeServer("/d/old", broken=frozenset({"/d/new"}))
    with pytest.raises(ServerError):
        trio.run(server.server_rename().run, "/d/old", "/d/new", False)
    assert server.renamed == []


def test_noreplace_refuses_an_existing_target_and_changes_nothing() -> None:
    server = FakeServer("/d/old", "/d/new")
    with pytest.raises(AlreadyExists):
        trio.run(server.server_rename().run, "/d/old", "/d/new", True)
    assert server.renamed == []
    assert set(server.files) == {"/d/old", "/d/new"}
