"""``RenameGate`` alone: which renames and lookups wait for which running rename."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from agfs_fuse.rename_gate import RenameGate

pytestmark = pytest.mark.timeout(10)


def order_of(first: tuple[str, str], second: tuple[str, str]) -> list[str]:
    """Start a rename of ``first``'s names and, while it holds the gate, one of
    ``second``'s; the order in which they end and begin."""
    events: list[str] = []

    async def main() -> None:
        gate = RenameGate()
        release = trio.Event()

        async def hold() -> None:
            async with gate.renaming(*first):
                events.append("first begins")
                await release.wait()
                events.append("first ends")

        async def follow() -> None:
            async with gate.renaming(*second):
                events.append("second begins")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(follow)
            await trio.testing.wait_all_tasks_blocked()
            release.set()

    trio.run(main)
    return events


def test_a_directory_rename_waits_for_a_rename_below_it():
    assert order_of(("/D/.agfs-fuse-upload-x", "/D/f"), ("/D", "/E")) == [
        "first begins",
        "first ends",
        "second begins",
    ]


def test_a_rename_below_waits_for_its_directory_rename():
    assert order_of(("/D", "/E"), ("/D/a", "/D/b")) == [
        "first begins",
        "first ends",
        "second begins",
    ]


def test_unrelated_renames_run_together():
    assert order_of(("/D/a", "/D/b"), ("/Dx", "/E")) == [
        "first begins",
        "second begins",
        "first ends",
    ]


def test_a_lookup_waits_only_for_renames_above_it():
    seen: list[str] = []

    async def main() -> None:
        gate = RenameGate()
        async with gate.renaming("/D/a", "/D/b"):
            # A virtual clock: "waited" means blocked until the deadline, at no real cost.
            with trio.move_on_after(1) as below:  # /D itself is not renamed: no wait
                await gate.settled("/D")
            seen.append("parent waited" if below.cancelled_caught else "parent answered")
            with trio.move_on_after(1) as same:
                await gate.settled("/D/b/inside")
            seen.append("child waited" if same.cancelled_caught else "child answered")

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen == ["parent answered", "child waited"]
