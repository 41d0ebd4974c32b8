"""The systemd unit: ``systemd-analyze verify``, its command lines, and the notify protocol.

systemd is not PID 1 here, so the unit's pieces are checked one by one: verify in an
offline root; ExecStart/ExecStopPost expanded the way systemd expands them (``${VAR}`` is
one word, ``$$`` a literal ``$``) and run for real; ``$NOTIFY_SOCKET`` a datagram socket
the test reads, as systemd would.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from agfs_fuse.federation_config import load_config
from tests.support.mount import is_mounted, is_stale, mount_entry, wait_until

from .conftest import Server

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "agfs-fuse@.service"
EXAMPLE_ENV = ROOT / "systemd" / "example.env"
FEDERATION_UNIT = ROOT / "systemd" / "agfs-fuse-federation@.service"
FEDERATION_ENV = ROOT / "systemd" / "example.federation.env"
FEDERATION_CONFIG = ROOT / "systemd" / "example.yaml"
INSTANCE = "demo"
SYSTEM_UNITS = ("/usr/lib/systemd/system", "/lib/systemd/system")


def unit_settings(section: str, unit: Path = UNIT) -> list[tuple[str, str]]:
    """(key, value) pairs of one section of the unit, in order."""
    pairs: list[tuple[str, str]] = []
    current = None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def unit_value(key: str, section: str = "Service", unit: Path = UNIT) -> str:
    values = [v for k, v in unit_settings(section, unit) if k == key]
    assert len(values) == 1, f"{key}= should appear once in [{section}], found {values}"
    return values[0]


def read_env_file(path: Path) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it (KEY=VALUE lines, optional quotes)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        words = shlex.split(value)
        env[key.strip()] = " ".join(words)
    return env


def expand_command(value: str, env: dict[str, str]) -> list[str]:
    """An Exec*= line as systemd runs it: prefix characters dropped, ``${VAR}`` words
    replaced by exactly one argument, ``$$`` turned into ``$``."""
    value = value.lstrip("-@:+!")
    argv = []
    for word in shlex.split(value):
        whole = re.fullmatch(r"\$\{(\w+)\}", word)
        if whole:
            argv.append(env.get(whole.group(1), ""))
        else:
            argv.append(word.replace("$$", "$"))
    return argv


def with_env(path: Path, example: Path = EXAMPLE_ENV, **values: str) -> Path:
    """A copy of ``example`` at ``path`` with some values replaced (keys must exist)."""
    text = example.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", text)
        assert count == 1, f"example.env has no {key}= line"
    path.write_text(text)
    return path


# -- static checks -------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("unit", "example", "env_name"),
    [
        (UNIT, EXAMPLE_ENV, f"{INSTANCE}.env"),
        (FEDERATION_UNIT, FEDERATION_ENV, f"{INSTANCE}.federation.env"),
    ],
    ids=["single", "federation"],
)
def test_systemd_analyze_verify(tmp_path: Path, unit: Path, example: Path, env_name: str) -> None:
    """`systemd-analyze verify` on the instantiated unit passes with no warning at all.

    Offline and without PID 1, verify still needs three things, given here in a scratch
    root (--root): the unit in a unit directory (instantiated by name), the standard
    targets it depends on (a copy of the system's unit directory), and every command of
    an Exec*= line present and executable (stubs: this machine need not have run
    install-systemd). --man=no: it would otherwise run man(1) for Documentation=.
    """
    root = tmp_path / "root"
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    shutil.copy(unit, unit_dir / unit.name)
    system_units = next(Path(p) for p in SYSTEM_UNITS if Path(p, "sysinit.target").exists())
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    env_dir = root / "etc/agfs-fuse"
    env_dir.mkdir(parents=True)
    shutil.copy(example, env_dir / env_name)
    commands = [v for k, v in unit_settings("Service", unit) if k.startswith("Exec")]
    assert commands
    for value in commands:
        program = shlex.split(value.lstrip("-@:+!"))[0]
        stub = root / program.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    instance = unit.name.replace("@.", f"@{INSTANCE}.")
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            f"--root={root}",
            "--man=no",
            "--recursive-errors=yes",
            instance,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr

    # The same verify does catch a broken unit (so the pass above means something).
    broken = (unit_dir / unit.name).read_text().replace("Type=notify", "Typo=notify")
    (unit_dir / unit.name).write_text(broken)
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            f"--root={root}",
            "--man=no",
            "--recursive-errors=yes",
            instance,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode != 0 and "Typo" in done.stderr


def test_unit_settings() -> None:
    """What the issue asks of the unit, and the real commands it runs exist here."""
    assert unit_value("Type") == "notify"
    assert unit_value("NotifyAccess") == "main"
    assert unit_value("EnvironmentFile") == "/etc/agfs-fuse/%i.env"
    assert unit_value("Restart") == "on-failure"
    assert int(unit_value("TimeoutStopSec")) > 60  # the 60 s upload grace on SIGTERM
    unit = dict(unit_settings("Unit"))
    assert "network-online.target" in unit["Wants"] and "network-online.target" in unit["After"]
    assert unit_value("WantedBy", "Install") == "remote-fs.target"
    start = expand_command(unit_value("ExecStart"), {})
    assert start[:4] == ["/usr/local/bin/agfs-fuse", "mount", "-f", "--systemd"]
    assert "${AGFS_URL}" in unit_value("ExecStart")
    for value in (unit_value("ExecStopPost"), unit_value("ExecReload")):
        program = expand_command(value, {})[0]
        assert os.access(program, os.X_OK), program
    for tool in ("findmnt", "fusermount3"):
        assert tool in unit_value("ExecStopPost") and shutil.which(tool)


def test_example_env_is_complete() -> None:
    env = read_env_file(EXAMPLE_ENV)
    assert set(env) == {"AGFS_URL", "AGFS_MOUNTPOINT", "AGFS_OPTIONS"}
    assert env["AGFS_URL"].startswith("http") and env["AGFS_MOUNTPOINT"].startswith("/")


# -- the notify protocol, with a real $NOTIFY_SOCKET ---------------------------------------


class NotifySocket:
    """The datagram socket systemd would listen on; collects what the mount says."""

    def __init__(self, path: Path) -> None:
        assert len(os.fsencode(path)) < 100, f"socket path too long for AF_UNIX: {path}"
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.messages: list[str] = []

    def fields(self) -> list[str]:
        return [f for message in self.messages for f in message.split("\n") if f]

    def wait_for(
        self, field: str, proc: subprocess.Popen[bytes], timeout: float, log: Path
    ) -> None:
        """Receive until ``field`` arrives; fail if the process exits first (unless the
        field is already queued) or the deadline passes."""
        deadline = time.monotonic() + timeout
        while field not in self.fields():
            left = deadline - time.monotonic()
            assert left > 0, f"no {field} within {timeout}s; got {self.messages}\n{log.read_text()}"
            self.sock.settimeout(min(left, 0.25))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, (
                    f"the mount exited ({proc.returncode}) before {field}; got {self.messages}\n"
                    f"{log.read_text()}"
                )

    def close(self) -> None:
        self.sock.close()


def _notify_run(
    command: list[str],
    server: Server,
    mountpoint: Path,
    workdir: Path,
    *,
    source: str | None = None,
    through: str = "memfs",
) -> None:
    """Start ``command`` under a fake systemd, check the notify sequence, stop it with
    SIGTERM like `systemctl stop` does. ``source``: what /proc/mounts shows (default the
    server's URL); ``through``: the mount's directory that is the server's /memfs."""
    notify = NotifySocket(workdir / "notify")
    log = workdir / "mount.log"
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = os.fspath(notify.path)
    env["XDG_CACHE_HOME"] = os.fspath(workdir / "cache")  # not /var/cache for root
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        notify.wait_for("READY=1", proc, timeout=20, log=log)
        # READY=1 means usable: the mountpoint answers right now, no waiting.
        assert set(os.listdir(mountpoint)) >= {through}
        entry = mount_entry(mountpoint)
        assert entry is not None and entry["fstype"] == "fuse.agfs"
        assert entry["source"] == (server.url if source is None else source)
        before_ready = notify.fields()[: notify.fields().index("READY=1")]
        assert any(f.startswith("STATUS=") for f in before_ready), notify.messages
        assert "STOPPING=1" not in notify.fields()

        # Files work through it, then `systemctl stop` (SIGTERM).
        (mountpoint / through / "via-unit.txt").write_text("hello from systemd\n")
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", proc, timeout=20, log=log)
        assert proc.wait(timeout=30) == 0, log.read_text()
        assert not is_mounted(mountpoint)
        assert server.http.read("/memfs/via-unit.txt") == b"hello from systemd\n"
        server.http.delete("/memfs/via-unit.txt")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


@pytest.mark.timeout(60)
def test_notify_sequence(server: Server, mountpoint: Path, workdir: Path) -> None:
    """`agfs-fuse mount -f` with $NOTIFY_SOCKET: STATUS= lines, READY=1 only once the
    mountpoint answers, STOPPING=1 on SIGTERM, exit 0, mount gone."""
    command = [sys.executable, "-m", "agfs_fuse", "mount", server.url, str(mountpoint), "-f"]
    _notify_run(command, server, mountpoint, workdir)


@pytest.mark.timeout(60)
def test_unit_execstart_runs(server: Server, mountpoint: Path, workdir: Path) -> None:
    """The unit's own ExecStart, expanded from an env file made from example.env with an
    empty AGFS_OPTIONS (so `-o ""`), goes through the same notify sequence."""
    env_file = with_env(
        workdir / f"{INSTANCE}.env",
        AGFS_URL=server.url,
        AGFS_MOUNTPOINT=str(mountpoint),
        AGFS_OPTIONS="",
    )
    argv = expand_command(unit_value("ExecStart"), read_env_file(env_file))
    assert argv[0] == "/usr/local/bin/agfs-fuse"
    assert "" in argv  # the empty option list stays one (empty) argument
    _notify_run([sys.executable, "-m", "agfs_fuse", *argv[1:]], server, mountpoint, workdir)


@pytest.mark.timeout(60)
def test_execstoppost_clears_a_dead_mount_only(
    server: Server, mountpoint: Path, workdir: Path, mount_env: dict[str, str]
) -> None:
    """ExecStopPost lazily unmounts a mount whose process died (SIGKILL), and leaves a
    mountpoint alone when what is mounted there is not ours."""
    env = {"AGFS_MOUNTPOINT": str(mountpoint)}
    stop_post = expand_command(unit_value("ExecStopPost"), env)
    assert "$AGFS_MOUNTPOINT" in stop_post[-1]  # sh reads it from the environment

    cache = workdir / "cache"
    command = [
        sys.executable,
        "-m",
        "agfs_fuse",
        "mount",
        server.url,
        str(mountpoint),
        "-f",
        "-o",
        f"cache_dir={cache}",
    ]
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: os.path.ismount(mountpoint), timeout=20, message="the mount")
        proc.kill()
        proc.wait(timeout=10)
        wait_until(lambda: is_stale(mountpoint), timeout=10, message="a stale mount")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = subprocess.run(
        stop_post,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not is_mounted(mountpoint)

    # Nothing mounted (after a clean stop): nothing to do, success.
    done = subprocess.run(stop_post, env={**os.environ, **env}, capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr

    # Not ours (a tmpfs): left mounted.
    other = workdir / "other"
    other.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "agfs-test", str(other)], env=mount_env, check=True, timeout=10
    )
    try:
        done = subprocess.run(
            stop_post,
            env={**os.environ, "AGFS_MOUNTPOINT": str(other)},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert is_mounted(other)
        assert unit_value("ExecStopPost").startswith("-")  # a failure never fails the stop
    finally:
        subprocess.run(["umount", str(other)], env=mount_env, check=False, timeout=10)
    assert not is_mounted(other)


# -- the federation unit ---------------------------------------------------------------------

SAME_IN_BOTH_UNITS = (
    "Type",
    "NotifyAccess",
    "ExecReload",
    "ExecStopPost",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "CacheDirectory",
)


def test_federation_unit_settings() -> None:
    """The federation unit runs like the single-server one (notify, restart, stop grace,
    the ExecStopPost safety net, remote-fs.target); only its source and env file differ."""
    for key in SAME_IN_BOTH_UNITS:
        assert unit_value(key, unit=FEDERATION_UNIT) == unit_value(key), key
    for key in ("Wants", "After", "Before"):
        assert unit_value(key, "Unit", FEDERATION_UNIT) == unit_value(key, "Unit"), key
    assert unit_value("WantedBy", "Install", FEDERATION_UNIT) == "remote-fs.target"
    assert unit_value("EnvironmentFile", unit=FEDERATION_UNIT) == (
        "/etc/agfs-fuse/%i.federation.env"
    )
    start = expand_command(unit_value("ExecStart", unit=FEDERATION_UNIT), {})
    assert start[:4] == ["/usr/local/bin/agfs-fuse", "mount", "-f", "--systemd"]
    assert start[4:6] == ["-c", "/etc/agfs-fuse/%i.yaml"]


def test_example_federation_files_are_complete_and_valid() -> None:
    env = read_env_file(FEDERATION_ENV)
    assert set(env) == {"AGFS_MOUNTPOINT", "AGFS_OPTIONS"}
    assert env["AGFS_MOUNTPOINT"].startswith("/")
    federation = load_config(FEDERATION_CONFIG, [env["AGFS_OPTIONS"]])
    assert len(federation.backends) >= 2
    assert any(b.timeouts.attr == 0 for b in federation.backends)  # shows per-backend ones


@pytest.mark.timeout(60)
def test_federation_unit_execstart_runs(server: Server, mountpoint: Path, workdir: Path) -> None:
    """The federation unit's own ExecStart, with its config file (``/etc/agfs-fuse/%i.yaml``
    replaced by a scratch one naming the test's server as /dc1) and an env file made from
    the example: the same notify sequence, with the config file as the mount's source."""
    config = workdir / f"{INSTANCE}.yaml"
    config.write_text(yaml.safe_dump({"backends": {"/dc1": {"url": server.url, "root": "/memfs"}}}))
    env_file = with_env(
        workdir / f"{INSTANCE}.federation.env",
        FEDERATION_ENV,
        AGFS_MOUNTPOINT=str(mountpoint),
        AGFS_OPTIONS="",
    )
    argv = expand_command(unit_value("ExecStart", unit=FEDERATION_UNIT), read_env_file(env_file))
    assert argv.count("/etc/agfs-fuse/%i.yaml") == 1
    argv = [str(config) if a == "/etc/agfs-fuse/%i.yaml" else a for a in argv]
    command = [sys.executable, "-m", "agfs_fuse", *argv[1:]]
    _notify_run(command, server, mountpoint, workdir, source=str(config), through="dc1")
