"""localfs: Go mode numbers, real-directory semantics, streaming, no handles."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import check_file_info, err
from tests.support.mount import wait_until
from tests.support.server import ServerProcess

GO_MODE_DIR = 1 << 31


def test_go_mode_bits_and_meta(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    os.chmod(local, 0o755)
    (local / "f").write_bytes(b"abc")
    os.chmod(local / "f", 0o640)
    info = lclient.get("/stat", params={"path": remote}).json()
    check_file_info(info)
    assert info["mode"] == GO_MODE_DIR | 0o755 == 2147484141
    assert info["meta"] == {
        "Name": "localfs",
        "Type": "local",
        "Content": {"local_path": str(local)},
    }
    f = lclient.get("/directories", params={"path": remote}).json()["files"][0]
    assert f["name"] == "f" and f["mode"] == 0o640 and f["size"] == 3
    assert f["meta"] == {"Name": "localfs", "Type": "local", "Content": None}


def test_setuid_survives_only_as_go_bits(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    """Go maps its own setuid bit (1<<23), not 0o4000, to the file's setuid."""
    remote, local = lws
    (local / "f").write_bytes(b"")
    lclient.post("/chmod", params={"path": f"{remote}/f"}, json={"mode": 0o4755})
    assert (local / "f").stat().st_mode & 0o7777 == 0o755
    lclient.post("/chmod", params={"path": f"{remote}/f"}, json={"mode": (1 << 23) | 0o700})
    assert (local / "f").stat().st_mode & 0o7777 == 0o4700
    assert lclient.get("/stat", params={"path": f"{remote}/f"}).json()["mode"] == (1 << 23) | 0o700


def test_mount_root_keeps_directory_name(lclient: httpx.Client, local_dir: Path) -> None:
    info = lclient.get("/stat", params={"path": "/local"}).json()
    assert info["name"] == local_dir.name and info["isDir"]


