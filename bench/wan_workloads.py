"""The WAN bench's fixtures and workloads: what people do in a mounted source tree.

Each workload runs the real tool (``tar``, ``cp``, ``git``, ``grep``, ``find``, ``du``,
``ls``) against a directory of a mount, so what is measured is what a user waits for,
round trips included. The fixtures live in the directory all three systems serve, plus a
local side (tarball, tree to copy, git repository, big file) that is never behind a relay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MiB = 1024 * 1024

# git refuses a repository owned by someone else; on a mount the owner is the mount's idea.
GIT_ENV = dict(
    os.environ, GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*",
    GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost", GIT_COMMITTER_NAME="bench",
    GIT_COMMITTER_EMAIL="bench@localhost", LC_ALL="C",
)


@dataclass
class WanFixtures:
    tarball: Path  # local: the source tree as a tar with directory entries
    tree: Path  # local: the same tree, for cp -a
    repo: Path  # local: a git repository holding the tree
    big_src: Path  # local: the file the write workload copies in
    big_size: int
    tree_files: int
    tree_dirs: int
    ls_small: int
    ls_big: int
    small_files: int
    small_payload: bytes

    @property
    def tree_entries(self) -> int:
        return self.tree_files + self.tree_dirs


def pick_source_files(count: int, per_dir: int = 10) -> list[tuple[Path, Path]]:
    """(absolute, relative) paths of ``count`` real source files from this venv's packages,
    at most ``per_dir`` from one directory, so the tree has directories to make and list as
    a real source tree does (about one per ten files)."""
    site = Path(sysconfig.get_paths()["purelib"])
    out: list[tuple[Path, Path]] = []
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames.sort()
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.endswith(".dist-info")]
        for fn in sorted(filenames)[:per_dir]:
            p = Path(dirpath) / fn
            if p.is_file() and not p.is_symlink() and p.stat().st_size < 256 * 1024:
                out.append((p, p.relative_to(site)))
            if len(out) >= count:
                return out
    return out


def write_source_tree(tree: Path, tarball: Path, count: int) -> tuple[int, int]:
    """``count`` real source files under ``tree``, and ``tarball`` of it (with directory
    entries, as a release tarball has); returns how many files and directories it holds."""
    for src, rel in pick_source_files(count):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tree / rel)
    files = dirs = 0
    for _, dnames, fnames in os.walk(tree):
        files += len(fnames)
        dirs += len(dnames)
    with tarfile.open(tarball, "w") as tar:
        for entry in sorted(tree.iterdir()):
            tar.add(entry, arcname=entry.name)
    return files, dirs


def build_fixtures(data: Path, local: Path, *, tar_files: int, big_mib: int, ls_small: int,
                   ls_big: int, small_files: int, small_size: int,
                   scratch_dirs: list[str]) -> WanFixtures:
    """``scratch_dirs`` are made now, before any server starts: rclone serve keeps its
    listings for minutes, so a directory made or removed behind its back later would stay
    unseen, or seen, by rclone mount. Each RTT round writes to its own and removes it."""
    tree = local / "tree"
    tarball = local / "src.tar"
    files, dirs = write_source_tree(tree, tarball, tar_files)
    shutil.copytree(tree, data / "src")
    repo = local / "repo"
    shutil.copytree(tree, repo)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "tree"]):
        subprocess.run(cmd, cwd=repo, env=GIT_ENV, check=True, capture_output=True)
    block = os.urandom(big_mib * MiB)
    (data / "big.bin").write_bytes(block)
    big_src = local / "big.bin"
    big_src.write_bytes(block)
    for name, n in (("ls1k", ls_small), ("ls10k", ls_big)):
        d = data / name
        d.mkdir()
        for i in range(n):
            (d / f"file-{i:05d}.txt").write_bytes(b"x" * 64)
    for name in scratch_dirs:
        (data / name).mkdir()
    return WanFixtures(
        tarball, tree, repo, big_src, len(block), files, dirs, ls_small, ls_big, small_files,
        os.urandom(small_size),
    )


@dataclass
class RunContext:
    """What a workload needs: the fixtures, and a way to restart the request count."""

    fx: WanFixtures
    reset_requests: Callable[[], None]
    scratch: str = "scratch"  # the directory (in the served one) this round writes to


@dataclass
class WanWorkload:
    name: str
    title: str
    run: Callable[[Path, RunContext, str], dict[str, Any]]  # (system root, ctx, tag)
    per: str  # what "requests per ..." divides by: "entry", "file", "dir"
    units: Callable[[WanFixtures], int]  # how many of them
    cold: bool = False  # remount first: nothing of the fixtures cached in the mount


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, check=False, **kw)


def timed_sh(cmd: list[str], ok_codes: tuple[int, ...] = (0,), **kw: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = sh(cmd, **kw)
    out: dict[str, Any] = {"seconds": time.perf_counter() - t0}
    if r.returncode not in ok_codes:
        # The tool ran to its end but complained (rclone refuses cp -a's chmod): the time
        # still counts, flagged, and the complaint goes into the notes.
        err = r.stderr.decode(errors="replace").strip().splitlines()
        out["complaint"] = f"{cmd[0]} exit {r.returncode}: {len(err)} lines, first: {err[:1]}"
    return out


def scratch(root: Path, ctx: RunContext, name: str, tag: str) -> Path:
    return root / ctx.scratch / f"{name}-{tag}"


def run_tar(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    dest = scratch(root, ctx, "tar", tag)
    dest.mkdir()
    ctx.reset_requests()
    return timed_sh(["tar", "xf", str(ctx.fx.tarball), "-C", str(dest)])


def run_tar_no_same_owner(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    dest = scratch(root, ctx, "tarnso", tag)
    dest.mkdir()
    ctx.reset_requests()
    return timed_sh(["tar", "xf", str(ctx.fx.tarball), "--no-same-owner", "-C", str(dest)])


def run_cp(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    return timed_sh(["cp", "-a", str(ctx.fx.tree), str(scratch(root, ctx, "cp", tag))])


def git_clone(ctx: RunContext, dest: Path) -> dict[str, Any]:
    # file:// makes git pack and unpack as from a remote, not hardlink the object store.
    return timed_sh(["git", "clone", "-q", f"file://{ctx.fx.repo}", str(dest)], env=GIT_ENV)


def run_git_clone(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    return git_clone(ctx, scratch(root, ctx, "clone", tag))


def run_git_status(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    """Clone (untimed), then ``git status`` twice; the second is the one measured and
    counted: it is what every later status in a working tree costs."""
    dest = scratch(root, ctx, "status", tag)
    cloned = git_clone(ctx, dest)
    if "error" in cloned:
        return cloned
    first = timed_sh(["git", "status", "--porcelain"], cwd=dest, env=GIT_ENV)
    ctx.reset_requests()
    second = timed_sh(["git", "status", "--porcelain"], cwd=dest, env=GIT_ENV)
    return second | {"first_status_s": first["seconds"], "clone_s": cloned["seconds"]}


def run_grep(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    return timed_sh(["grep", "-r", "-c", "import", str(root / "src")], ok_codes=(0, 1))


def run_find(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    return timed_sh(["find", str(root / "src")])


def run_du(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    return timed_sh(["du", "-s", str(root / "src")])


def run_ls(dirname: str) -> Callable[[Path, RunContext, str], dict[str, Any]]:
    def run(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
        return timed_sh(["ls", "-l", str(root / dirname)], env=dict(os.environ, LC_ALL="C"))

    return run


def run_small(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    d = scratch(root, ctx, "small", tag)
    d.mkdir()
    ctx.reset_requests()
    payload = ctx.fx.small_payload
    t0 = time.perf_counter()
    for i in range(ctx.fx.small_files):
        fd = os.open(d / f"f{i:04d}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
    return {"seconds": time.perf_counter() - t0}


def run_read(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    buf = bytearray(MiB)
    n = 0
    t0 = time.perf_counter()
    fd = os.open(root / "big.bin", os.O_RDONLY)
    try:
        while k := os.readv(fd, [buf]):
            n += k
    finally:
        os.close(fd)
    out: dict[str, Any] = {"seconds": time.perf_counter() - t0}
    if n != ctx.fx.big_size:
        out["error"] = f"read {n} bytes, expected {ctx.fx.big_size}"
    return out


def run_write(root: Path, ctx: RunContext, tag: str) -> dict[str, Any]:
    return timed_sh(["cp", str(ctx.fx.big_src), str(scratch(root, ctx, "write", tag))])


WAN_WORKLOADS = [
    WanWorkload("tar", "tar xf (as root when root)", run_tar, "entry",
                lambda fx: fx.tree_entries),
    WanWorkload("tar_nso", "tar xf --no-same-owner", run_tar_no_same_owner, "entry",
                lambda fx: fx.tree_entries),
    WanWorkload("cp", "cp -a of the tree", run_cp, "entry", lambda fx: fx.tree_entries),
    WanWorkload("git_clone", "git clone (file://)", run_git_clone, "entry",
                lambda fx: fx.tree_entries),
    WanWorkload("git_status", "second git status", run_git_status, "dir",
                lambda fx: fx.tree_dirs + 1),
    WanWorkload("grep", "grep -r, cold", run_grep, "file", lambda fx: fx.tree_files, cold=True),
    WanWorkload("find", "find, cold", run_find, "entry", lambda fx: fx.tree_entries, cold=True),
    WanWorkload("du", "du -s, cold", run_du, "entry", lambda fx: fx.tree_entries, cold=True),
    WanWorkload("ls_1k", "ls -l of 1k entries, cold", run_ls("ls1k"), "entry",
                lambda fx: fx.ls_small, cold=True),
    WanWorkload("ls_10k", "ls -l of 10k entries, cold", run_ls("ls10k"), "entry",
                lambda fx: fx.ls_big, cold=True),
    WanWorkload("small", "create+write+close small files", run_small, "file",
                lambda fx: fx.small_files),
    WanWorkload("read", "sequential read, cold", run_read, "file", lambda fx: 1, cold=True),
    WanWorkload("write", "sequential write (cp)", run_write, "file", lambda fx: 1),
]
