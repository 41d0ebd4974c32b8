"""Edge cases that real programs hit: unlink while open, sparse writes, ftruncate, shared
mmap, atomic-replace helpers (``sed -i``), ``cp -r``, parallel writers, creating files at the
virtual root. Checked against the server over HTTP.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import subprocess
import time

import pytest

from tests.mount.conftest import Workspace, run
from tests.support.mount import Mount, wait_until


def test_unlink_while_open_does_not_resurrect(ws: Workspace) -> None:
    fd = os.open(ws.p("ghost"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"written, then unlinked")
        os.unlink(ws.p("ghost"))
        os.write(fd, b" and more")
    finally:
        os.close(fd)
    assert not ws.http.exists(ws.r("ghost"))
    assert not ws.p("ghost").exists()


def test_empty_create_reaches_server(ws: Workspace) -> None:
    """A new file nothing was written to goes up when its last descriptor goes (the
    kernel's release, a moment after close): polled for."""
    run(f": > '{ws.p('empty')}'")
    info = wait_until(lambda: ws.http.stat(ws.r("empty")), message="the empty file uploaded")
    assert info["size"] == 0 and not info["isDir"]
    with open(ws.p("empty2"), "wb"):
        pass
    assert wait_until(lambda: ws.http.stat(ws.r("empty2")), message="the second one uploaded")
    assert ws.http.read(ws.r("empty2")) == b""


def test_sparse_pwrite_beyond_eof(ws: Workspace) -> None:
    fd = os.open(ws.p("sparse"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, b"end", 10_000)
        assert os.fstat(fd).st_size == 10_003
    finally:
        os.close(fd)
    assert ws.http.read(ws.r("sparse")) == b"\0" * 10_000 + b"end"


def test_ftruncate_while_writing(ws: Workspace) -> None:
    with open(ws.p("f"), "wb") as f:
        f.write(b"x" * 1000)
        f.flush()
        os.ftruncate(f.fileno(), 10)
        f.seek(0, os.SEEK_END)
        f.write(b"tail")
    assert ws.http.read(ws.r("f")) == b"x" * 10 + b"tail"


def test_overwrite_larger_with_smaller(ws: Workspace, tmp_path) -> None:
    ws.http.write(ws.r("f"), os.urandom(200_000))
    small = tmp_path / "small"
    small.write_bytes(b"small now")
    run(["cp", str(small), str(ws.p("f"))])
    assert ws.http.read(ws.r("f")) == b"small now"
    assert os.stat(ws.p("f")).st_size == 9


def test_shared_mmap_write(ws: Workspace) -> None:
    ws.http.write(ws.r("m"), b"." * 8192)
    with open(ws.p("m"), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        m[100:105] = b"HELLO"
        m.flush()
    data = ws.http.read(ws.r("m"))
    assert data[100:105] == b"HELLO" and len(data) == 8192


def test_sed_in_place(ws: Workspace) -> None:
    ws.http.write(ws.r("conf"), b"name=old\nother=1\n")
    run(["sed", "-i", "s/old/new/", str(ws.p("conf"))])
    assert ws.http.read(ws.r("conf")) == b"name=new\nother=1\n"
    assert ws.http.names(ws.remote) == {"conf"}


def test_python_atomic_replace(ws: Workspace) -> None:
    import tempfile

    ws.http.write(ws.r("state.json"), b"{}")
    with tempfile.NamedTemporaryFile("wb", dir=ws.local, delete=False) as tmp:
        tmp.write(b'{"a": 1}')
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, ws.p("state.json"))
    assert ws.http.read(ws.r("state.json")) == b'{"a": 1}'
    assert ws.http.names(ws.remote) == {"state.json"}


def test_mkdir_mode(ws: Workspace) -> None:
    run(["mkdir", "-m", "700", str(ws.p("private"))])
    assert ws.http.stat(ws.r("private"))["mode"] & 0o777 == 0o700
    assert stat.S_IMODE(os.stat(ws.p("private")).st_mode) == 0o700


def test_new_file_mtime_is_now(ws: Workspace) -> None:
    before = time.time()
    ws.p("fresh").write_bytes(b"x")
    mtime = os.stat(ws.p("fresh")).st_mtime
    assert before - 5 <= mtime <= time.time() + 5


@pytest.mark.timeout(60)
def test_cp_r_tree_and_rm_rf(ws: Workspace, tmp_path) -> None:
    src = tmp_path / "tree"
    for d in range(5):
        (src / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (src / f"d{d}" / f"f{f}").write_bytes(f"{d}/{f}".encode() * 50)
    run(["cp", "-r", str(src), str(ws.p("tree"))], timeout=50)
    run(["diff", "-r", str(src), str(ws.p("tree"))])
    assert ws.http.read(ws.r("tree/d3/f7")) == b"3/7" * 50
    assert len(ws.http.names(ws.r("tree/d4"))) == 20
    run(["rm", "-rf", str(ws.p("tree"))], timeout=50)
    assert not ws.http.exists(ws.r("tree"))


@pytest.mark.timeout(60)
def test_parallel_writers(ws: Workspace) -> None:
    """Eight processes write eight files at once; every byte arrives."""
    code = (
        "import os, sys\n"
        "path, seed = sys.argv[1], int(sys.argv[2])\n"
        "with open(path, 'wb') as f:\n"
        "    for i in range(64):\n"
        "        f.write(bytes([(seed + i) % 256]) * 16384)\n"
    )
    procs = [
        subprocess.Popen(["python3", "-c", code, str(ws.p(f"w{n}")), str(n)]) for n in range(8)
    ]
    assert [p.wait(timeout=50) for p in procs] == [0] * 8
    for n in range(8):
        expected = b"".join(bytes([(n + i) % 256]) * 16384 for i in range(64))
        assert ws.http.read(ws.r(f"w{n}")) == expected, n


@pytest.mark.timeout(60)
def test_parallel_readers(ws: Workspace) -> None:
    data = os.urandom(4 << 20)
    ws.http.write(ws.r("shared"), data)
    import hashlib

    expected = hashlib.sha256(data).hexdigest()
    procs = [
        subprocess.Popen(["sha256sum", str(ws.p("shared"))], stdout=subprocess.PIPE)
        for _ in range(6)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=50)
        assert out.split()[0].decode() == expected


def test_create_at_virtual_root_is_refused(mounted: Mount) -> None:
    for fn in (
        lambda: open(mounted.path / "not-allowed", "wb"),  # noqa: SIM115
        lambda: os.mkdir(mounted.path / "not-allowed-dir"),
    ):
        with pytest.raises(OSError) as info:
            fn()
        assert info.value.errno in (errno.EACCES, errno.EPERM), info.value
    assert not (mounted.path / "not-allowed").exists()
    assert mounted.alive()
