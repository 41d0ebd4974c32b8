"""AGFS-native files through the kernel mount: queues, size-0 control files, streams, and
handle-based writes, with requests and open handles counted by a relay in front of the server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.mount.conftest import run, seen
from tests.support.counting import CountingRelay
from tests.support.mount import Mount, wait_until
from tests.support.server import start_server

MAX_BODY = 8 << 20


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Iterator[tuple[Native, Mount]]:
    """memfs, queuefs and streamfs behind an 8 MiB body limit, mounted through a relay
    that counts the requests."""
    work = tmp_path_factory.mktemp("native")
    config = {
        "plugins": {
            "memfs": {"enabled": True, "path": "/memfs"},
            "queuefs": {"enabled": True, "path": "/queuefs"},
            "streamfs": {"enabled": True, "path": "/streamfs"},
        }
    }
    server = start_server(work / "server", config=config, max_body=MAX_BODY)
    http = Native(server.url)
    mount = Mount(http.relay.url, work / "mnt", workdir=work, options=[f"cache_dir={work / 'c'}"])
    try:
        mount.start()
        yield http, mount
    finally:
        mount.unmount()
        http.close()
        server.stop()


class Native(AgfsHttp):
    """Direct HTTP checks of the server, and the relay the mount goes through."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.relay = CountingRelay(url)

    def close(self) -> None:
        self.relay.close()
        super().close()


def _counts(http: Native) -> dict[str, int]:
    return http.relay.counts()


def _delta(http: Native, before: dict[str, int]) -> dict[str, int]:
    return http.relay.delta(before)


def _no_open_handles(http: Native) -> bool:
    return http.relay.open_handles() == []


# -- queues -------------------------------------------------------------------------------


def test_queue_round_trip_keeps_order_and_pops_one_message_per_open(native) -> None:
    http, mount = native
    queue = mount.path / "queuefs" / "jobs"
    queue.mkdir()
    for n in range(5):
        run(f"echo job{n} > '{queue / 'enqueue'}'")
    assert (queue / "size").read_text() == "5"
    assert json.loads((queue / "peek").read_text())["data"] == "job0\n"
    popped = []
    for _ in range(5):
        before = _counts(http)
        popped.append(json.loads(run(["cat", str(queue / "dequeue")]).stdout)["data"])
        assert _delta(http, before).get("GET /files") == 1  # exactly one GET per open
    assert popped == [f"job{n}\n" for n in range(5)]
    assert run(["cat", str(queue / "dequeue")]).stdout == b"{}"
    assert (queue / "size").read_text() == "0"


def test_cp_of_a_file_into_a_queue_is_one_message(native, tmp_path) -> None:
    http, mount = native
    queue = mount.path / "queuefs" / "copies"
    queue.mkdir()
    src = tmp_path / "msg"
    src.write_text("line one\nline two\n" * 1000)
    run(["cp", str(src), str(queue / "enqueue")])
    assert (queue / "size").read_text() == "1"
    assert json.loads((queue / "dequeue").read_text())["data"] == src.read_text()


def test_rm_r_of_a_queue_deletes_it_on_the_server(native) -> None:
    http, mount = native
    queue = mount.path / "queuefs" / "doomed"
    queue.mkdir()
    run(f"echo x > '{queue / 'enqueue'}'")
    run(["rm", "-r", str(queue)])
    assert "doomed" not in http.names("/queuefs")
    assert not queue.exists()


def test_clear_empties_the_queue_and_size_zero_files_read_fully(native) -> None:
    http, mount = native
    queue = mount.path / "queuefs" / "cleared"
    queue.mkdir()
    for n in range(3):
        run(f"echo m{n} > '{queue / 'enqueue'}'")
    assert os.stat(queue / "peek").st_size == 0  # stat says 0 ...
    assert json.loads((queue / "peek").read_text())["data"] == "m0\n"  # ... cat shows it all
    run(f"echo > '{queue / 'clear'}'")
    assert (queue / "size").read_text() == "0"


# -- handle-based writes ------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_200_mib_file_over_the_body_limit_goes_through_handles(native, tmp_path) -> None:
    http, mount = native
    src = tmp_path / "big"
    digest = hashlib.sha256()
    with open(src, "wb") as out:
        for _ in range(200):
            block = os.urandom(1 << 20)
            digest.update(block)
            out.write(block)
    before = _counts(http)
    run(["cp", str(src), str(mount.path / "memfs" / "big")])
    delta = _delta(http, before)
    assert delta.get("POST /handles/open") == 1 and delta.get("DELETE /handles/{id}") == 1
    assert delta.get("PUT /handles/{id}/write", 0) >= 200 * (1 << 20) // MAX_BODY
    assert http.sha256("/memfs/big") == digest.hexdigest()
    assert _no_open_handles(http)
    src.unlink()


