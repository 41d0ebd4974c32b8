"""Whole programs in the mount: tar round trips, a git repository, df."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.mount.conftest import Workspace, run
from tests.support.mount import Mount


def _make_tree(root: Path) -> None:
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "README").write_text("read me\n")
    (root / "docs" / "a.txt").write_text("alpha\n" * 100)
    (root / "docs" / "deep" / "er" / "b.bin").write_bytes(os.urandom(200_000))
    (root / "docs" / "empty").write_bytes(b"")
    (root / "name with space & +").write_text("odd\n")
    script = root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    (root / "private").write_text("secret\n")
    (root / "private").chmod(0o600)
    os.symlink("docs/a.txt", root / "link-to-a")
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            os.utime(path, (1_500_000_000, 1_500_000_000))


@pytest.mark.timeout(90)
def test_tar_round_trip(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _make_tree(src)
    # extract into the mount (tar sets modes, times and owners: all must be accepted)
    dst = ws.p("extracted")
    dst.mkdir()
    run(f"tar -C '{src}' -cf - . | tar -C '{dst}' -xf -", timeout=60)
    run(["diff", "-r", "--no-dereference", str(src), str(dst)])
    assert ws.http.read(ws.r("extracted/docs/a.txt")) == b"alpha\n" * 100
    assert ws.http.stat(ws.r("extracted/run.sh"))["mode"] & 0o777 == 0o755
    assert ws.http.stat(ws.r("extracted/private"))["mode"] & 0o777 == 0o600
    assert ws.http.readlink(ws.r("extracted/link-to-a")) == "docs/a.txt"
    assert stat.S_IMODE(os.stat(dst / "run.sh").st_mode) == 0o755
    # an archive written into the mount, and read back out of it
    archive = ws.p("tree.tar")
    run(["tar", "-C", str(dst), "-cf", str(archive), "."], timeout=60)
    info = ws.http.stat(ws.r("tree.tar"))
    assert info is not None and info["size"] == archive.stat().st_size > 200_000
    back = tmp_path / "back"
    back.mkdir()
    run(["tar", "-C", str(back), "-xf", str(archive)], timeout=60)
    run(["diff", "-r", "--no-dereference", str(src), str(back)])
    listing = run(["tar", "-tvf", str(archive)]).stdout.decode()
    assert "link-to-a -> docs/a.txt" in listing


def _git_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        GIT_AUTHOR_DATE="2024-01-01T00:00:00Z",
        GIT_COMMITTER_DATE="2024-01-01T00:00:00Z",
    )
    return env


@pytest.mark.timeout(90)
def test_git_init_add_commit(ws: Workspace, tmp_path: Path) -> None:
    env = _git_env(tmp_path)
    repo = ws.p("repo")
    git = ["git", "-c", "init.defaultBranch=main", "-c", "core.fsmonitor=false"]
    run([*git, "init", "-q", str(repo)], env=env)
    (repo / "hello.txt").write_text("hello\n")
    (repo / "src").mkdir()
    (repo / "src" / "main.py").write_text("print('hi')\n")
    run([*git, "add", "."], cwd=repo, env=env)
    run([*git, "commit", "-q", "-m", "first commit"], cwd=repo, env=env)
    (repo / "hello.txt").write_text("hello again\n")
    run([*git, "commit", "-q", "-am", "second commit"], cwd=repo, env=env)
    log = run([*git, "log", "--format=%s"], cwd=repo, env=env).stdout.decode()
    assert log.splitlines() == ["second commit", "first commit"]
    assert run([*git, "status", "--porcelain"], cwd=repo, env=env).stdout == b""
    run([*git, "fsck", "--strict"], cwd=repo, env=env)
    # the repository really is on the server
    assert ws.http.read(ws.r("repo/.git/HEAD")) == b"ref: refs/heads/main\n"
    assert ws.http.exists(ws.r("repo/.git/refs/heads/main"))
    assert "index.lock" not in ws.http.names(ws.r("repo/.git"))
    # and a clone out of the mount has the same history
    clone = tmp_path / "clone"
    run([*git, "clone", "-q", str(repo), str(clone)], env=env, timeout=60)
    assert (clone / "hello.txt").read_text() == "hello again\n"
    assert (clone / "src" / "main.py").read_text() == "print('hi')\n"


def test_df(mounted: Mount) -> None:
    out = run(["df", "-P", str(mounted.path)]).stdout.decode().splitlines()
    assert len(out) == 2, out
    fields = out[1].split()
    assert fields[-1] == str(mounted.path), out
    total, used, avail = (int(x) for x in fields[1:4])
    assert total > 0 and avail > 0 and used >= 0
    run(["df", "-i", str(mounted.path)])
    run(["df", "-h", str(mounted.path / "memfs")])
    st = os.statvfs(mounted.path)
    assert st.f_bsize > 0 and st.f_frsize > 0
    assert st.f_blocks >= st.f_bfree >= st.f_bavail
    assert st.f_namemax >= 255


def test_find_and_du(ws: Workspace) -> None:
    ws.http.mkdir(ws.r("a"))
    ws.http.mkdir(ws.r("a/b"))
    ws.http.write(ws.r("a/b/f"), b"x" * 5000)
    ws.http.write(ws.r("a/g"), b"y")
    found = run(["find", str(ws.local), "-type", "f"]).stdout.decode().split()
    assert sorted(found) == sorted([str(ws.p("a", "b", "f")), str(ws.p("a", "g"))])
    run(["du", "-s", str(ws.local)])
