"""queuefs through the mount: one write to ``enqueue`` is one message; ``dequeue`` pops one.

``dequeue`` and ``size`` report size 0 (or a wrong size) and ``dequeue`` is destructive, so the
mount must read them with one GET per open (docs/PROTOCOL.md, Volatile and stream files).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.mount.conftest import run, seen
from tests.support.mount import Mount


@pytest.fixture
def queue(mounted: Mount, http: AgfsHttp, request) -> tuple[Path, str]:
    """A new queue: (its directory in the mount, its path on the server)."""
    name = f"q{os.getpid()}-{request.node.name}".replace("[", "-").replace("]", "")[:60]
    remote = f"/queuefs/{name}"
    http.mkdir(remote)
    return seen(mounted.path / "queuefs" / name), remote


def test_echo_to_enqueue_twice_gives_two_messages(queue, http: AgfsHttp) -> None:
    local, remote = queue
    run(f"echo job > '{local / 'enqueue'}'")
    run(f"echo job > '{local / 'enqueue'}'")
    assert http.read(f"{remote}/size") == b"2"
    assert run(["cat", str(local / "size")]).stdout.strip() == b"2"
    first = json.loads(run(["cat", str(local / "dequeue")]).stdout)
    assert first["data"] == "job\n" and first["id"]
    assert http.read(f"{remote}/size") == b"1"
    second = json.loads(run(["cat", str(local / "dequeue")]).stdout)
    assert second["data"] == "job\n" and second["id"] != first["id"]
    assert http.read(f"{remote}/size") == b"0"
    assert json.loads(run(["cat", str(local / "dequeue")]).stdout) == {}


def test_enqueue_through_mount_dequeue_over_http(queue, http: AgfsHttp) -> None:
    local, remote = queue
    run(f"printf 'first' > '{local / 'enqueue'}'")
    run(f"printf 'second' > '{local / 'enqueue'}'")
    messages = [json.loads(http.read(f"{remote}/dequeue"))["data"] for _ in range(2)]
    assert messages == ["first", "second"]


def test_cp_file_to_enqueue_is_one_message(queue, http: AgfsHttp, tmp_path) -> None:
    """A write bigger than one FUSE write request still makes one message."""
    local, remote = queue
    payload = ("".join(f"line {i:06d}\n" for i in range(30_000))).encode()  # ~360 KB
    src = tmp_path / "payload"
    src.write_bytes(payload)
    run(["cp", str(src), str(local / "enqueue")])
    assert http.read(f"{remote}/size") == b"1"
    message = json.loads(http.read(f"{remote}/dequeue"))
    assert message["data"].encode() == payload


def test_open_without_write_sends_nothing(queue, http: AgfsHttp) -> None:
    local, remote = queue
    fd = os.open(local / "enqueue", os.O_WRONLY)
    os.close(fd)
    run(f": > '{local / 'enqueue'}'")
    assert http.read(f"{remote}/size") == b"0"


def test_peek_does_not_consume(queue, http: AgfsHttp) -> None:
    local, remote = queue
    http.write(f"{remote}/enqueue", b"kept")
    for _ in range(3):
        assert json.loads(run(["cat", str(local / "peek")]).stdout)["data"] == "kept"
    assert http.read(f"{remote}/size") == b"1"
    assert (local / "size").read_bytes() == b"1"


def test_queue_listing_and_modes(queue, http: AgfsHttp) -> None:
    local, remote = queue
    names = set(os.listdir(local))
    assert {"enqueue", "dequeue", "peek", "size", "clear"} <= names
    assert stat.S_IMODE(os.stat(local / "enqueue").st_mode) & 0o444 == 0
    assert stat.S_IMODE(os.stat(local / "dequeue").st_mode) & 0o222 == 0
    run(["ls", "-l", str(local)])


def test_mkdir_creates_queue_and_clear(mounted: Mount, http: AgfsHttp, request) -> None:
    name = f"made{os.getpid()}-{request.node.name}"[:50]
    local = mounted.path / "queuefs" / name
    os.mkdir(local)
    assert http.meta_type(f"/queuefs/{name}") == "queue"
    for i in range(3):
        run(f"echo m{i} > '{local / 'enqueue'}'")
    assert http.read(f"/queuefs/{name}/size") == b"3"
    run(f"echo > '{local / 'clear'}'")
    assert http.read(f"/queuefs/{name}/size") == b"0"
