"""Permissions: ``ro``, ``umask``, ``uid``/``gid``, ``allow_other`` and a non-root mount.

Checked the way users see them: ``os.stat``, ``ls -l``, errno of failing writes, and other
users (uid 65534, through ``setpriv``) trying to get in.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.access.helpers import sh
from tests.support.mount import (
    FUSERMOUNT,
    force_unmount,
    is_mounted,
    mount_entry,
    pids_with_arg,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

NOBODY = 65534


def as_nobody(*argv: str, env: dict[str, str] | None = None) -> list[str]:
    base = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return base + ["env", "-i", *[f"{k}={v}" for k, v in (env or {}).items()], *argv]


def run_as_nobody(command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        as_nobody("sh", "-c", command, env=env), capture_output=True, text=True, timeout=30
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"as uid {NOBODY}: {command!r} exited {done.returncode}\n{done.stdout}{done.stderr}",
            pytrace=False,
        )
    return done


def test_read_only_mount_refuses_every_write(make_mount, server, remote_dir):
    server.http.write(f"{remote_dir}/keep.txt", b"read me\n")
    server.http.mkdir(f"{remote_dir}/dir")
    mount = make_mount(server.url, options=["ro"])
    assert "ro" in mount_entry(mount.path)["options"].split(",")
    local = mount.path / remote_dir.lstrip("/")

    assert (local / "keep.txt").read_bytes() == b"read me\n"
    assert sorted(os.listdir(local)) == ["dir", "keep.txt"]
    assert mount.stats()["url"] == server.url

    attempts = {
        "write existing": lambda: os.open(local / "keep.txt", os.O_RDWR),
        "append": lambda: os.open(local / "keep.txt", os.O_WRONLY | os.O_APPEND),
        "create": lambda: os.open(local / "new.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        "mkdir": lambda: os.mkdir(local / "newdir"),
        "unlink": lambda: os.unlink(local / "keep.txt"),
        "rmdir": lambda: os.rmdir(local / "dir"),
        "rename": lambda: os.rename(local / "keep.txt", local / "moved.txt"),
        "chmod": lambda: os.chmod(local / "keep.txt", 0o600),
        "truncate": lambda: os.truncate(local / "keep.txt", 0),
        "symlink": lambda: os.symlink("keep.txt", local / "link"),
        "utime": lambda: os.utime(local / "keep.txt", (1, 1)),
    }
    for what, attempt in attempts.items():
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS, f"{what}: {info.value!r}"
    done = sh(f"echo more >> {local / 'keep.txt'}", check=False)
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    # Nothing can be pending on it: `agfs-fuse sync` has nothing to wait for.
    synced = sh(f"{sys.executable} -m agfs_fuse sync {mount.path}", check=False)
    assert (synced.returncode, synced.stderr) == (0, "")

    assert server.http.read(f"{remote_dir}/keep.txt") == b"read me\n"
    assert server.http.names(remote_dir) == {"dir", "keep.txt"}


def test_umask_hides_permission_bits(make_mount, server, remote_dir):
    server.http.write(f"{remote_dir}/file.txt", b"x")
    server.http.chmod(f"{remote_dir}/file.txt", 0o644)
    server.http.mkdir(f"{remote_dir}/dir", 0o755)
    mount = make_mount(server.url, options=["umask=077"])
    local = mount.path / remote_dir.lstrip("/")

    assert stat.S_IMODE(os.stat(local / "file.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(local / "dir").st_mode) == 0o700
    lines = sh(f"ls -l {local}").stdout.splitlines()[1:]
    listing = {line.split()[-1]: line.split()[0] for line in lines}
    assert listing == {"dir": "drwx------", "file.txt": "-rw-------"}
    # the server's bits are unchanged: the umask is a view
    assert server.http.stat(f"{remote_dir}/file.txt")["mode"] & 0o777 == 0o644


def test_uid_and_gid_are_shown_for_every_file(make_mount, server, remote_dir):
    server.http.write(f"{remote_dir}/file.txt", b"x")
    mount = make_mount(server.url, options=["uid=1234,gid=2345"])
    local = mount.path / remote_dir.lstrip("/")
    (local / "made-here.txt").write_text("y")
    for name in ("file.txt", "made-here.txt"):
        info = os.stat(local / name)
        assert (info.st_uid, info.st_gid) == (1234, 2345), name
    assert (os.stat(local).st_uid, os.stat(local).st_gid) == (1234, 2345)
    for line in sh(f"ls -ln {local}").stdout.splitlines()[1:]:
        fields = line.split()
        assert fields[2:4] == ["1234", "2345"], line


def test_default_owner_is_the_mounting_user(make_mount, server, remote_dir):
    server.http.write(f"{remote_dir}/file.txt", b"x")
    mount = make_mount(server.url)
    info = os.stat(mount.path / remote_dir.lstrip("/") / "file.txt")
    assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())


def test_allow_other_turns_on_default_permissions(make_mount, server, remote_dir):
    server.http.write(f"{remote_dir}/public.txt", b"everyone\n")
    server.http.chmod(f"{remote_dir}/public.txt", 0o644)
    server.http.write(f"{remote_dir}/secret.txt", b"root only\n")
    server.http.chmod(f"{remote_dir}/secret.txt", 0o600)

    private = make_mount(server.url)
    private_file = private.path / remote_dir.lstrip("/") / "public.txt"
    denied = run_as_nobody(f"cat {private_file}", check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr

    mount = make_mount(server.url, options=["allow_other"])
    options = mount_entry(mount.path)["options"].split(",")
    assert "allow_other" in options and "default_permissions" in options
    assert "default_permissions,allow_other" in mount_entry(mount.path)["options"]
    local = mount.path / remote_dir.lstrip("/")
    assert run_as_nobody(f"cat {local / 'public.txt'}").stdout == "everyone\n"
    # the kernel checks the permission bits: uid 65534 may not read a 0600 file of uid 0
    refused = run_as_nobody(f"cat {local / 'secret.txt'}", check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    refused = run_as_nobody(f"echo x >> {local / 'public.txt'}", check=False)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert (local / "secret.txt").read_text() == "root only\n"  # root still can
    assert server.http.read(f"{remote_dir}/public.txt") == b"everyone\n"


def python_for_nobody(scratch: Path) -> tuple[str, dict[str, str]]:
    """An interpreter uid 65534 can run with this repository's packages, and its env.

    The venv's interpreter and the checkout may live where other users cannot go (a pyenv
    build under /root, a clone in a 0700 mktemp directory), so the system Python of the
    same version runs a world-readable copy of the package and of the venv's
    site-packages, made in ``scratch``. Fails (never skips) with what was tried.
    """
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    repo = Path(__file__).resolve().parents[2]
    copy = scratch / "python-for-nobody"
    skip = shutil.ignore_patterns(
        "__pycache__", "ruff*", "pip", "pip-*", "_pytest", "pytest*", "setuptools*",
        "__editable__*", "*.pth",
    )  # fmt: skip
    shutil.copytree(site_packages, copy / "site", ignore=skip)
    shutil.copytree(repo / "agfs_fuse", copy / "src" / "agfs_fuse", ignore=skip)
    for directory, _, files in os.walk(scratch):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    pythonpath = {"PYTHONPATH": f"{copy / 'src'}:{copy / 'site'}"}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [(f"/usr/bin/{version}", pythonpath), (f"/usr/local/bin/{version}", pythonpath)]
    tried = []
    for python, env in candidates:
        # env(1) execs after setpriv dropped its capabilities: a real unprivileged exec
        probe = subprocess.run(
            as_nobody(python, "-c", "import agfs_fuse, pyfuse3, trio, httpx", env=env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if probe.returncode == 0:
            return python, env
        tried.append(f"{python} {env}: {probe.stderr.strip()[-300:]}")
    pytest.fail(f"no Python uid {NOBODY} can run agfs_fuse with:\n" + "\n".join(tried))


@pytest.fixture
def dev_fuse_for_users() -> Iterator[None]:
    """/dev/fuse as udev leaves it on a standard system (0666), restored afterwards.

    libfuse opens /dev/fuse in the unprivileged process before it falls back to the setuid
    fusermount3; Debian's udev rule (50-udev-default.rules: KERNEL=="fuse", MODE="0666")
    makes that possible. Machines without udev (this test VM) leave it 0600.
    """
    before = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    if before & 0o006 != 0o006:
        os.chmod("/dev/fuse", before | 0o666)
    try:
        yield
    finally:
        if stat.S_IMODE(os.stat("/dev/fuse").st_mode) != before:
            os.chmod("/dev/fuse", before)


@pytest.fixture
def nobody_home(workdir: Path) -> Path:
    """A directory tree owned by uid 65534: mountpoint, HOME and XDG cache."""
    home = workdir / "nobody"
    for path in (home, home / "mnt", home / "cache"):
        path.mkdir()
        os.chown(path, NOBODY, NOBODY)
    return home


def test_non_root_user_mounts_and_unmounts(dev_fuse_for_users, nobody_home, server, remote_dir):
    mp = nobody_home / "mnt"
    log = nobody_home / "mount.log"
    env = {
        "HOME": str(nobody_home),
        "XDG_CACHE_HOME": str(nobody_home / "cache"),
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
    }
    python, extra = python_for_nobody(nobody_home.parent)
    env.update(extra)
    command = as_nobody(
        python, "-m", "agfs_fuse", "mount", server.url, str(mp),
        "--log-file", str(log), env=env,
    )  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        logged = log.read_text() if log.exists() else ""
        assert done.returncode == 0, f"{done.stderr}\nlog:\n{logged}"
        entry = mount_entry(mp)
        assert entry is not None and entry["fstype"] == "fuse.agfs"
        assert f"user_id={NOBODY}" in entry["options"].split(",")
        (pid,) = pids_with_arg(str(mp))
        assert os.stat(f"/proc/{pid}").st_uid == NOBODY

        local = mp / remote_dir.lstrip("/")
        made = run_as_nobody(
            f"echo from nobody > {local}/mine.txt && mkdir {local}/sub && "
            f"stat -c '%u %g %n' {local}/mine.txt {local}/sub"
        )
        assert made.stdout.split("\n")[:2] == [
            f"{NOBODY} {NOBODY} {local}/mine.txt",
            f"{NOBODY} {NOBODY} {local}/sub",
        ]
        listing = run_as_nobody(f"ls -ln {local}").stdout.splitlines()[1:]
        assert listing and all(line.split()[2:4] == [str(NOBODY)] * 2 for line in listing)
        assert server.http.read(f"{remote_dir}/mine.txt") == b"from nobody\n"
        # the cache went where XDG_CACHE_HOME points
        assert (nobody_home / "cache" / "agfs-fuse").is_dir()
        # without allow_other nobody else gets in, root included
        with pytest.raises(PermissionError):
            os.listdir(local)

        unmounted = run_as_nobody(f"{FUSERMOUNT} -u {mp}")
        assert unmounted.returncode == 0
        assert not is_mounted(mp)
        wait_until(lambda: not pids_with_arg(str(mp)), timeout=15, message="the mount to exit")
        assert "mounted" in log.read_text()
    finally:
        force_unmount(mp)
        for pid in pids_with_arg(str(mp)):
            os.kill(pid, 9)
