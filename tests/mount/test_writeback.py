"""``-o writeback_cache``: the kernel gathers writes, and nothing written is lost or moved.

Off by default (see docs/SEMANTICS.md for what it costs); with it the kernel keeps written
pages and sends them in large writes before the flush of ``close``, handles ``O_APPEND``
itself, and may read a page back before a partial write to it. Messages (a queue's
``enqueue``) still go one per write, bypassing the cache.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.mount.conftest import run

BLOCK = 4096
BLOCKS = 256


def _write_requests(mount) -> int:
    return mount.stats()["write_requests"]


def _write_in_blocks(path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, len(data), BLOCK):
            os.write(fd, data[off : off + BLOCK])
    finally:
        os.close(fd)


@pytest.fixture
def server(make_server):
    return make_server(localfs=False)


@pytest.mark.parametrize("writeback", [False, True], ids=["default", "writeback_cache"])
def test_small_writes_arrive_whole_and_writeback_gathers_them(
    server, make_mount, writeback: bool
) -> None:
    mount = make_mount(server.url, options=["writeback_cache"] if writeback else [])
    stats = mount.stats()
    assert stats["page_cache"]["writeback"] is writeback
    data = os.urandom(BLOCK * BLOCKS)
    before = _write_requests(mount)
    _write_in_blocks(mount.path / "memfs" / "blocks", data)
    sent = _write_requests(mount) - before
    assert server.http.read("/memfs/blocks") == data  # on the server once close returned
    if writeback:
        assert sent <= BLOCKS // 8, f"{sent} write requests for {BLOCKS} writes"
    else:
        assert sent == BLOCKS


def test_writeback_append_and_partial_page_writes_land_where_they_belong(
    server, make_mount
) -> None:
    mount = make_mount(server.url, options=["writeback_cache"])
    base = os.urandom(10_000)
    server.http.write("/memfs/edit", base)
    path = mount.path / "memfs" / "edit"
    with open(path, "ab") as f:  # O_APPEND: the kernel picks the offsets
        f.write(b"tail one")
        f.write(b"tail two")
    fd = os.open(path, os.O_WRONLY)  # a partial page: the kernel reads the rest of it
    try:
        os.pwrite(fd, b"PATCH", 4100)
    finally:
        os.close(fd)
    want = bytearray(base + b"tail onetail two")
    want[4100:4105] = b"PATCH"
    assert server.http.read("/memfs/edit") == bytes(want)
    assert path.read_bytes() == bytes(want)


def test_writeback_leaves_queue_messages_one_per_write(server, make_mount) -> None:
    mount = make_mount(server.url, options=["writeback_cache"])
    queue = mount.path / "queuefs" / "wb"
    queue.mkdir()
    for n in range(3):
        run(f"echo job{n} > '{queue / 'enqueue'}'")
    assert (queue / "size").read_text() == "3"
    assert json.loads((queue / "dequeue").read_text())["data"] == "job0\n"
