"""Settling an unfinished rename-over, without a kernel or a server:
the decision table, which aside names a listing hides (injected clock), the intent
journal on disk, and the recovery a mount runs at start against a fake server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from agfs_fuse import asides
from agfs_fuse.errors import NotFound, ServerUnreachable
from agfs_fuse.models import FileInfo
from agfs_fuse.rename_journal import RenameIntent, RenameJournal
from agfs_fuse.rename_recovery import Outcome, decide, recover

pytestmark = pytest.mark.timeout(10)

URL = "http://agfs.example:8080/api/v1"
NOW = 1_800_000_000.0


# -- decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "aside", "outcome"),
    [
        (True, True, False, Outcome.NOTHING),  # crashed before the target was set aside
        (False, True, False, Outcome.NOTHING),  # crashed after the aside was deleted
        (True, False, True, Outcome.RESTORE),  # set aside, source never moved
        (False, False, True, Outcome.RESTORE),  # source gone elsewhere: still put back
        (False, True, True, Outcome.FINISH),  # moved, aside not yet deleted
        (True, True, True, Outcome.KEEP),  # someone made a new target: delete nothing
    ],
)
def test_decision_from_what_the_server_has(
    source: bool, target: bool, aside: bool, outcome: Outcome
) -> None:
    assert decide(source=source, target=target, aside=aside) is outcome


# -- which asides are hidden ------------------------------------------------------------------


def test_a_young_aside_is_hidden_an_old_one_is_listed() -> None:
    name = asides.new_aside_name(NOW)
    assert asides.is_hidden(name, NOW)
    assert asides.is_hidden(name, NOW + asides.HIDDEN_FOR - 1)
    assert not asides.is_hidden(name, NOW + asides.HIDDEN_FOR + 1)
    # made by a mount whose clock is ahead: hidden while young by that clock too
    assert asides.is_hidden(name, NOW - 60)
    assert not asides.is_hidden(name, NOW - asides.HIDDEN_FOR - 1)


@pytest.mark.parametrize(
    "name",
    [
        ".agfs-fuse-replaced-notes",
        ".agfs-fuse-replaced-",
        ".agfs-fuse-replaced-6b49d200-1234567",  # one hex digit short
        ".agfs-fuse-replaced-6b49d200-123456789",  # one too many
        ".agfs-fuse-replaced-6B49D200-12345678",  # not what the mount writes
        ".agfs-fuse-replaced-6b49d200-12345678.bak",
        "x.agfs-fuse-replaced-6b49d200-12345678",
        "notes.txt",
    ],
)
def test_only_generated_names_are_asides(name: str) -> None:
    made = asides.aside_made_at(asides.new_aside_name(NOW))
    assert made == int(NOW)
    assert asides.aside_made_at(name) is None
    assert not asides.is_hidden(name, NOW)


# -- the journal on disk ------------------------------------------------------------------


def test_journal_records_until_forgotten(tmp_path: Path) -> None:
    journal = RenameJournal(tmp_path / "renames")
    assert list(journal.pending()) == []  # no directory yet: nothing pending
    intent = RenameIntent("/memfs/d/new", "/memfs/d/t", "/memfs/d/.a", URL)
    record = journal.record(intent)
    (tmp_path / "renames" / "cut-short.json.tmp").write_text("{")  # a crash mid-write
    (tmp_path / "renames" / "garbage.json").write_text("not json")
    pending = dict(journal.pending())
    assert pending == {record: intent, tmp_path / "renames" / "garbage.json": None}
    assert not (tmp_path / "renames" / "cut-short.json.tmp").exists()
    journal.forget(record)
    journal.forget(record)  # twice is fine
    assert [r.name for r, _ in journal.pending()] == ["garbage.json"]


# -- recovery at mount time ---------------------------------------------------------------------


class FakeServer:
    """Just enough of ``AgfsClient`` for recovery: a set of paths, dirs marked."""

    def __init__(self, files: set[str], *, reachable: bool = True) -> None:
        self.base_url = URL
        self.files = set(files)
        self.reachable = reachable
        self.calls: list[str] = []

    async def stat(self, path: str) -> FileInfo:
        if not self.reachable:
            raise ServerUnreachable("connection refused")
        if path not in self.files:
            raise NotFound("no such file", path=path)
        name = path.rsplit("/", 1)[1]
        return FileInfo(name, size=1, perm=0o644, is_dir=False, is_symlink=False, mtime_ns=0)

    async def delete(self, path: str, *, recursive: bool = False) -> None:
        self.calls.append(f"delete {path}")
        self.files.remove(path)

    async def rename(self, old: str, new: str) -> None:
        self.calls.append(f"rename {old} {new}")
        self.files.remove(old)
        self.files.add(new)


def _recover(journal: RenameJournal, server: FakeServer) -> None:
    trio.run(recover, journal, server)


def test_recovery_puts_back_finishes_and_logs(tmp_path: Path, caplog) -> None:
    journal = RenameJournal(tmp_path / "renames")
    back = RenameIntent("/m/a/src", "/m/a/t", "/m/a/.aside1", URL)
    done = RenameIntent("/m/b/src", "/m/b/t", "/m/b/.aside2", URL)
    journal.record(back)
    journal.record(done)
    server = FakeServer({"/m/a/src", "/m/a/.aside1", "/m/b/t", "/m/b/.aside2"})
    with caplog.at_level(logging.WARNING):
        _recover(journal, server)
    assert server.files == {"/m/a/src", "/m/a/t", "/m/b/t"}
    assert sorted(server.calls) == ["delete /m/b/.aside2", "rename /m/a/.aside1 /m/a/t"]
    assert list(journal.pending()) == []
    assert not journal.directory.exists()  # the spool directory is left as it was
    assert "rename of /m/a/src over /m/a/t did not finish" in caplog.text
    assert Outcome.RESTORE.value in caplog.text and Outcome.FINISH.value in caplog.text


def test_recovery_keeps_the_record_while_the_server_cannot_answer(tmp_path: Path) -> None:
    journal = RenameJournal(tmp_path / "renames")
    journal.record(RenameIntent("/m/src", "/m/t", "/m/.aside", URL))
    server = FakeServer({"/m/src", "/m/.aside"}, reachable=False)
    _recover(journal, server)
    assert len(list(journal.pending())) == 1
    server.reachable = True
    _recover(journal, server)
    assert server.files == {"/m/src", "/m/t"} and list(journal.pending()) == []


def test_recovery_leaves_another_servers_record(tmp_path: Path) -> None:
    journal = RenameJournal(tmp_path / "renames")
    journal.record(RenameIntent("/m/src", "/m/t", "/m/.aside", "http://other:1/api/v1"))
    server = FakeServer({"/m/src", "/m/.aside"})
    _recover(journal, server)
    assert server.calls == [] and len(list(journal.pending())) == 1
