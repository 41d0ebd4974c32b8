"""``scripts/install-systemd.sh``, run for real into a scratch directory (never into /opt,
/sbin, /usr/local/bin or /etc: every target directory is overridden), twice, to show it
installs a working, non-editable copy and is idempotent."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install-systemd.sh"


def test_script_syntax() -> None:
    done = subprocess.run(["bash", "-n", SCRIPT], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(240)  # builds a venv with pip: ~10 s with a warm pip cache
def test_install_into_scratch_root(tmp_path: Path) -> None:
    dirs = {
        "AGFS_PREFIX": tmp_path / "opt/agfs-fuse",
        "AGFS_BINDIR": tmp_path / "usr/local/bin",
        "AGFS_SBINDIR": tmp_path / "sbin",
        "AGFS_UNITDIR": tmp_path / "etc/systemd/system",
        "AGFS_CONFDIR": tmp_path / "etc/agfs-fuse",
    }
    env = {**os.environ, **{k: os.fspath(v) for k, v in dirs.items()}}
    venv = dirs["AGFS_PREFIX"] / "venv"
    build_leftovers = ("build", "dist", "agfs_fuse.egg-info")
    before = {name: (ROOT / name).exists() for name in build_leftovers}
    for _ in range(2):  # idempotent: the second run upgrades in place
        done = subprocess.run(
            ["bash", SCRIPT], env=env, capture_output=True, text=True, timeout=200, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "systemctl enable --now agfs-fuse@NAME" in done.stdout
        assert "skipped systemctl daemon-reload" in done.stdout  # not PID 1 here
    # Built from a staged copy: nothing new in the checkout.
    assert {name: (ROOT / name).exists() for name in build_leftovers} == before

    agfs = dirs["AGFS_BINDIR"] / "agfs-fuse"
    helper = dirs["AGFS_SBINDIR"] / "mount.fuse.agfs"
    assert os.readlink(agfs) == os.fspath(venv / "bin/agfs-fuse")
    assert os.readlink(helper) == os.fspath(venv / "bin/mount.fuse.agfs")
    for name in ("agfs-fuse@.service", "agfs-fuse-federation@.service"):
        unit = dirs["AGFS_UNITDIR"] / name
        assert unit.read_text() == (ROOT / "systemd" / name).read_text()
    for name in ("example.env", "example.federation.env", "example.yaml"):
        example = dirs["AGFS_CONFDIR"] / name
        assert example.read_text() == (ROOT / "systemd" / name).read_text()
        assert stat.S_IMODE(example.stat().st_mode) == 0o600  # such files may hold tokens
    assert "systemctl enable --now agfs-fuse-federation@NAME" in done.stdout
    assert stat.S_IMODE(dirs["AGFS_CONFDIR"].stat().st_mode) == 0o700

    # The installed copy works from anywhere and is not this checkout (not editable).
    where = subprocess.run(
        [venv / "bin/python", "-c", "import agfs_fuse; print(agfs_fuse.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert where.stdout.startswith(os.fspath(venv))
    done = subprocess.run(
        [helper, "http://127.0.0.1:8080/api/v1", os.fspath(tmp_path), "-f", "-v"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and "would run: agfs-fuse mount" in done.stdout, done.stderr
    version = subprocess.run([agfs, "--version"], capture_output=True, text=True, timeout=30)
    assert version.stdout.startswith("agfs-fuse ")
