"""``mount.fuse.agfs``: called directly, through ``mount -t fuse.agfs``, and from fstab.

mount(8) (util-linux 2.38, libmount) runs ``/sbin/mount.fuse.agfs SOURCE MOUNTPOINT
[-s] [-f] [-n] [-v] -o OPTS``: verified by a probe helper logging its argv (see the
module docstring of agfs_fuse.mount_helper). The fstab tests use a scratch fstab
(``mount -T FILE``), never /etc/fstab.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agfs_fuse.mount_helper import EX_FAIL, EX_USAGE
from tests.support.mount import is_mounted, mount_entry, pids_with_arg, wait_until
from tests.support.server import free_port

from .conftest import Server

TIMEOUT = 30


def run(
    cmd: list[str | os.PathLike[str]],
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def mount_count(mountpoint: Path) -> int:
    """How many /proc/mounts entries sit on ``mountpoint`` (stacked mounts count twice)."""
    target = os.path.realpath(mountpoint)
    with open("/proc/self/mounts") as mounts:
        return sum(1 for line in mounts if line.split()[1] == target)


def assert_usable(server: Server, mountpoint: Path, name: str) -> None:
    """The mount answers at once (the command returned only when usable), files written
    through it reach the server, and /proc/mounts shows the URL as given."""
    entry = mount_entry(mountpoint)
    assert entry is not None, f"nothing mounted on {mountpoint}"
    assert entry["fstype"] == "fuse.agfs" and entry["source"] == server.url
    assert "memfs" in os.listdir(mountpoint)
    path = mountpoint / "memfs" / name
    path.write_bytes(b"mounted by mount(8)\n")
    assert path.read_bytes() == b"mounted by mount(8)\n"
    assert server.http.read(f"/memfs/{name}") == b"mounted by mount(8)\n"
    path.unlink()


def assert_gone(mountpoint: Path) -> None:
    """Unmounted, and the mount process it started has exited by itself."""
    assert not is_mounted(mountpoint)
    wait_until(
        lambda: not pids_with_arg(os.fspath(mountpoint)),
        timeout=15,
        message="the mount process to exit after the unmount",
    )


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/api/v1"


# -- through mount(8) ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_mount_t_fuse_agfs(
    server: Server, mountpoint: Path, workdir: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    """`mount -t fuse.agfs URL MP -o OPTS` works; `umount MP` unmounts and the process ends."""
    opts = f"_netdev,nofail,attr_timeout=2,cache_dir={workdir / 'cache'}"
    done = run(["mount", "-t", "fuse.agfs", server.url, mountpoint, "-o", opts], mount_env)
    assert done.returncode == 0, done.stderr
    assert_usable(server, mountpoint, "mount-t.txt")
    # Options reached the mount process (fstab-only ones dropped on the way).
    [pid] = pids_with_arg(os.fspath(mountpoint))
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert f"attr_timeout=2,cache_dir={workdir / 'cache'}" in argv
    # Detached from the caller's directory (which it would otherwise keep busy).
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    done = run(["umount", mountpoint], mount_env)
    assert done.returncode == 0, done.stderr
    assert_gone(mountpoint)


@pytest.mark.timeout(60)
def test_mount_t_fails_cleanly(
    mountpoint: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    """A server that is down: mount(8) exits with the helper's "mount failure" status
    and one line saying why; nothing is mounted, no process is left."""
    done = run(["mount", "-t", "fuse.agfs", closed_port_url(), mountpoint], mount_env)
    assert done.returncode == EX_FAIL, done
    assert "cannot reach AGFS server" in done.stderr and len(done.stderr.splitlines()) == 1
    assert_gone(mountpoint)


@pytest.mark.timeout(60)
def test_fstab_line(
    server: Server, mountpoint: Path, workdir: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    """The issue's fstab line, with fstab-only options (`_netdev`, `noauto`, `nofail`,
    `x-systemd.*`, `comment=`), mounted with `mount MOUNTPOINT`."""
    fstab = workdir / "fstab"
    options = (
        f"_netdev,noauto,nofail,x-systemd.requires=network-online.target,"
        f"x-systemd.mount-timeout=30,comment=agfs,defaults,allow_other,"
        f"cache_dir={workdir / 'cache'}"
    )
    fstab.write_text(f"# scratch fstab\n{server.url} {mountpoint} fuse.agfs {options} 0 0\n")
    done = run(["mount", "-T", fstab, mountpoint], mount_env)
    assert done.returncode == 0, done.stderr
    assert_usable(server, mountpoint, "fstab.txt")
    assert "allow_other" in mount_entry(mountpoint)["options"]  # type: ignore[index]
    # noauto: `mount -a` leaves it out (nothing more is mounted).
    done = run(["mount", "-a", "-T", fstab], mount_env)
    assert done.returncode == 0, done.stderr
    assert mount_count(mountpoint) == 1
    done = run(["umount", mountpoint], mount_env)
    assert done.returncode == 0, done.stderr
    assert_gone(mountpoint)


@pytest.mark.timeout(60)
def test_mount_a_twice_mounts_once(
    server: Server, mountpoint: Path, workdir: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    """`mount -a` recognises the mount by its source (the URL as given) and mount point,
    so running it again does not stack a second mount."""
    fstab = workdir / "fstab"
    fstab.write_text(
        f"{server.url} {mountpoint} fuse.agfs _netdev,nofail,cache_dir={workdir / 'cache'} 0 0\n"
    )
    for _ in range(2):
        done = run(["mount", "-a", "-T", fstab], mount_env)
        assert done.returncode == 0, done.stderr
        assert mount_count(mountpoint) == 1
    assert len(pids_with_arg(os.fspath(mountpoint))) == 1
    assert_usable(server, mountpoint, "mount-a.txt")
    done = run(["umount", mountpoint], mount_env)
    assert done.returncode == 0, done.stderr
    assert_gone(mountpoint)


# -- mount.fuse.agfs called directly -------------------------------------------------------------


@pytest.mark.timeout(30)
def test_fake_mounts_nothing(server: Server, mountpoint: Path, helper: Path) -> None:
    """-f (fake) checks everything and exits 0 without mounting or starting anything;
    -v says what it would run."""
    done = run([helper, server.url, mountpoint, "-f", "-n", "-v", "-o", "rw,_netdev,ro"])
    assert done.returncode == 0, done.stderr
    assert "would run: agfs-fuse mount" in done.stdout and "-o ro" in done.stdout
    assert not is_mounted(mountpoint) and not pids_with_arg(os.fspath(mountpoint))
    # Fake still validates: a bad option fails it.
    done = run([helper, server.url, mountpoint, "-f", "-o", "attr_timeout=soon"])
    assert done.returncode == EX_USAGE and "attr_timeout" in done.stderr


@pytest.mark.timeout(30)
def test_sloppy_ignores_unknown_options(
    server: Server, mountpoint: Path, workdir: Path, helper: Path
) -> None:
    """-s drops options agfs-fuse does not know and mounts; -v prints the command; glued
    `-oOPTS` and repeated -o both work."""
    done = run(
        [
            helper,
            server.url,
            mountpoint,
            "-s",
            "-v",
            "-onot_an_agfs_option,users",
            "-o",
            f"frob=1,cache_dir={workdir / 'cache'}",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert "running: agfs-fuse mount" in done.stdout and "frob" not in done.stdout
    assert_usable(server, mountpoint, "sloppy.txt")
    done = run(["fusermount3", "-u", mountpoint])
    assert done.returncode == 0, done.stderr
    assert_gone(mountpoint)


@pytest.mark.timeout(30)
def test_unknown_option_fails_without_sloppy(
    server: Server, mountpoint: Path, helper: Path
) -> None:
    done = run([helper, server.url, mountpoint, "-o", "allow_other,not_an_agfs_option"])
    assert done.returncode == EX_USAGE
    assert done.stderr.startswith(
        "mount.fuse.agfs: error: unknown mount option 'not_an_agfs_option'"
    )
    assert len(done.stderr.splitlines()) == 1
    assert not is_mounted(mountpoint) and not pids_with_arg(os.fspath(mountpoint))


@pytest.mark.timeout(30)
def test_unreachable_server_fails(mountpoint: Path, helper: Path) -> None:
    done = run([helper, closed_port_url(), mountpoint])
    assert done.returncode == EX_FAIL
    assert "cannot reach AGFS server" in done.stderr and len(done.stderr.splitlines()) == 1
    assert_gone(mountpoint)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://example/api/v1", "{mp}"], "must start with http:// or https://"),
        (["http://127.0.0.1:1", "{mp}/missing"], "does not exist"),
        (["http://127.0.0.1:1", "{mp}", "-t", "fuse.sshfs"], "only mounts fuse.agfs"),
        (["http://127.0.0.1:1", "{mp}", "-o", "root=memfs"], "absolute remote path"),
        (["http://127.0.0.1:1", "{mp}", "-N", "/proc/1/ns/mnt"], "not supported"),
        (["http://127.0.0.1:1"], "required: MOUNTPOINT"),
    ],
)
def test_bad_invocations(args: list[str], message: str, mountpoint: Path, helper: Path) -> None:
    """Usage errors exit 1 (mount(8)'s "incorrect invocation") with one line, and never
    touch the server."""
    done = run([helper, *(a.format(mp=mountpoint) for a in args)])
    assert done.returncode == EX_USAGE
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert not is_mounted(mountpoint)


# -- a federation config file as SOURCE ------------------------------------------------------


def write_config(path: Path, server: Server, mode: int = 0o600, **backend: object) -> Path:
    """A federation config with the test's server as /dc1 (its /memfs), chmod ``mode``."""
    settings = {"url": server.url, "root": "/memfs", **backend}
    path.write_text(yaml.safe_dump({"backends": {"/dc1": settings}}))
    path.chmod(mode)
    return path


def assert_federation_usable(server: Server, mountpoint: Path, config: Path, name: str) -> None:
    entry = mount_entry(mountpoint)
    assert entry is not None, f"nothing mounted on {mountpoint}"
    assert entry["fstype"] == "fuse.agfs" and entry["source"] == str(config)
    assert sorted(os.listdir(mountpoint)) == ["dc1", "reload"]
    path = mountpoint / "dc1" / name
    path.write_bytes(b"a federation mounted by mount(8)\n")
    assert server.http.read(f"/memfs/{name}") == b"a federation mounted by mount(8)\n"
    path.unlink()


@pytest.mark.timeout(60)
def test_mount_t_with_a_config_file_mounts_its_federation(
    server: Server, mountpoint: Path, workdir: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    """`mount -t fuse.agfs /etc/.../NAME.yaml MP` is `agfs-fuse mount -c NAME.yaml MP`,
    with the -o options passed on; `umount` unmounts it and the process ends."""
    config = write_config(workdir / "fed.yaml", server)
    opts = f"_netdev,attr_timeout=2,cache_dir={workdir / 'cache'}"
    done = run(["mount", "-t", "fuse.agfs", config, mountpoint, "-o", opts], mount_env)
    assert done.returncode == 0, done.stderr
    assert_federation_usable(server, mountpoint, config, "fed-mount-t.txt")
    [pid] = pids_with_arg(os.fspath(mountpoint))
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert argv[argv.index("-c") + 1] == str(config)
    assert f"attr_timeout=2,cache_dir={workdir / 'cache'}" in argv
    done = run(["umount", mountpoint], mount_env)
    assert done.returncode == 0, done.stderr
    assert_gone(mountpoint)


@pytest.mark.timeout(60)
def test_fstab_line_with_a_config_file_and_mount_a_twice(
    server: Server, mountpoint: Path, workdir: Path, sbin_helper: Path, mount_env: dict[str, str]
) -> None:
    """An fstab line whose source is a config file: `mount -a` mounts it once, and again
    recognises it by that source (no second, stacked mount)."""
    config = write_config(workdir / "fed.yaml", server)
    fstab = workdir / "fstab"
    fstab.write_text(
        f"{config} {mountpoint} fuse.agfs _netdev,nofail,x-systemd.automount,"
        f"cache_dir={workdir / 'cache'} 0 0\n"
    )
    for _ in range(2):
        done = run(["mount", "-a", "-T", fstab], mount_env)
        assert done.returncode == 0, done.stderr
        assert mount_count(mountpoint) == 1
    assert len(pids_with_arg(os.fspath(mountpoint))) == 1
    assert_federation_usable(server, mountpoint, config, "fed-fstab.txt")
    done = run(["umount", mountpoint], mount_env)
    assert done.returncode == 0, done.stderr
    assert_gone(mountpoint)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backends: {/dc1: {url: ftp://h}}\n", "must start with http:// or https://"),
        ("backends: {/dc1: {url: 'http://h:1', attr_timout: 1}}\n", "unknown setting"),
        ("backends: [\n", "not valid YAML"),
    ],
)
def test_a_bad_config_file_is_a_usage_error_before_anything_runs(
    text: str, message: str, mountpoint: Path, workdir: Path, helper: Path
) -> None:
    config = workdir / "bad.yaml"
    config.write_text(text)
    done = run([helper, config, mountpoint])
    assert done.returncode == EX_USAGE
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert not is_mounted(mountpoint) and not pids_with_arg(os.fspath(mountpoint))
    missing = run([helper, workdir / "missing.yaml", mountpoint])
    assert missing.returncode == EX_USAGE and "cannot read config file" in missing.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("via", ["agfs-fuse", "helper"])
def test_a_config_file_holding_tokens_that_others_can_read_is_warned_about(
    via: str, server: Server, mountpoint: Path, workdir: Path, helper: Path
) -> None:
    """A config file with a backend's token: a warning (one line, naming the file and its
    mode, never the token) when its group or others can read it, from `agfs-fuse mount -c`
    and from the helper alike; the mount works either way. chmod 600: no warning."""
    token = "fed-secret-t0ken"

    def mount(config: Path) -> subprocess.CompletedProcess[str]:
        options = f"cache_dir={workdir / 'cache'}"
        if via == "helper":
            return run([helper, config, mountpoint, "-o", options])
        agfs = [sys.executable, "-m", "agfs_fuse", "mount", "-c", config, mountpoint]
        return run([*agfs, "-o", options])

    shared = write_config(workdir / "shared.yaml", server, 0o644, token=token)
    done = mount(shared)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "chmod 600" in line]
    assert len(warnings) == 1, done.stderr
    assert f"config file {shared}, which holds tokens," in warnings[0]
    assert "(mode 0644)" in warnings[0] and token not in done.stderr
    assert_federation_usable(server, mountpoint, shared, f"warned-{via}.txt")
    assert run(["fusermount3", "-u", mountpoint]).returncode == 0
    assert_gone(mountpoint)

    private = write_config(workdir / "private.yaml", server, 0o600, token=token)
    done = mount(private)
    assert done.returncode == 0, done.stderr
    assert "chmod 600" not in done.stderr and token not in done.stderr
    assert_federation_usable(server, mountpoint, private, f"quiet-{via}.txt")
    assert run(["fusermount3", "-u", mountpoint]).returncode == 0
    assert_gone(mountpoint)
