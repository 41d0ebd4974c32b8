"""Reading and writing regular files through the mount with real programs, checked over HTTP.

Every test runs on memfs and on localfs (the ``ws`` fixture). The write contract: once
``close()`` (or ``fsync()``) returns, the server has the bytes, so checks right after a
program exits need no polling. Only changes made on the server behind the mount's back are
polled for (attribute caches live about a second).
"""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from tests.mount.conftest import Workspace, run, seen
from tests.support.mount import wait_until

MiB = 1 << 20


def test_ls_l_shows_server_files(ws: Workspace) -> None:
    ws.http.write(ws.r("a.txt"), b"hello")
    ws.http.write(ws.r("empty"), b"")
    ws.http.mkdir(ws.r("sub"))
    out = run(["ls", "-l", str(ws.local)]).stdout.decode()
    lines = {line.split()[-1]: line.split() for line in out.splitlines()[1:]}
    assert set(lines) == {"a.txt", "empty", "sub"}, out
    assert lines["a.txt"][0].startswith("-") and lines["a.txt"][4] == "5", out
    assert lines["empty"][4] == "0", out
    assert lines["sub"][0].startswith("d"), out


def test_stat_attributes(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"x" * 1000)
    ws.http.mkdir(ws.r("d"))
    st = os.stat(ws.p("f"))
    assert stat.S_ISREG(st.st_mode)
    assert st.st_size == 1000
    assert st.st_nlink == 1
    assert st.st_blocks * 512 >= 1000
    assert st.st_uid == os.getuid() and st.st_gid == os.getgid()
    dst = os.stat(ws.p("d"))
    assert stat.S_ISDIR(dst.st_mode)
    assert dst.st_nlink == 1  # not listed yet: "unknown" (2 would say "no subdirectories")


def test_st_blocks_is_the_size_in_512_byte_units_rounded_up(ws: Workspace) -> None:
    """``du`` and ``ls -s`` read ``st_blocks``: AGFS has no allocation, so it is the size."""
    for size, blocks in ((0, 0), (1, 1), (512, 1), (513, 2), (4096, 8)):
        ws.http.write(ws.r(f"f{size}"), b"x" * size)
        assert os.stat(seen(ws.p(f"f{size}"))).st_blocks == blocks, size

def test_cat_reads_server_content(ws: Workspace) -> None:
    data = os.urandom(300_000)
    ws.http.write(ws.r("blob"), data)
    assert run(["cat", str(ws.p("blob"))]).stdout == data


def test_ranged_read(ws: Workspace) -> None:
    data = os.urandom(2 * MiB + 123)
    ws.http.write(ws.r("blob"), data)
    with open(ws.p("blob"), "rb") as f:
        f.seek(MiB + 7)
        assert f.read(100) == data[MiB + 7 : MiB + 107]
        f.seek(len(data) - 10)
        assert f.read(100) == data[-10:]
        assert f.read(100) == b""


def test_echo_redirect_creates_file(ws: Workspace) -> None:
    run(f"echo hello > '{ws.p('new.txt')}'")
    assert ws.http.read(ws.r("new.txt")) == b"hello\n"
    assert ws.p("new.txt").read_bytes() == b"hello\n"


def test_echo_redirect_truncates_existing(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"a much longer previous content\n")
    run(f"echo x > '{ws.p('f')}'")
    assert ws.http.read(ws.r("f")) == b"x\n"


def test_echo_append(ws: Workspace) -> None:
    run(f"echo hello > '{ws.p('log')}'")
    run(f"echo world >> '{ws.p('log')}'")
    assert ws.http.read(ws.r("log")) == b"hello\nworld\n"
    # appending to a file that was written on the server, not through the mount
    ws.http.write(ws.r("remote"), b"line1\n")
    run(f"echo line2 >> '{ws.p('remote')}'")
    assert ws.http.read(ws.r("remote")) == b"line1\nline2\n"