@pytest.mark.timeout(120)
def test_one_byte_change_to_a_large_file_costs_a_few_requests(native) -> None:
    http, mount = native
    data = bytearray(os.urandom(MAX_BODY - 4096))  # as large as one PUT may be here
    http.write("/memfs/large", bytes(data))
    path = seen(mount.path / "memfs" / "large")  # made over HTTP: within attr_timeout
    before = _counts(http)
    with open(path, "r+b") as f:
        f.seek(5_555_555)
        f.write(b"!")
    delta = _delta(http, before)
    data[5_555_555:5_555_556] = b"!"
    assert delta.get("GET /files", 0) == 0, delta  # nothing fetched
    assert delta.get("PUT /files", 0) == 0, delta  # nothing re-uploaded whole
    assert delta.get("PUT /handles/{id}/write") == 1, delta
    assert sum(delta.values()) <= 8, delta
    assert http.read("/memfs/large") == bytes(data)
    assert _no_open_handles(http)


def test_sparse_edit_reads_back_mixed_local_and_server_bytes(native) -> None:
    http, mount = native
    data = bytearray(os.urandom(3 << 20))
    http.write("/memfs/mixed", bytes(data))
    with open(seen(mount.path / "memfs" / "mixed"), "r+b") as f:
        f.seek(1 << 20)
        f.write(b"X" * 100)
        f.seek((1 << 20) - 50)
        assert f.read(200) == bytes(data[(1 << 20) - 50 : 1 << 20]) + b"X" * 100 + bytes(
            data[(1 << 20) + 100 : (1 << 20) + 150]
        )
        f.seek(0, os.SEEK_END)
        f.write(b"tail")
        f.truncate(len(data) + 2)
    data[1 << 20 : (1 << 20) + 100] = b"X" * 100
    assert http.read("/memfs/mixed") == bytes(data) + b"ta"
    assert _no_open_handles(http)


def test_small_new_files_cost_at_most_two_requests(native) -> None:
    """Each new file is created by its one upload: no create request before it."""
    http, mount = native
    (mount.path / "memfs" / "small").mkdir()
    before = _counts(http)
    for n in range(20):
        (mount.path / "memfs" / "small" / f"f{n}").write_bytes(b"hello %d" % n)
    delta = _delta(http, before)
    assert (delta.get("POST /files", 0), delta.get("PUT /files", 0)) == (0, 20), delta
    assert sum(delta.values()) <= 2 * 20, delta
    assert not any(k.startswith(("POST /handles", "PUT /handles")) for k in delta), delta
    assert http.read("/memfs/small/f7") == b"hello 7"


# -- streams --------------------------------------------------------------------------------


def test_stream_writes_append_and_cat_shows_what_is_there(native) -> None:
    http, mount = native
    stream = mount.path / "streamfs" / "events"
    run(f"echo first > '{stream}'")
    run(f"echo second >> '{stream}'")
    assert os.stat(stream).st_size == len("first\nsecond\n")
    result = run(["timeout", "20", "cat", str(stream)])
    assert result.stdout == b"first\nsecond\n"


@pytest.mark.timeout(60)
def test_tail_f_of_a_stream_sees_appended_data(native) -> None:
    http, mount = native
    stream = mount.path / "streamfs" / "followed"
    run(f"echo one > '{stream}'")
    out = Path(mount.workdir) / "tail.out"
    with open(out, "wb") as sink:
        tail = subprocess.Popen(["tail", "-f", str(stream)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: b"one" in out.read_bytes(), 20, message="tail shows the first line")
        http.write("/streamfs/followed", b"two\n")  # appended by someone else
        wait_until(lambda: b"two" in out.read_bytes(), 30, message="tail -f shows appended data")
    finally:
        tail.kill()
        tail.wait()
    assert out.read_bytes().startswith(b"one\n")


def test_truncate_of_a_stream_changes_nothing_and_rm_removes_it(native) -> None:
    """A stream goes by its plugin's rules: truncate is a no-op on streamfs (the data and
    the total size stay), and ``rm`` deletes the stream on the server."""
    http, mount = native
    stream = mount.path / "streamfs" / "trimmed"
    run(f"echo kept > '{stream}'")
    run(["truncate", "-s", "0", str(stream)])
    info = http.stat("/streamfs/trimmed")
    assert info is not None and info["size"] == len("kept\n"), info
    assert run(["timeout", "20", "cat", str(stream)]).stdout == b"kept\n"
    run(["rm", str(stream)])
    assert not http.exists("/streamfs/trimmed")
    assert not stream.exists()
