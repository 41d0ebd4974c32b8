"""A whole file over the body limit goes up through a handle to a hidden name, then is moved
over the real one: other clients and a crash see the old file or the new one, never a short
or mixed one ("last close wins")."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from agfs_fuse.asides import UPLOAD_PREFIX
from tests.mount.conftest import run
from tests.support.mount import wait_until

LIMIT = 1 << 20  # 1 MiB body limit: every file below goes up through handles
SIZE = 16 << 20
RACE_SIZE = 40 << 20  # long enough that two uploads overlap (16 MiB often did not)


@pytest.fixture
def limited(make_server):
    server = make_server(localfs=False, max_body=LIMIT)
    server.http.mkdir("/memfs/up")
    return server


@pytest.mark.timeout(90)
def test_two_writers_leave_one_writers_whole_content(limited, make_mount, tmp_path: Path) -> None:
    mounts = [make_mount(limited.url), make_mount(limited.url)]
    files = []
    for letter, mount in zip((b"A", b"B"), mounts, strict=True):
        f = open(mount.path / "memfs" / "up" / "f", "wb")  # noqa: SIM115
        f.write(letter * RACE_SIZE)  # into the spool; the upload happens at close
        files.append(f)
    both_ready = threading.Barrier(2)
    results: list[int] = []

    def close(f) -> None:
        both_ready.wait()
        try:
            f.close()
            results.append(0)
        except OSError as exc:
            results.append(exc.errno)

    threads = [threading.Thread(target=close, args=(f,)) for f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [0, 0], results  # both closes succeeded: the last one won
    data = limited.http.read("/memfs/up/f")
    assert data in (b"A" * RACE_SIZE, b"B" * RACE_SIZE), (
        f"mixed or short file: {len(data)} bytes, {data.count(b'A')} A, {data.count(b'B')} B"
    )


@pytest.mark.timeout(90)
def test_kill_during_upload_leaves_old_content(limited, make_mount, tmp_path: Path) -> None:
    old = b"o" * (LIMIT - 100)  # under the limit: one PUT sets it up
    limited.http.write("/memfs/up/g", old)
    limited.http.chmod("/memfs/up/g", 0o640)
    mount = make_mount(limited.url)
    source = tmp_path / "new"
    source.write_bytes(b"n" * SIZE)
    target = mount.path / "memfs" / "up" / "g"
    copier = threading.Thread(
        target=run, args=(["cp", str(source), str(target)],), kwargs={"check": False}
    )
    copier.start()

    def upload_under_way() -> bool:
        info = limited.http.stat("/memfs/up/g")
        changed = info is None or info["size"] != len(old)
        hidden = any(n.startswith(UPLOAD_PREFIX) for n in limited.http.names("/memfs/up"))
        return changed or hidden

    wait_until(upload_under_way, 60, interval=0.002, message="the upload to start")
    mount.kill()
    copier.join()
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
