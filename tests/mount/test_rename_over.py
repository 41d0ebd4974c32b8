"""Rename-over on memfs is atomic for readers on the same mount (issue 11, item 3).

memfs refuses to rename over an existing file, so the mount moves the target aside first:
for a moment the server has no target. A reader on the same mount must wait for the rename
(or see the old file), never get ENOENT: editors and config writers save by writing a
temporary file and renaming it over the original, and their readers rely on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mount.conftest import Server, Workspace, _workspace
from tests.support.mount import Mount

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