@pytest.mark.timeout(120)
def test_cp_48mib_and_cmp(ws: Workspace, tmp_path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(48 * MiB)
    src.write_bytes(data)
    import hashlib

    expected = hashlib.sha256(data).hexdigest()
    del data
    run(["cp", str(src), str(ws.p("big.bin"))], timeout=100)
    info = ws.http.stat(ws.r("big.bin"))
    assert info is not None and info["size"] == 48 * MiB
    assert ws.http.sha256(ws.r("big.bin")) == expected
    run(["cmp", str(src), str(ws.p("big.bin"))], timeout=100)
    back = tmp_path / "back.bin"
    run(["cp", str(ws.p("big.bin")), str(back)], timeout=100)
    run(["cmp", str(src), str(back)])


def test_python_r_plus_seek_write_read(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"0123456789")
    with open(ws.p("f"), "r+b") as f:
        f.seek(3)
        f.write(b"abc")
        f.flush()
        f.seek(0)
        assert f.read() == b"012abc6789"
        f.seek(0, os.SEEK_END)
        f.write(b"XY")
    assert ws.http.read(ws.r("f")) == b"012abc6789XY"
    assert ws.p("f").read_bytes() == b"012abc6789XY"


def test_python_append_mode(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"start-")
    with open(ws.p("f"), "ab") as f:
        f.write(b"end")
    assert ws.http.read(ws.r("f")) == b"start-end"


def test_write_without_trunc_keeps_rest(ws: Workspace) -> None:
    """O_WRONLY without O_TRUNC changes bytes in place: the rest must be kept."""
    ws.http.write(ws.r("f"), b"abcdefghij")
    fd = os.open(ws.p("f"), os.O_WRONLY)
    try:
        os.pwrite(fd, b"XY", 4)
    finally:
        os.close(fd)
    assert ws.http.read(ws.r("f")) == b"abcdXYghij"


def test_fsync_uploads_before_close(ws: Workspace) -> None:
    fd = os.open(ws.p("f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"synced data")
        os.fsync(fd)
        assert ws.http.read(ws.r("f")) == b"synced data"
    finally:
        os.close(fd)
    assert ws.http.read(ws.r("f")) == b"synced data"


def test_reader_sees_writer_before_close(ws: Workspace) -> None:
    """All handles of one inode share one spool: a second open sees unflushed writes."""
    with open(ws.p("f"), "wb") as writer:
        writer.write(b"shared spool")
        writer.flush()  # to the kernel, i.e. a FUSE write; not a close
        with open(ws.p("f"), "rb") as reader:
            assert reader.read() == b"shared spool"
    assert ws.http.read(ws.r("f")) == b"shared spool"


def test_truncate_s(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"hello world")
    run(["truncate", "-s", "5", str(ws.p("f"))])
    assert ws.http.read(ws.r("f")) == b"hello"
    run(["truncate", "-s", "8", str(ws.p("f"))])
    assert ws.http.read(ws.r("f")) == b"hello\0\0\0"
    assert os.stat(ws.p("f")).st_size == 8
    run(["truncate", "-s", "0", str(ws.p("f"))])
    assert ws.http.read(ws.r("f")) == b""
    run(["truncate", "-s", "100", str(ws.p("new"))])
    assert ws.http.read(ws.r("new")) == b"\0" * 100


def test_touch_creates_and_accepts_times(ws: Workspace) -> None:
    run(["touch", str(ws.p("new"))])
    # Nothing written: uploaded when its last descriptor goes, a moment after close.
    info = wait_until(lambda: ws.http.stat(ws.r("new")), message="the touched file uploaded")
    assert info is not None and info["size"] == 0 and not info["isDir"]
    ws.http.write(ws.r("old"), b"keep me")
    run(["touch", str(ws.p("old"))])
    assert ws.http.read(ws.r("old")) == b"keep me"
    # an arbitrary mtime is accepted and remembered locally
    run(["touch", "-m", "-d", "2001-02-03 04:05:06 UTC", str(ws.p("old"))])
    assert int(os.stat(ws.p("old")).st_mtime) == 981173106
    assert ws.http.read(ws.r("old")) == b"keep me"


def test_local_mtime_dropped_when_server_changes(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"v1")
    run(["touch", "-m", "-d", "2001-02-03 04:05:06 UTC", str(ws.p("f"))])
    assert int(os.stat(ws.p("f")).st_mtime) == 981173106
    ws.http.write(ws.r("f"), b"version two")  # the server wins
    wait_until(lambda: os.stat(ws.p("f")).st_size == 11, 5, message="new size seen")
    assert int(os.stat(ws.p("f")).st_mtime) != 981173106
    assert ws.p("f").read_bytes() == b"version two"


def test_chmod_goes_to_server(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"x")
    run(["chmod", "600", str(ws.p("f"))])
    assert ws.http.stat(ws.r("f"))["mode"] & 0o777 == 0o600
    assert stat.S_IMODE(os.stat(ws.p("f")).st_mode) == 0o600
    run(["chmod", "755", str(ws.p("f"))])
    assert ws.http.stat(ws.r("f"))["mode"] & 0o777 == 0o755
    assert stat.S_IMODE(os.stat(ws.p("f")).st_mode) == 0o755
    ws.http.mkdir(ws.r("d"))
    run(["chmod", "700", str(seen(ws.p("d")))])
    assert ws.http.stat(ws.r("d"))["mode"] & 0o777 == 0o700


def test_chown_and_cp_p_accepted(ws: Workspace, tmp_path) -> None:
    ws.http.write(ws.r("f"), b"x")
    run(["chown", "1234:4321", str(ws.p("f"))])
    st = os.stat(ws.p("f"))
    assert (st.st_uid, st.st_gid) == (1234, 4321)
    src = tmp_path / "src"
    src.write_bytes(b"preserved")
    os.utime(src, (1_000_000_000, 1_000_000_000))
    run(["cp", "-p", str(src), str(ws.p("copy"))])
    assert ws.http.read(ws.r("copy")) == b"preserved"
    assert int(os.stat(ws.p("copy")).st_mtime) == 1_000_000_000


def test_rm(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"x")
    ws.http.mkdir(ws.r("tree"))
    ws.http.mkdir(ws.r("tree/sub"))
    ws.http.write(ws.r("tree/sub/g"), b"y")
    run(["rm", str(ws.p("f"))])
    assert not ws.http.exists(ws.r("f"))
    assert not ws.p("f").exists()
    run(["rm", "-r", str(ws.p("tree"))])
    assert not ws.http.exists(ws.r("tree"))
    assert ws.http.names(ws.remote) == set()
    proc = run(["rm", str(ws.p("f"))], check=False)
    assert proc.returncode != 0 and b"No such file or directory" in proc.stderr


def test_server_side_changes_become_visible(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"one")
    assert ws.p("f").read_bytes() == b"one"
    ws.http.write(ws.r("f"), b"second version")
    wait_until(
        lambda: ws.p("f").read_bytes() == b"second version",
        5,
        message="new content through the mount",
    )
    # negative entries expire too
    assert not ws.p("later").exists()
    ws.http.write(ws.r("later"), b"now")
    wait_until(lambda: ws.p("later").exists(), 5, message="file created on the server")
    ws.http.delete(ws.r("later"))
    wait_until(lambda: not ws.p("later").exists(), 5, message="file deleted on the server")


def test_dd_and_head_tail(ws: Workspace) -> None:
    data = os.urandom(256 * 1024)
    ws.http.write(ws.r("f"), data)
    out = run(["dd", f"if={ws.p('f')}", "bs=4096", "skip=10", "count=3", "status=none"]).stdout
    assert out == data[40960 : 40960 + 12288]
    assert run(["tail", "-c", "100", str(ws.p("f"))]).stdout == data[-100:]
    assert run(["head", "-c", "100", str(ws.p("f"))]).stdout == data[:100]


def test_mmap_read(ws: Workspace) -> None:
    import mmap

    ws.http.write(ws.r("f"), b"mapped content" * 1000)
    with open(ws.p("f"), "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[:14] == b"mapped content"
        assert len(m) == 14000


def test_many_files_listing(ws: Workspace) -> None:
    for i in range(50):
        ws.http.write(ws.r(f"f{i:02d}"), str(i).encode())
    names = sorted(os.listdir(ws.local))
    assert names == [f"f{i:02d}" for i in range(50)]
    sizes = {e.name: e.stat().st_size for e in os.scandir(ws.local)}
    assert sizes["f42"] == 2 and sizes["f07"] == 1


def test_subprocess_python_writes(ws: Workspace) -> None:
    """Another process's writes are on the server when it exits."""
    code = (
        "import sys\n"
        "with open(sys.argv[1], 'w') as f:\n"
        "    for i in range(1000): f.write(f'line {i}\\n')\n"
    )
    subprocess.run(["python3", "-c", code, str(ws.p("lines.txt"))], check=True, timeout=30)
    expected = "".join(f"line {i}\n" for i in range(1000)).encode()
    assert ws.http.read(ws.r("lines.txt")) == expected
