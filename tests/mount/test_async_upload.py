"""``-o async_upload`` on a real kernel mount: ``close`` returns before the upload, the
mount shows the new content at once, renames and unmount wait for the uploads.

Each test mounts its server through the fault proxy, whose ``pause`` holds the uploads
(``PUT /files``) until the test lets them go: what the mount does while an upload is
pending is then seen, not guessed from timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.relay import DelayRelay
from tests.mount.conftest import Server
from tests.support.faultproxy import FaultProxy, Rule
from tests.support.mount import Mount, wait_until

pytestmark = pytest.mark.timeout(90)

AGFS_FUSE = str(Path(sys.executable).with_name("agfs-fuse"))
OPTIONS = ("async_upload", "attr_timeout=0", "entry_timeout=0", "negative_timeout=0")


@pytest.fixture
def rig(
    make_server: Callable[..., Server], make_mount: Callable[..., Mount]
) -> Iterator[tuple[Server, FaultProxy, Mount]]:
    """A server, the fault proxy in front of it, and an async-upload mount of the proxy."""
    server = make_server(localfs=False)
    with FaultProxy(server.handle.url) as proxy:
        mount = make_mount(proxy.url, options=OPTIONS)
        yield server, proxy, mount
        mount.unmount()


def shell(command: str, cwd: Path, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Run a shell command as a program would, bounded; fails the test on an error."""
    done = subprocess.run(
        ["sh", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return done


def sync(mount: Mount, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGFS_FUSE, "sync", str(mount.path)], capture_output=True, text=True, timeout=timeout
    )


def held_uploads(proxy: FaultProxy, name: str) -> Rule:
    """Hold every upload of a path containing ``name`` until ``release``."""
    return proxy.pause("PUT", "/files", path=name)


def test_close_returns_before_the_upload_and_readers_see_the_new_content(rig) -> None:
    server, proxy, mount = rig
    work = mount.path / "memfs"
    server.http.write("/memfs/old.txt", "old content")
    held = held_uploads(proxy, ".txt")
    try:
        # close() returns although the server has not taken the upload (held).
        shell("printf 'new content!' > old.txt && printf 'brand new' > made.txt", work)
        wait_until(lambda: held.hits == 2, message="both uploads reach the proxy")
        assert server.http.read("/memfs/old.txt") == b"old content"
        assert not server.http.exists("/memfs/made.txt")
        # Readers on the mount (other processes, fresh opens) see the new content at once.
        assert shell("cat old.txt made.txt", work).stdout == "new content!brand new"
        assert (work / "old.txt").stat().st_size == len("new content!")
        assert "made.txt" in os.listdir(work)
        stats = mount.stats()["async_uploads"]
        assert stats["in_flight"] == 2
        waiter = subprocess.Popen([AGFS_FUSE, "sync", str(mount.path)], stderr=subprocess.PIPE)
        assert waiter.poll() is None  # sync waits for the held uploads
    finally:
        held.release()
    assert waiter.wait(timeout=30) == 0
    assert server.http.read("/memfs/old.txt") == b"new content!"
    assert server.http.read("/memfs/made.txt") == b"brand new"
    assert mount.stats()["async_uploads"]["uploaded"] == 2


def test_editor_temp_then_rename_leaves_only_the_new_content(rig) -> None:
    server, proxy, mount = rig
    work = mount.path / "memfs"
    server.http.write("/memfs/doc", "version 1")
    held = held_uploads(proxy, "/memfs/doc")
    try:
        shell("printf 'version 2' > doc", work)  # its upload is held in flight
        wait_until(lambda: held.hits == 1, message="the upload of doc reaches the proxy")
        # An editor's save: write a temporary, then rename it over the file. The rename
        # is applied after the upload of doc held in flight (it may wait for it).
        save = "printf 'version 3, saved' > .doc.swp && mv .doc.swp doc"
        editor = subprocess.Popen(["sh", "-c", save], cwd=work)
    finally:
        held.release()
    assert editor.wait(timeout=30) == 0
    assert shell("cat doc", work).stdout == "version 3, saved"
    assert ".doc.swp" not in os.listdir(work)
    assert sync(mount).returncode == 0
    assert server.http.read("/memfs/doc") == b"version 3, saved"
    assert not server.http.exists("/memfs/.doc.swp")


def test_a_rename_of_a_file_waits_for_its_upload(rig) -> None:
    server, proxy, mount = rig
    work = mount.path / "memfs"
    server.http.write("/memfs/report", "draft")
    held = held_uploads(proxy, "/memfs/report")
    try:
        shell("printf final > report", work)
        wait_until(lambda: held.hits == 1, message="the upload of report reaches the proxy")
        mover = subprocess.Popen(["mv", "report", "report.done"], cwd=work)
        assert mover.poll() is None  # the rename waits for the upload in flight
        assert server.http.exists("/memfs/report")
    finally:
        held.release()
    assert mover.wait(timeout=30) == 0
    assert sync(mount).returncode == 0
    assert server.http.read("/memfs/report.done") == b"final"
    assert not server.http.exists("/memfs/report")


def test_unlink_and_chmod_of_pending_files(rig) -> None:
    server, proxy, mount = rig
    work = mount.path / "memfs"
    held = held_uploads(proxy, "/memfs/keep")
    never = held_uploads(proxy, "/memfs/never")
    try:
        # A new file whose first upload is held: its unlink waits for that upload, then
        # removes what it made; a chmod of one with its upload in flight waits too.
        changes = "printf gone > never && rm never && printf kept > keep && chmod 600 keep"
        program = subprocess.Popen(["sh", "-c", changes], cwd=work)
        wait_until(lambda: never.hits == 1, message="the upload of never reaches the proxy")
        assert program.poll() is None  # rm waits for the upload in flight
    finally:
        never.release()
        held.release()
    assert program.wait(timeout=30) == 0
    assert "never" not in os.listdir(work)
    assert oct((work / "keep").stat().st_mode & 0o777) == oct(0o600)
    assert sync(mount).returncode == 0
    assert not server.http.exists("/memfs/never")
    assert server.http.read("/memfs/keep") == b"kept"
    assert server.http.stat("/memfs/keep")["mode"] & 0o777 == 0o600


def test_unmount_waits_for_every_pending_upload(rig) -> None:
    server, proxy, mount = rig
    work = mount.path / "memfs"
    names = [f"file{n}" for n in range(10)]
    held = held_uploads(proxy, "/memfs/file")
    try:
        for name in names:
            (work / name).write_text(f"content of {name}")
        # At most 4 uploads at once: 4 held at the proxy, the others queued in the mount.
        wait_until(lambda: held.hits == 4, message="4 uploads reach the proxy")
        assert mount.stats()["async_uploads"] == {
            **mount.stats()["async_uploads"],
            "in_flight": 4,
            "queued": 6,
        }
        assert not any(server.http.exists(f"/memfs/{name}") for name in names)
        unmounting = threading.Thread(target=mount.unmount)
        unmounting.start()
        wait_until(lambda: not os.path.ismount(mount.path), message="the kernel unmount")
        assert mount.proc is not None and mount.proc.poll() is None  # still uploading
    finally:
        held.release()
    unmounting.join(timeout=60)
    assert mount.returncode == 0, mount.describe()
    for name in names:
        assert server.http.read(f"/memfs/{name}") == f"content of {name}".encode()


def test_sigterm_uploads_every_pending_file_before_exiting(rig) -> None:
    server, proxy, mount = rig
    work = mount.path / "memfs"
    names = [f"term{n}" for n in range(3)]
    held = held_uploads(proxy, "/memfs/term")
    try:
        for name in names:
            (work / name).write_text(f"content of {name}")
        wait_until(lambda: held.hits == 3, message="the uploads reach the proxy")
        mount.signal(signal.SIGTERM)
        assert mount.proc is not None and mount.proc.poll() is None  # waits for them
    finally:
        held.release()
    assert mount.wait(timeout=60) == 0, mount.describe()
    for name in names:
        assert server.http.read(f"/memfs/{name}") == f"content of {name}".encode()


def test_sync_in_the_default_mode_and_on_a_directory_that_is_no_mount(
    mounted: Mount, tmp_path: Path
) -> None:
    assert sync(mounted).returncode == 0  # nothing pending: returns at once
    done = subprocess.run(
        [AGFS_FUSE, "sync", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "is not a mount point" in done.stderr


def test_a_burst_of_new_files_costs_one_upload_each_over_a_slow_link(
    make_server: Callable[..., Server], make_mount: Callable[..., Mount]
) -> None:
    """Uploads land in the background all through the burst; the listing the burst makes
    still answers for the next names (no stat per file), and every file stays visible."""
    server = make_server(localfs=False)
    server.http.mkdir("/memfs/burst")
    names = [f"f{n:03d}" for n in range(100)]
    with FaultProxy(server.handle.url) as proxy:
        port = int(proxy.url.split(":")[2].split("/")[0])
        with DelayRelay(("127.0.0.1", port), rtt=0.01) as relay:
            mount = make_mount(f"http://127.0.0.1:{relay.port}/api/v1", options=["async_upload"])
            work = mount.path / "memfs" / "burst"
            before = proxy.request_counts()
            for name in names:
                (work / name).write_bytes(name.encode())
            assert sync(mount).returncode == 0
            sent = {k: v - before.get(k, 0) for k, v in proxy.request_counts().items()}
            assert sorted(os.listdir(work)) == names
            assert all((work / name).stat().st_size == len(name) for name in names)
            mount.unmount()
    assert sent["PUT /files"] == len(names)
    assert sent.get("GET /stat", 0) <= 10, sent
    assert {entry["name"] for entry in server.http.list("/memfs/burst")} == set(names)
