"""``-o async_upload`` when uploads fail: ``close`` has already said "done", so the failure
must reach the user another way. fsync reports it, ``agfs-fuse sync`` reports it and exits
1, a refused upload is kept (``agfs-fuse spools``), a server that died and came back gets
the content, and a mount killed with uploads pending has its spools uploaded (or, when the
server's file changed since, reported) by the next mount.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import Rig, full_log, probe
from tests.support.mount import Mount, wait_until

pytestmark = pytest.mark.timeout(120)

AGFS_FUSE = str(Path(sys.executable).with_name("agfs-fuse"))


def async_mount(rig: Rig, name: str = "amnt") -> Mount:
    return rig.new_mount(options=("async_upload",), mountpoint=rig.base / name)


def make_dir(rig: Rig, mount: Mount, name: str) -> tuple[str, Path]:
    """A fresh directory on memfs: (its server path, its path through ``mount``)."""
    remote = f"/memfs/{name}"
    rig.http.mkdir(remote)
    return remote, mount.path / "memfs" / name


def agfs_fuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGFS_FUSE, *args], capture_output=True, text=True, timeout=60)


def write_file(path: Path, data: str) -> None:
    """What a program does: open, write, close (bounded: a hang fails the test)."""
    done = subprocess.run(
        ["sh", "-c", 'printf %s "$1" > "$2"', "sh", data, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


def fsync_errors(path: Path, times: int) -> list[int | None]:
    """The errno of each of ``times`` fsyncs of a read-only descriptor (None: success)."""
    script = (
        "import json, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "out = []\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    try:\n"
        "        os.fsync(fd)\n"
        "        out.append(None)\n"
        "    except OSError as exc:\n"
        "        out.append(exc.errno)\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(times)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_fsync_and_sync_report_a_refused_upload_and_the_spool_is_kept(rig: Rig) -> None:
    mount = async_mount(rig)
    remote, local = make_dir(rig, mount, "refused")
    rig.http.write(f"{remote}/f", "the server's content")
    rig.proxy.fail(403, "PUT", "/files", path=f"{remote}/")
    result = probe("write", str(local / "f"), "1000", "7", "--fsync")
    assert (result["step"], result["errno"]) == ("fsync", "EACCES"), result
    # The close returned; its background upload is refused again and given up.
    wait_until(
        lambda: [f["kept"] for f in mount.stats()["async_uploads"]["failed"]] == [True],
        message="the background upload to be given up",
    )
    # An fsync of the file, even read-only, reports it once (as a writeback error).
    assert fsync_errors(local / "f", times=2) == [errno.EIO, None]
    done = agfs_fuse("sync", str(mount.path))
    assert done.returncode == 1
    assert f"{remote}/f" in done.stderr and "kept" in done.stderr, done.stderr
    assert rig.http.read(f"{remote}/f") == b"the server's content"
    failed = mount.stats()["async_uploads"]["failed"]
    assert [f["path"] for f in failed] == [f"{remote}/f"]
    listed = agfs_fuse("spools", str(mount.path), "--json")
    assert f"{remote}/f" in listed.stdout
    kept = [meta for _, meta in rig.spools() if meta and meta["remote_path"] == f"{remote}/f"]
    assert len(kept) == 1 and "PermissionDenied" in kept[0]["reason"]
    # Reported once: the next sync has nothing new to say.
    assert agfs_fuse("sync", str(mount.path)).returncode == 0


def test_sync_reports_a_dead_server_and_the_upload_lands_once_it_is_back(rig: Rig) -> None:
    mount = async_mount(rig)
    remote, local = make_dir(rig, mount, "dies")
    held = rig.proxy.pause("PUT", "/files", path=f"{remote}/")
    write_file(local / "f", "written while the server died")  # close returns: not uploaded yet
    wait_until(lambda: held.hits == 1, message="the upload to reach the proxy")
    rig.kill_server()
    held.release()  # the held upload goes on, to a dead server
    done = agfs_fuse("sync", str(mount.path))
    assert done.returncode == 1
    assert f"{remote}/f" in done.stderr and "will be retried" in done.stderr, done.stderr
    assert mount.stats()["async_uploads"]["queued"] == 1
    rig.start_server()
    rig.http.mkdir(remote)  # memfs lost everything with the server
    assert agfs_fuse("sync", str(mount.path)).returncode == 0
    assert rig.http.read(f"{remote}/f") == b"written while the server died"
    assert mount.stats()["async_uploads"]["failed"] == []


def test_a_crashed_mount_s_spools_are_uploaded_or_reported_at_the_next_mount(rig: Rig) -> None:
    mount = async_mount(rig)
    remote, local = make_dir(rig, mount, "crash")
    rig.http.write(f"{remote}/old", "old content")
    rig.http.write(f"{remote}/changed", "old content")
    # "landed" reaches the server, but its answer never comes back: the spool stays.
    landed = rig.proxy.drop("PUT", "/files", path=f"{remote}/landed", applied=True)
    stalled = rig.proxy.stall("PUT", "/files", path=f"{remote}/")
    for name in ("new", "old", "changed", "landed"):
        write_file(local / name, f"closed {name}")
    wait_until(lambda: stalled.hits == 3, message="the three uploads to reach the proxy")
    wait_until(lambda: landed.hits >= 1, message="the landed upload to reach the server")
    mount.kill()  # SIGKILL with the uploads in flight: a crash
    rig.http.write(f"{remote}/changed", "another client's content")
    rig.proxy.remove(stalled)
    rig.proxy.remove(landed)
    again = rig.new_mount(mountpoint=mount.path)  # not even async: it recovers them all the same
    assert rig.http.read(f"{remote}/new") == b"closed new"
    assert rig.http.read(f"{remote}/old") == b"closed old"
    assert rig.http.read(f"{remote}/changed") == b"another client's content"
    kept = agfs_fuse("spools", str(again.path), "--json")
    assert f"{remote}/changed" in kept.stdout and "changed after it was closed" in kept.stdout
    assert f"{remote}/old" not in kept.stdout and f"{remote}/new" not in kept.stdout
    # The one whose upload had landed is recognised by its content, not reported.
    assert rig.http.read(f"{remote}/landed") == b"closed landed"
    assert f"{remote}/landed" not in kept.stdout
    assert f"{remote}/landed was uploaded before the earlier run stopped" in full_log(again)
    assert f"uploaded {remote}/old, closed before the earlier run stopped" in full_log(again)
