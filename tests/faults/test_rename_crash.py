"""A rename-over on memfs interrupted by a crash or a lost answer never loses the target.

memfs refuses to rename over an existing file, so the mount moves the target aside to a
hidden name first. A mount killed (SIGKILL) in the middle must not hide the target for
good: the next mount finishes or undoes the rename from its intent record, says so in its
log, and the directory can be emptied and removed. A lost answer to ``/rename`` is settled
by the running mount itself, from what the server has.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable

import pytest

from agfs_fuse.asides import ASIDE_PREFIX
from tests.faults.conftest import Rig, finish_tool, full_log, new_dir, run_tool, spawn_tool
from tests.support.faultproxy import Request
from tests.support.mount import wait_until

pytestmark = pytest.mark.timeout(90)


def _records(rig: Rig) -> list[str]:
    """Intent records of rename-overs under the rig's cache dir."""
    return [str(p) for p in (rig.cache_dir / "spool").glob("*/renames/*.json")]


def _asides(rig: Rig, remote: str) -> set[str]:
    return {name for name in rig.http.names(remote) if name.startswith(ASIDE_PREFIX)}


def _second() -> Callable[[Request], bool]:
    """A rule condition true from the second matching request on: the first is the plain
    rename that memfs refuses because the target exists."""
    seen = itertools.count()
    return lambda _request: next(seen) >= 1


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        # killed before the source moved: the old file must come back
        ("rename", {"config.txt": b"old config\n", "source.new": b"new config\n"}),
        # killed after the source moved, before the old copy was deleted: finish it
        ("delete", {"config.txt": b"new config\n"}),
    ],
)
def test_next_mount_settles_a_rename_killed_midway(
    rig: Rig, held: str, expected: dict[str, bytes]
) -> None:
    remote, local = new_dir(rig)
    rig.http.write(f"{remote}/config.txt", b"old config\n")
    rig.http.write(f"{remote}/source.new", b"new config\n")
    if held == "rename":
        rule = rig.proxy.stall("POST", "/rename", path="source.new", when=_second())
    else:
        rule = rig.proxy.stall("DELETE", "/files", path=ASIDE_PREFIX)
    mount = rig.mount
    assert mount is not None
    mv = spawn_tool(["mv", str(local / "source.new"), str(local / "config.txt")])
    wait_until(lambda: rule.hits >= 1, timeout=15, message=f"the held {held} request")
    assert len(_records(rig)) == 1, "an intent record is on disk before the crash"
    assert len(_asides(rig, remote)) == 1
    mount.kill()  # SIGKILL mid-rename: the mount is left stale
    status, _, _ = finish_tool(mv)
    assert status != 0  # the rename was never answered
    rig.proxy.remove(rule)

    again = rig.new_mount(mountpoint=mount.path)  # same URL and mountpoint: same records
    assert "did not finish" in full_log(again), full_log(again)
    assert _asides(rig, remote) == set()
    assert _records(rig) == []
    assert {name: rig.http.read(f"{remote}/{name}") for name in rig.http.names(remote)} == expected
    assert sorted(os.listdir(local)) == sorted(expected)
    assert (local / "config.txt").read_bytes() == expected["config.txt"]
    status, out, _ = run_tool(["rm", "-r", str(local)])
    assert status == 0, out
    assert not rig.http.exists(remote)


def test_a_lost_rename_answer_is_settled_by_the_running_mount(rig: Rig) -> None:
    remote, local = new_dir(rig)
    rig.http.write(f"{remote}/config.txt", b"old config\n")
    rig.http.write(f"{remote}/source.new", b"new config\n")
    # the server renames the source over the target, its answer never comes back
    rule = rig.proxy.drop("POST", "/rename", path="source.new", applied=True, when=_second())
    proc = subprocess.run(
        ["mv", str(local / "source.new"), str(local / "config.txt")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert rule.hits == 1
    assert proc.returncode == 0, proc.stderr  # it did happen: the mount says so
    assert rig.http.names(remote) == {"config.txt"}
    assert rig.http.read(f"{remote}/config.txt") == b"new config\n"
    assert os.listdir(local) == ["config.txt"]
    assert _records(rig) == []