def test_write_read_ranges(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    r = lclient.put("/files", params={"path": f"{remote}/a"}, content=b"0123456789")
    assert r.json() == {"message": "Written 10 bytes"}
    assert (local / "a").read_bytes() == b"0123456789"
    get = lambda **p: lclient.get("/files", params={"path": f"{remote}/a", **p}).content  # noqa: E731
    assert get(offset="3", size="4") == b"3456"
    assert get(offset="8", size="10") == b"89"
    assert get(offset="10") == b""


def test_big_ranged_read_uses_the_file(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    data = os.urandom(3 * 1024 * 1024 + 17)
    (local / "big").write_bytes(data)
    r = lclient.get("/files", params={"path": f"{remote}/big", "offset": "5", "size": "2000000"})
    assert r.status_code == 200 and r.content == data[5:2000005]
    assert lclient.get("/files", params={"path": f"{remote}/big"}).content == data


def test_stream_in_64k_chunks(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    data = os.urandom(200_000)
    (local / "s").write_bytes(data)
    with lclient.stream("GET", "/files", params={"path": f"{remote}/s", "stream": "true"}) as r:
        assert r.status_code == 200
        assert r.headers["transfer-encoding"] == "chunked"
        pieces = list(r.iter_raw())
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) <= 64 * 1024
    (local / "empty").write_bytes(b"")
    assert (
        lclient.get("/files", params={"path": f"{remote}/empty", "stream": "true"}).content == b""
    )
    r = lclient.get("/files", params={"path": f"{remote}/none", "stream": "true"})
    assert r.status_code == 404 and err(r) == f"no such file: {remote.removeprefix('/local')}/none"


def test_rename_replaces_target(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    (local / "a").write_bytes(b"A")
    (local / "b").write_bytes(b"B")
    r = lclient.post("/rename", params={"path": f"{remote}/a"}, json={"newPath": f"{remote}/b"})
    assert r.status_code == 200
    assert (local / "b").read_bytes() == b"A" and not (local / "a").exists()


def test_rename_over_a_directory_is_refused_like_go(
    lclient: httpx.Client, lws: tuple[str, Path]
) -> None:
    """Go's os.Rename refuses to replace an existing directory, even an empty one."""
    remote, local = lws
    (local / "src").mkdir()
    (local / "dst").mkdir()
    r = lclient.post("/rename", params={"path": f"{remote}/src"}, json={"newPath": f"{remote}/dst"})
    assert r.status_code == 500
    assert err(r) == f"failed to rename: rename {local}/src {local}/dst: file exists"
    assert (local / "src").is_dir() and (local / "dst").is_dir()


def test_messages(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    rel = remote.removeprefix("/local")
    r = lclient.get("/files", params={"path": f"{remote}/nope"})
    assert r.status_code == 500 and err(r) == f"no such file: {rel}/nope"
    r = lclient.get("/stat", params={"path": f"{remote}/nope"})
    assert err(r) == f"no such file or directory: {rel}/nope"
    r = lclient.get("/directories", params={"path": f"{remote}/nope"})
    assert err(r) == f"no such directory: {rel}/nope"
    r = lclient.put("/files", params={"path": f"{remote}/no/f"}, content=b"1")
    assert err(r) == f"parent directory does not exist: {rel}/no"
    (local / "d").mkdir()
    (local / "d" / "x").write_bytes(b"")
    r = lclient.delete("/files", params={"path": f"{remote}/d"})
    assert err(r) == f"directory not empty: {rel}/d"
    r = lclient.get("/files", params={"path": f"{remote}/d/x/y"})
    assert r.status_code == 500
    assert err(r) == f"failed to stat: stat {local}/d/x/y: not a directory"


def test_touch_bug_and_create(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    assert lclient.post("/touch", params={"path": f"{remote}/t"}).status_code == 200
    assert (local / "t").exists()
    r = lclient.post("/touch", params={"path": f"{remote}/t"})
    assert r.status_code == 500 and err(r) == "EOF"


def test_handles_not_supported(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    (local / "f").write_bytes(b"x")
    r = lclient.post("/handles/open", params={"path": f"{remote}/f", "flags": "0"})
    assert r.status_code == 501
    assert err(r) == f"openhandle: {remote}/f: operation not supported"


def test_truncate_and_digest(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    (local / "f").write_bytes(b"hello world")
    lclient.post("/truncate", params={"path": f"{remote}/f", "size": "5"})
    assert (local / "f").read_bytes() == b"hello"
    r = lclient.post("/digest", json={"algorithm": "md5", "path": f"{remote}/f"})
    assert r.json() == {
        "algorithm": "md5",
        "path": f"{remote}/f",
        "digest": hashlib.md5(b"hello").hexdigest(),
    }


def test_mkdir_mode_and_create(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    remote, local = lws
    old = os.umask(0)
    os.umask(old)
    lclient.post("/directories", params={"path": f"{remote}/d", "mode": "700"})
    assert (local / "d").stat().st_mode & 0o777 == 0o700 & ~old
    assert lclient.post("/files", params={"path": f"{remote}/d/f"}).status_code == 201
    r = lclient.post("/files", params={"path": f"{remote}/d/f"})
    assert err(r) == f"file already exists: {remote.removeprefix('/local')}/d/f"


def test_nul_byte_in_path_is_a_500_like_go(lclient: httpx.Client, lws: tuple[str, Path]) -> None:
    """Go's syscalls answer EINVAL for a NUL in a path: a JSON 500, not a dropped connection."""
    path, local = lws
    r = lclient.get("/stat", params={"path": f"{path}/a\x00b"})
    assert r.status_code == 500
    assert err(r) == f"failed to stat: stat {local}/a\x00b: invalid argument"
    r = lclient.put("/files", params={"path": f"{path}/a\x00b"}, content=b"x")
    assert r.status_code == 500 and err(r).endswith(": invalid argument")
    assert lclient.get("/health").status_code == 200


#: ``AT_FDCWD`` (-100) as the low 32 bits of a syscall argument (the dirfd is a C int,
#: which /proc/PID/task/TID/syscall may print sign-extended or not).
_AT_FDCWD = -100 & 0xFFFFFFFF


def _blocked_in_open_at(pid: int) -> bool:
    """Whether a thread of ``pid`` is blocked in an ``openat(AT_FDCWD, ...)`` system call.

    /proc/PID/task/TID/syscall gives the call's number and its arguments on any kernel and
    architecture (unlike ``wchan``, whose symbol names differ between kernels); a server
    thread otherwise waits in poll, accept or a futex, never with AT_FDCWD first. A FIFO's
    writer cannot be used to see the open: the GET would get it and answer at once (it
    reads the FIFO's stat size, 0).
    """
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "syscall").read_text().split()
        except OSError:
            continue
        in_call = len(fields) > 1 and fields[1].startswith("0x")
        if in_call and int(fields[1], 16) & 0xFFFFFFFF == _AT_FDCWD:
            return True
    return False


def _open_fifo_writer(fifo: Path) -> int | None:
    """The write end of ``fifo``, or None while nobody has its read end open (ENXIO)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise


@pytest.mark.timeout(30)
def test_fifo_get_hangs_but_does_not_block_stat(
    local_server: ServerProcess, lclient: httpx.Client, lws: tuple[str, Path]
) -> None:
    """A GET of a FIFO waits for a writer (in Go too); readers share the lock meanwhile."""
    path, local = lws
    fifo = local / "fifo"
    os.mkfifo(fifo)
    (local / "plain").write_bytes(b"x")
    answers: list[httpx.Response] = []

    def get_fifo() -> None:
        with httpx.Client(base_url=local_server.url, timeout=20) as c:
            answers.append(c.get("/files", params={"path": f"{path}/fifo"}))

    getter = threading.Thread(target=get_fifo, daemon=True)
    getter.start()
    assert local_server.proc is not None
    pid = local_server.proc.pid
    try:
        wait_until(lambda: _blocked_in_open_at(pid), timeout=10, message="the GET's open")
        with httpx.Client(base_url=local_server.url, timeout=3) as c:
            assert c.get("/stat", params={"path": f"{path}/plain"}).json()["size"] == 1
            listed = c.get("/directories", params={"path": path}).json()["files"]
            assert sorted(f["name"] for f in listed) == ["fifo", "plain"]
        assert not answers  # the FIFO GET still waits for a writer
    finally:
        # Be the writer it waits for (the open stops failing with ENXIO once its read end
        # is open): it reads EOF and answers.
        writer = wait_until(lambda: _open_fifo_writer(fifo), timeout=10, message="the GET")
        os.close(writer)
        getter.join(20)
    assert answers[0].status_code == 200 and answers[0].content == b""


@pytest.mark.timeout(30)
def test_digest_holds_the_read_lock_while_opening(
    local_server: ServerProcess, lws: tuple[str, Path]
) -> None:
    """Go's ``LocalFS.Open`` (under ``POST /digest``) holds the RLock across ``os.Open``:
    a digest of a FIFO waiting for a writer keeps a PUT of another file waiting too."""
    path, local = lws
    os.mkfifo(local / "fifo")
    assert local_server.proc is not None
    digests: list[httpx.Response] = []
    puts: list[httpx.Response] = []

    def digest_fifo() -> None:
        with httpx.Client(base_url=local_server.url, timeout=20) as c:
            body = {"algorithm": "md5", "path": f"{path}/fifo"}
            digests.append(c.post("/digest", json=body))

    def put_plain() -> None:
        with httpx.Client(base_url=local_server.url, timeout=20) as c:
            puts.append(c.put("/files", params={"path": f"{path}/plain"}, content=b"x"))

    digester = threading.Thread(target=digest_fifo, daemon=True)
    putter = threading.Thread(target=put_plain, daemon=True)
    digester.start()
    try:
        wait_until(lambda: _blocked_in_open_at(local_server.proc.pid), timeout=10)
        putter.start()
        # Waiting is the claim itself: without the lock the PUT answers in milliseconds.
        putter.join(timeout=1.0)
        assert putter.is_alive() and not puts, "the PUT did not wait for the digest's lock"
    finally:
        fd = wait_until(lambda: _open_fifo_writer(local / "fifo"), timeout=10)
        os.close(fd)
        digester.join()
        if putter.ident is not None:
            putter.join()
    assert digests[0].json()["digest"] == hashlib.md5(b"").hexdigest()
    assert puts[0].status_code == 200 and (local / "plain").read_bytes() == b"x"
