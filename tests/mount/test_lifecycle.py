"""The mount command's lifecycle: background and foreground modes, /proc/mounts, signals,
mount-time errors, a stale mount left by a crash, mount options, and a server that goes down.

Mount-time errors must give one line on stderr, an exit status != 0, and nothing mounted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import run
from tests.support.mount import (
    Mount,
    abort_fuse_connection,
    force_unmount,
    fuse_connections,
    is_mounted,
    is_stale,
    mount_entry,
    pids_with_arg,
    run_mount_cli,
    wait_until,
)

AGFS_FUSE = str(Path(sys.executable).parent / "agfs-fuse")


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], mountpoint: Path) -> None:
    assert proc.returncode != 0, f"exit 0\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    err = proc.stderr.strip()
    assert err, "no error message on stderr"
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, f"not one line:\n{err}"
    assert not is_mounted(mountpoint), f"{mountpoint} is mounted after a failed mount"


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    """An empty directory; anything mounted there (and any process serving it) is cleaned up."""
    mp = tmp_path / "mp"
    mp.mkdir()
    try:
        yield mp
    finally:
        force_unmount(mp)
        for pid in pids_with_arg(str(mp)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A URL on a loopback port that is bound but not listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    finally:
        sock.close()


@pytest.fixture
def not_agfs_url(tmp_path: Path) -> Iterator[str]:
    """A plain ``python -m http.server`` (404 for every /api/v1 route)."""
    docroot = tmp_path / "www"
    docroot.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(docroot),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N (http://...) ..."
        port = int(line.split(" port ")[1].split()[0])
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        proc.kill()
        proc.wait()


# -- modes, /proc/mounts ------------------------------------------------------------------


def test_proc_mounts_entry(mounted: Mount) -> None:
    entry = mount_entry(mounted.path)
    assert entry is not None
    assert entry["fstype"] == "fuse.agfs", entry
    assert entry["source"] == mounted.url, entry


@pytest.mark.timeout(60)
def test_background_mount_returns_when_usable(agfs_server, mountpoint: Path) -> None:
    agfs_server.http.write("/memfs/bg-visible", b"bg")
    proc = subprocess.run(
        [AGFS_FUSE, "mount", agfs_server.url, str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=45,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    # usable at once: no polling here
    assert os.path.ismount(mountpoint)
    assert (mountpoint / "memfs" / "bg-visible").read_bytes() == b"bg"
    assert mount_entry(mountpoint)["fstype"] == "fuse.agfs"
    daemons = pids_with_arg(str(mountpoint))
    assert daemons, "no background process serves the mount"
    run(["fusermount3", "-u", str(mountpoint)])
    assert not is_mounted(mountpoint)
    wait_until(
        lambda: not pids_with_arg(str(mountpoint)),
        10,
        message="the background process to exit after fusermount3 -u",
    )


def test_python_m_background_mount(agfs_server, mountpoint: Path) -> None:
    proc = run_mount_cli(["mount", agfs_server.url, str(mountpoint)], timeout=45)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isdir(mountpoint / "memfs")
    run(["fusermount3", "-u", str(mountpoint)])
    wait_until(lambda: not pids_with_arg(str(mountpoint)), 10, message="background exit")


def test_foreground_unmount_with_fusermount(agfs_server, tmp_path: Path) -> None:
    mount = Mount(agfs_server.url, tmp_path / "mnt", workdir=tmp_path)
    try:
        mount.start()
        assert os.path.isdir(mount.path / "memfs")
        run(["fusermount3", "-u", str(mount.path)])
        assert mount.wait(15) == 0, mount.describe()
        assert not is_mounted(mount.path)
    finally:
        mount.unmount()


def test_url_without_api_suffix(agfs_server, make_mount) -> None:
    bare = agfs_server.url.removesuffix("/api/v1")
    assert bare != agfs_server.url
    agfs_server.http.write("/memfs/suffix-test", b"ok")
    mount = make_mount(bare)
    assert (mount.path / "memfs" / "suffix-test").read_bytes() == b"ok"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_uploads_pending_writes_and_unmounts(agfs_server, tmp_path: Path, sig) -> None:
    mount = Mount(agfs_server.url, tmp_path / "mnt", workdir=tmp_path)
    name = f"/memfs/pending-{sig.name}-{os.getpid()}"
    fd = None
    try:
        mount.start()
        fd = os.open(mount.path / name.lstrip("/"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"not yet closed")
        mount.signal(sig)
        assert mount.wait(30) == 0, mount.describe()
        assert agfs_server.http.read(name) == b"not yet closed", mount.describe()
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        mount.unmount()
    assert not is_mounted(mount.path)


# -- mount-time errors --------------------------------------------------------------------


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
def test_unreachable_server(refused_url: str, mountpoint: Path, foreground: bool) -> None:
    args = ["mount", refused_url, str(mountpoint)] + (["-f"] if foreground else [])
    start = time.monotonic()
    proc = run_mount_cli(args, timeout=60)
    _assert_one_line_error(proc, mountpoint)
    assert time.monotonic() - start < 30


def test_not_an_agfs_server(not_agfs_url: str, mountpoint: Path) -> None:
    proc = run_mount_cli(["mount", not_agfs_url, str(mountpoint)], timeout=60)
    _assert_one_line_error(proc, mountpoint)


def test_missing_mountpoint(agfs_server, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    proc = run_mount_cli(["mount", agfs_server.url, str(missing)], timeout=60)
    _assert_one_line_error(proc, missing)
    assert not missing.exists()


def test_live_mount_already_there(agfs_server, make_mount) -> None:
    first = make_mount(agfs_server.url)
    proc = run_mount_cli(["mount", agfs_server.url, str(first.path)], timeout=60)
    assert proc.returncode != 0, proc.stderr
    err = proc.stderr.strip()
    assert err and "Traceback" not in err and len(err.splitlines()) == 1, err
    # the first mount is untouched
    assert first.alive()
    assert os.path.isdir(first.path / "memfs")
    entries = [
        line
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1] == str(first.path)
    ]
    assert len(entries) == 1, entries


def test_nonempty_mountpoint(agfs_server, mountpoint: Path, make_mount) -> None:
    (mountpoint / "existing-file").write_text("local")
    proc = run_mount_cli(["mount", agfs_server.url, str(mountpoint)], timeout=60)
    _assert_one_line_error(proc, mountpoint)
    assert (mountpoint / "existing-file").read_text() == "local"
    mount = make_mount(agfs_server.url, options=["nonempty"], mountpoint=mountpoint)
    assert os.path.isdir(mount.path / "memfs")


def test_unknown_option_lists_valid_ones(agfs_server, mountpoint: Path) -> None:
    proc = run_mount_cli(["mount", agfs_server.url, str(mountpoint), "-o", "bogus=1"])
    assert proc.returncode != 0
    assert "bogus" in proc.stderr
    for valid in ("attr_timeout", "cache_dir", "root", "allow_other", "nonempty"):
        assert valid in proc.stderr, proc.stderr
    assert not is_mounted(mountpoint)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("attr_timeout", [None, "30"], ids=["default", "attr_timeout=30"])
def test_stale_mount_is_cleared(agfs_server, tmp_path: Path, attr_timeout: str | None) -> None:
    """SIGKILL a mount; once ``ls`` says "Transport endpoint is not connected", a new mount
    on the same directory clears the stale one (with a warning) and proceeds.

    ``default``: the new mount starts once even ``stat`` of the mountpoint fails (after the
    kernel's ~1 s attribute cache of the dead root expired). ``attr_timeout=30``: the crashed
    mount had a long attribute timeout, so the kernel keeps answering ``stat`` of its root
    from the cache while ``ls`` (which must open it) already fails; the new mount starts right
    after ``ls`` failed and must still recognise the mount as stale.
    """
    mp = tmp_path / "mnt"
    options = [f"attr_timeout={attr_timeout}"] if attr_timeout else []
    crashed = Mount(agfs_server.url, mp, workdir=tmp_path, name="crashed", options=options)
    again = Mount(agfs_server.url, mp, workdir=tmp_path, name="again")
    try:
        crashed.start()
        os.stat(mp)
        crashed.kill()
        proc = run(["ls", str(mp)], check=False)
        assert b"Transport endpoint is not connected" in proc.stderr, proc.stderr
        assert is_stale(mp)
        if attr_timeout is None:

            def stat_errno() -> int | None:
                try:
                    os.stat(mp)
                except OSError as exc:
                    return exc.errno
                return None

            err = wait_until(stat_errno, 5, message="stat of the stale mountpoint to fail")
            assert err == errno.ENOTCONN
        again.start()
        assert os.path.isdir(mp / "memfs")
        text = (again.output() + again.log()).lower()
        assert "stale" in text or "not connected" in text or "warn" in text, again.describe()
    finally:
        again.unmount()
        crashed.unmount()
    assert not is_mounted(mp)


@pytest.mark.timeout(90)
def test_sigkill_right_after_mounting_always_ends_the_process(
    agfs_server, mountpoint: Path, tmp_path: Path
) -> None:
    """A mount killed the moment it appears dies at once. It used to list its own
    mountpoint to learn that the kernel was serving it; a kill while that request was in
    flight left the process unkillable (its thread waits, uninterruptibly, for an answer
    from itself) in about half the tries."""
    rounds = 8
    for attempt in range(rounds):
        proc = subprocess.Popen(
            [
                AGFS_FUSE,
                "mount",
                agfs_server.url,
                str(mountpoint),
                "-f",
                "-o",
                f"cache_dir={tmp_path / 'cache'}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # Polled tightly: the kill must come while the mount is still starting.
            wait_until(
                lambda: os.path.ismount(mountpoint), 20, interval=0.0005, message="the mount"
            )
            proc.kill()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for connection, where in fuse_connections():
                    if where == str(mountpoint):
                        abort_fuse_connection(connection)  # frees the stuck process
                pytest.fail(f"try {attempt + 1} of {rounds}: SIGKILL did not end the mount")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            force_unmount(mountpoint)
    assert not is_mounted(mountpoint)


# -- options ------------------------------------------------------------------------------


def test_root_uid_gid_options(agfs_server, make_mount) -> None:
    agfs_server.http.write("/memfs/rooted", b"under memfs")
    mount = make_mount(agfs_server.url, options=["root=/memfs", "uid=1234,gid=4321"])
    assert (mount.path / "rooted").read_bytes() == b"under memfs"
    st = os.stat(mount.path / "rooted")
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    (mount.path / "written-rooted").write_bytes(b"x")
    assert agfs_server.http.read("/memfs/written-rooted") == b"x"


def test_read_only(agfs_server, make_mount) -> None:
    agfs_server.http.write("/memfs/ro-file", b"readable")
    mount = make_mount(agfs_server.url, options=["ro"])
    assert (mount.path / "memfs" / "ro-file").read_bytes() == b"readable"
    with pytest.raises(OSError) as info:
        (mount.path / "memfs" / "ro-new").write_bytes(b"x")
    assert info.value.errno == errno.EROFS
    assert not agfs_server.http.exists("/memfs/ro-new")
    assert "ro" in mount_entry(mount.path)["options"].split(",")


def test_umask_and_timeouts_accepted(agfs_server, make_mount) -> None:
    agfs_server.http.write("/memfs/umask-file", b"x")
    agfs_server.http.chmod("/memfs/umask-file", 0o666)
    mount = make_mount(
        agfs_server.url,
        options=[
            "umask=077",
            "attr_timeout=0.5,entry_timeout=0.5,negative_timeout=0.5",
            "timeout=10",
            "noatime",
        ],
    )
    assert stat.S_IMODE(os.stat(mount.path / "memfs" / "umask-file").st_mode) == 0o600


# -- the server goes away -----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_server_down_is_not_enoent_and_does_not_hang(make_server, make_mount) -> None:
    server = make_server(localfs=False)
    server.http.write("/memfs/known", b"x")
    mount = make_mount(server.url, options=["timeout=3"])
    assert (mount.path / "memfs" / "known").read_bytes() == b"x"
    server.stop()
    start = time.monotonic()
    with pytest.raises(OSError) as info:
        os.stat(mount.path / "memfs" / "never-seen")
    assert info.value.errno != errno.ENOENT, "a down server was reported as ENOENT"
    proc = run(["ls", str(mount.path / "memfs" / "other-never-seen")], check=False, timeout=30)
    assert proc.returncode != 0
    assert b"No such file" not in proc.stderr, proc.stderr
    assert time.monotonic() - start < 20
    assert mount.alive()
