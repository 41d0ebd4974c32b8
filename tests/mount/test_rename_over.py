"""Rename-over on memfs is atomic for readers on the same mount.

memfs refuses to rename over an existing file, so the mount moves the target aside first:
for a moment the server has no target. A reader on the same mount must wait for the rename
(or see the old file), never get ENOENT: editors and config writers save by writing a
temporary file and renaming it over the original, and their readers rely on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agfs_fuse import asides
from tests.mount.conftest import Server, Workspace, _workspace
from tests.support.mount import Mount, wait_until

CYCLES = 200

READER = r"""
import errno, json, os, sys
target, stop = sys.argv[1], sys.argv[2]
opens, failures, bad = 0, {}, []
while not os.path.exists(stop):
    step = "open"
    try:
        with open(target, "rb") as f:
            step = "read"
            data = f.read()
    except OSError as exc:
        name = step + " " + errno.errorcode.get(exc.errno, str(exc.errno))
        failures[name] = failures.get(name, 0) + 1
        continue
    opens += 1
    if not data.startswith(b"version ") and len(bad) < 5:
        bad.append(data[:40].decode("latin-1"))
print(json.dumps({"opens": opens, "failures": failures, "bad": bad}))
"""


@pytest.fixture
def memfs_ws(request: pytest.FixtureRequest, mounted: Mount, agfs_server: Server) -> Workspace:
    return _workspace("memfs", mounted, agfs_server.http, request)


@pytest.mark.timeout(90)
def test_reader_never_sees_enoent_during_rename_over(memfs_ws: Workspace, tmp_path: Path) -> None:
    ws = memfs_ws
    target = ws.p("config.txt")
    target.write_bytes(b"version 0\n")
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(target), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for n in range(1, CYCLES + 1):
            temporary = ws.p(f".config.txt.{n}.tmp")
            temporary.write_bytes(f"version {n}\n".encode() * 50)
            temporary.rename(target)
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    result = json.loads(out)
    assert result["opens"] > 0, result
    assert result["failures"] == {}, result
    assert result["bad"] == [], result
    assert ws.http.read(ws.r("config.txt")) == f"version {CYCLES}\n".encode() * 50
    assert ws.http.names(ws.remote) == {"config.txt"}


def test_old_asides_are_listed_and_removable_young_ones_hidden(memfs_ws: Workspace) -> None:
    """An aside no rename explains (a crash, on a mount that did not come back) is hidden
    only while young; then ``ls`` shows it and ``rm -r`` can empty the directory. Only
    the names the mount generates are asides."""
    ws = memfs_ws
    now = time.time()
    old = asides.new_aside_name(now - 2 * asides.HIDDEN_FOR)
    young = asides.new_aside_name(now)
    for name in (old, young, ".agfs-fuse-replaced-notes", "kept.txt"):
        ws.http.write(ws.r(name), name.encode())
    assert sorted(os.listdir(ws.local)) == sorted([old, ".agfs-fuse-replaced-notes", "kept.txt"])
    assert ws.p(".agfs-fuse-replaced-notes").read_bytes() == b".agfs-fuse-replaced-notes"
    ws.p(old).unlink()
    assert ws.http.names(ws.remote) == {young, ".agfs-fuse-replaced-notes", "kept.txt"}


def test_a_file_open_when_replaced_reads_on_then_goes(memfs_ws: Workspace) -> None:
    """POSIX: a file replaced by a rename stays readable through the handles open on it.
    The mount keeps it under a hidden aside name until the last one closes."""
    ws = memfs_ws
    old_content = b"old content " * 400_000  # 4.8 MB: far beyond the kernel's readahead
    ws.http.write(ws.r("config.txt"), old_content)
    ws.http.write(ws.r("new.txt"), b"new content")
    with open(ws.p("config.txt"), "rb", buffering=0) as old:
        assert old.read(12) == old_content[:12]
        os.rename(ws.p("new.txt"), ws.p("config.txt"))
        assert ws.p("config.txt").read_bytes() == b"new content"
        assert os.listdir(ws.local) == ["config.txt"]
        assert len(ws.http.names(ws.remote)) == 2  # the hidden old file
        assert old.read() == old_content[12:]
    wait_until(
        lambda: ws.http.names(ws.remote) == {"config.txt"},
        message="the replaced file deleted at its last close",
    )


@pytest.mark.timeout(60)
def test_fstat_of_a_file_being_replaced_gives_its_own_size(
    make_mount: Callable[..., Mount], agfs_server: Server, request: pytest.FixtureRequest
) -> None:
    """An open file's attributes asked for in the middle of the rename that replaces it
    are its own, not its replacement's (the kernel would cut its reads to that size)."""
    mount = make_mount(agfs_server.url, options=["attr_timeout=0"])
    ws = _workspace("memfs", mount, agfs_server.http, request)
    wrong: list[int] = []

    def watch(fd: int, size: int, done: threading.Event) -> None:
        while not done.is_set():
            if (got := os.fstat(fd).st_size) != size:
                wrong.append(got)

    for n in range(30):
        size = 1000 + n
        ws.http.write(ws.r("config.txt"), b"o" * size)
        ws.http.write(ws.r("new.txt"), b"new")
        fd = os.open(ws.p("config.txt"), os.O_RDONLY)
        try:
            done = threading.Event()
            watcher = threading.Thread(target=watch, args=(fd, size, done))
            watcher.start()
            try:
                os.rename(ws.p("new.txt"), ws.p("config.txt"))
            finally:
                done.set()
                watcher.join(10)
            assert os.fstat(fd).st_size == size
        finally:
            os.close(fd)
    assert wrong == []
