"""``Landings``: what a listing in flight learns of the new files landing in its directory,
and how the mount's own unlinks and renames meanwhile are followed (pure bookkeeping); and
the spool writer's side: it tells of a new file's first upload once, under its name then."""

from __future__ import annotations

from pathlib import Path

import pytest

from agfs_fuse.capabilities import Capabilities
from agfs_fuse.landings import Landings
from agfs_fuse.models import FileInfo
from agfs_fuse.spool import SpoolDir
from agfs_fuse.writes import SpoolWriter
from tests.unit.test_pending_writes import URL, MemoryServer, _run

pytestmark = pytest.mark.timeout(10)


def _file(name: str, size: int = 0) -> FileInfo:
    return FileInfo(name, size, 0o644, False, False, 1)


def test_only_what_lands_in_the_watched_directory_while_watching_is_collected() -> None:
    landings = Landings()
    landings.landed("/m/d/before", _file("before"))
    with landings.watch("/m/d") as landed:
        landings.landed("/m/d/a", _file("a", 3))
        landings.landed("/m/other/b", _file("b"))
        landings.landed("/m/d/sub/c", _file("c"))
        missing = landed.missing_from([_file("listed")])
    landings.landed("/m/d/after", _file("after"))
    assert [(info.name, info.size) for info in missing] == [("a", 3)]
    assert landed.missing_from([]) == missing  # nothing more after the block


def test_a_name_the_listing_has_is_left_as_the_server_said() -> None:
    landings = Landings()
    with landings.watch("/m/d") as landed:
        landings.landed("/m/d/a", _file("a", 3))
        assert landed.missing_from([_file("a", 7)]) == []


def test_unlinked_and_replaced_names_are_dropped_renamed_ones_follow() -> None:
    landings = Landings()
    with landings.watch("/m/d") as landed:
        for name in ("gone", "moved", "away", "over"):
            landings.landed(f"/m/d/{name}", _file(name))
        landings.removed("/m/d/gone")
        landings.renamed("/m/d/moved", "/m/d/here")
        landings.renamed("/m/d/away", "/m/elsewhere/away")
        landings.removed("/m/d/over")  # renamed over: the file moved in is the server's
        assert [info.name for info in landed.missing_from([])] == ["here"]


def test_a_directory_renamed_into_the_watched_one_brings_nothing_not_landed_in_it() -> None:
    landings = Landings()
    with landings.watch("/m/d") as landed:
        landings.landed("/m/x/f", _file("f"))  # not collected: another directory
        landings.renamed("/m/x", "/m/d/x")
        landings.landed("/m/d/x/g", _file("g"))  # below the watched directory, not in it
        assert landed.missing_from([]) == []


def test_two_listings_of_one_directory_each_learn_of_a_landing() -> None:
    landings = Landings()
    with landings.watch("/m/d") as first, landings.watch("/m/d") as second:
        landings.landed("/m/d/a", _file("a"))
        assert [i.name for i in first.missing_from([])] == ["a"]
        assert [i.name for i in second.missing_from([])] == ["a"]


def test_a_spool_writer_tells_of_a_new_files_first_upload_only(tmp_path: Path) -> None:
    server = MemoryServer()
    told: list[tuple[str, int, int]] = []
    writer = SpoolWriter(
        lambda: server,  # type: ignore[arg-type, return-value]
        SpoolDir(tmp_path / "spools"),
        "/m/d/draft",
        None,
        URL,
        Capabilities(),
        on_created=lambda path, info: told.append((path, info.size, info.perm)),
    )

    async def body() -> None:
        writer.start_new(0o644)
        await writer.write(0, b"abc")
        writer.retarget("/m/d/final")  # renamed before its upload
        await writer.flush()
        await writer.write(3, b"de")
        await writer.flush()  # a second upload: the file was on the server already
        await writer.close()

    _run(body)
    assert told == [("/m/d/final", 3, 0o644)]
    assert server.files == {"/m/d/final": b"abcde"}
