"""The load test's ``ls -l`` checker accepts exactly the complaints a rename race causes."""

from __future__ import annotations

import pytest

from tests.stress._workers import LS_ENOENT

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    "line",
    [
        # statx lost the race
        "ls: cannot access '/mnt/memfs/ren-a-1/n00007-g3': No such file or directory",
        # statx won, the getxattr right after it lost (GNU ls 9.1 names the entry bare)
        "ls: /mnt/memfs/ren-a-1/n00007-g3: No such file or directory",
        "ls: '/mnt/with space/n00007-g3': No such file or directory",
    ],
)
def test_rename_races_are_accepted(line: str) -> None:
    assert LS_ENOENT.match(line)


@pytest.mark.parametrize(
    "line",
    [
        "ls: cannot access '/mnt/x': Input/output error",
        "ls: /mnt/x: Transport endpoint is not connected",
        "ls: cannot open directory '/mnt/x': No such file or directory",
        "ls: reading directory '/mnt/x': Input/output error",
    ],
)
def test_other_errors_are_not(line: str) -> None:
    assert not LS_ENOENT.match(line)
