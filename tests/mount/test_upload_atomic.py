"""A whole file over the body limit goes up through a handle to a hidden name, then is moved
over the real one: other clients and a crash see the old file or the new one, never a short
or mixed one ("last close wins").

The races are made certain, not hoped for: the mounts talk to the server through a fault
proxy that holds a chosen request (``tests/support/faultproxy.py``) while the test looks.
"""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agfs_fuse.asides import UPLOAD_PREFIX
from tests.mount.conftest import run
from tests.support.faultproxy import FaultProxy, Request
from tests.support.mount import wait_until

LIMIT = 1 << 20  # 1 MiB body limit: every file below goes up through handles
SIZE = 16 << 20
RACE_SIZE = 4 << 20  # the proxy makes the two uploads overlap, whatever their size


@pytest.fixture
def limited(make_server):
    server = make_server(localfs=False, max_body=LIMIT)
    server.http.mkdir("/memfs/up")
    return server


@pytest.fixture
def proxy(limited) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``limited``: mount ``proxy.url`` to have requests held."""
    with FaultProxy(limited.url, lifetime=120.0) as relay:
        yield relay


def _from_the_nth(n: int) -> Callable[[Request], bool]:
    """A rule condition true from the ``n``-th matching request on (1-based)."""
    seen = itertools.count(1)
    return lambda _request: next(seen) >= n


def _spooled(mounts, name: str) -> list[tuple[bytes, object]]:
    """Each mount's writer of ``/memfs/up/NAME``, RACE_SIZE bytes of its own letter spooled
    (the upload happens at close)."""
    files = []
    for letter, mount in zip((b"A", b"B"), mounts, strict=True):
        f = open(mount.path / "memfs" / "up" / name, "wb")  # noqa: SIM115
        f.write(letter * RACE_SIZE)
        files.append((letter, f))
    return files


def _closing(files, results: list[tuple[bytes, int]]) -> list[threading.Thread]:
    """Threads closing each file, appending (letter, 0 or errno) to ``results`` when done."""

    def close(letter: bytes, f) -> None:
        try:
            f.close()
            results.append((letter, 0))
        except OSError as exc:
            results.append((letter, exc.errno))

    threads = [threading.Thread(target=close, args=pair, daemon=True) for pair in files]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.timeout(90)
def test_two_writers_leave_one_writers_whole_content(limited, proxy, make_mount) -> None:
    """The second upload starts and ends while the first one's move is held: the first to
    start is the last to close, and its content wins whole."""
    mounts = [make_mount(proxy.url), make_mount(proxy.url)]
    first_move = proxy.pause("POST", "/rename", path=UPLOAD_PREFIX, count=1)
    upload_opens = proxy.watch("POST", "/handles/open", path=UPLOAD_PREFIX)
    results: list[tuple[bytes, int]] = []
    threads = _closing(_spooled(mounts, "f"), results)
    try:
        wait_until(lambda: first_move.hits == 1, 30, message="the first upload's move")
        # the other upload opens its handle while the first is not in place: they overlap
        wait_until(lambda: upload_opens.hits == 2, 30, message="the second upload's open")
        wait_until(lambda: results, 30, message="the second upload's close")
    finally:
        first_move.release()
        for thread in threads:
            thread.join(60)
    assert [errno for _, errno in results] == [0, 0], results  # both closes succeeded
    last = results[-1][0]
    data = limited.http.read("/memfs/up/f")
    assert data == last * RACE_SIZE, (
        f"not all {last!r}: {len(data)} bytes, {data.count(b'A')} A, {data.count(b'B')} B"
    )
    assert limited.http.names("/memfs/up") == {"f"}


@pytest.mark.timeout(90)
def test_two_uploads_setting_the_target_aside_at_once_both_succeed(
    limited, proxy, make_mount
) -> None:
    """Both uploads find the old file in the way (memfs refuses the plain rename) and move
    it aside at the same moment: only one of the two moves can find it."""
    limited.http.write("/memfs/up/e", b"the old file")
    mounts = [make_mount(proxy.url), make_mount(proxy.url)]
    aside_moves = proxy.pause("POST", "/rename", when=lambda r: r.path == "/memfs/up/e")
    results: list[tuple[bytes, int]] = []
    threads = _closing(_spooled(mounts, "e"), results)
    try:
        wait_until(lambda: aside_moves.hits == 2, 30, message="both moves of the old file")
    finally:
        aside_moves.release()
        for thread in threads:
            thread.join(60)
    assert [errno for _, errno in results] == [0, 0], results
    data = limited.http.read("/memfs/up/e")
    assert data in (b"A" * RACE_SIZE, b"B" * RACE_SIZE)


@pytest.mark.timeout(90)
def test_kill_during_upload_leaves_old_content(limited, proxy, make_mount, tmp_path: Path) -> None:
    old = b"o" * (LIMIT - 100)  # under the limit: one PUT sets it up
    limited.http.write("/memfs/up/g", old)
    limited.http.chmod("/memfs/up/g", 0o640)
    mount = make_mount(proxy.url)
    source = tmp_path / "new"
    source.write_bytes(b"n" * SIZE)
    target = mount.path / "memfs" / "up" / "g"
    # the third write of the upload is never answered: the mount dies in mid-upload
    held = proxy.stall("PUT", "/handles/{id}/write", count=1, when=_from_the_nth(3))
    copier = threading.Thread(
        target=run, args=(["cp", str(source), str(target)],), kwargs={"check": False}
    )
    copier.start()
    try:
        wait_until(lambda: held.hits == 1, 60, message="the upload's third write")
        hidden = [n for n in limited.http.names("/memfs/up") if n.startswith(UPLOAD_PREFIX)]
        assert len(hidden) == 1, hidden  # the partial upload, under its hidden name
    finally:
        mount.kill()  # SIGKILL in mid-upload (and never a cp left waiting on the stall)
        copier.join(60)
    assert limited.http.read("/memfs/up/g") == old
    # the hidden partial upload never shows through a mount
    second = make_mount(limited.url)
    assert os.listdir(second.path / "memfs" / "up") == ["g"]


@pytest.mark.timeout(60)
def test_upload_keeps_the_mode_and_leaves_no_hidden_file(limited, make_mount, tmp_path) -> None:
    limited.http.write("/memfs/up/h", b"old")
    limited.http.chmod("/memfs/up/h", 0o600)
    mount = make_mount(limited.url)
    target = mount.path / "memfs" / "up" / "h"
    target.write_bytes(b"x" * (3 * LIMIT))
    assert limited.http.read("/memfs/up/h") == b"x" * (3 * LIMIT)
    assert stat.S_IMODE(limited.http.stat("/memfs/up/h")["mode"]) == 0o600
    assert limited.http.names("/memfs/up") == {"h"}
