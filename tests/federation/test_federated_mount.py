"""Several AGFS servers in one kernel mount: each backend is one top-level directory.

What is written under a backend's directory lands on that server only; a backend that
dies fails by itself and comes back by itself; reloads, moves and run-time mounts act on
one backend. Every check of where data landed asks the server directly over HTTP.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import threading
import time

import pytest

from tests.federation.conftest import TIMEOUT, FederatedMount, run
from tests.support.faultproxy import FaultProxy
from tests.support.mount import mount_entry, wait_until

pytestmark = pytest.mark.timeout(60)


def test_files_land_on_the_server_of_their_backend(fed) -> None:
    for name in fed.servers:
        (fed.p(name, "memfs", "own.txt")).write_bytes(f"written under {name}".encode())
    for name, server in fed.servers.items():
        assert server.http.read("/memfs/own.txt") == f"written under {name}".encode()
    assert sorted(os.listdir(fed.mount.path)) == ["dc1", "dc2", "dc3", "reload"]
    assert mount_entry(fed.mount.path)["source"] == "agfs-federation"
    assert "dc2" not in os.listdir(fed.p("dc1"))  # each backend shows its own server only
    assert "reload" in os.listdir(fed.p("dc1"))
    assert stat.S_IMODE(os.stat(fed.p("dc1", "reload")).st_mode) == 0o200
    with pytest.raises(OSError) as made:
        os.mkdir(fed.p("not-a-backend"))
    assert made.value.errno == errno.EPERM  # the root holds backends only


def test_a_dead_backend_fails_alone_with_eio_and_comes_back_by_itself(fed) -> None:
    dc2 = fed.servers["dc2"]
    fed.p("dc2", "memfs", "f").write_bytes(b"before")
    dc2.kill()
    started = time.monotonic()
    with pytest.raises(OSError) as failed:
        fed.p("dc2", "memfs", "f").read_bytes()
    assert failed.value.errno == errno.EIO
    assert time.monotonic() - started < TIMEOUT + 5
    assert os.path.isdir(fed.p("dc2"))  # its directory still stats: `ls -l` of the root works
    listing = run(["ls", "-l", str(fed.mount.path)])
    assert listing.returncode == 0 and b"dc2" in listing.stdout, listing
    fed.p("dc1", "memfs", "alive").write_bytes(b"dc1 serves")
    assert fed.servers["dc1"].http.read("/memfs/alive") == b"dc1 serves"
    assert b"/dc2\t" + dc2.url.encode() + b"\tdown" in fed.p(".mounts").read_bytes()

    dc2.restart()  # same URL, no remount, no reload
    wait_until(lambda: os.listdir(fed.p("dc2", "memfs")) is not None, 10, ignore=(OSError,))
    fed.p("dc2", "memfs", "again").write_bytes(b"back")
    assert dc2.http.read("/memfs/again") == b"back"


def test_a_backend_reload_with_a_url_switches_that_backend_only(fed, make_server) -> None:
    other = make_server()
    other.http.write("/memfs/on-other", b"other server")
    fed.p("dc2", "memfs", "stays").write_bytes(b"dc2")
    fed.mount.control("dc1/reload", other.url + "\n")
    wait_until(lambda: fed.p("dc1", "memfs", "on-other").exists(), 5, message="switched")
    fed.p("dc1", "memfs", "new").write_bytes(b"to the other")
    assert other.http.read("/memfs/new") == b"to the other"
    assert not fed.servers["dc1"].http.exists("/memfs/new")
    assert fed.p("dc2", "memfs", "stays").read_bytes() == b"dc2"
    assert other.url in fed.p(".mounts").read_text()
    fed.mount.control("dc1/reload", "\n")  # empty: reconnect the same server
    assert fed.p("dc1", "memfs", "new").read_bytes() == b"to the other"


def test_the_root_reload_reconnects_every_backend_and_refuses_a_url(fed) -> None:
    with pytest.raises(OSError) as refused:
        fed.mount.control("reload", fed.servers["dc1"].url + "\n")
    assert refused.value.errno == errno.EINVAL
    fed.mount.control("reload", "\n")
    for name, server in fed.servers.items():
        fed.p(name, "memfs", "after").write_bytes(name.encode())
        assert server.http.read("/memfs/after") == name.encode()
    assert fed.mount.proc is not None
    fed.mount.proc.send_signal(signal.SIGHUP)  # the same as an empty root reload
    wait_until(
        lambda: fed.mount.log_file.read_text().count("reloaded every backend") >= 2,
        10,
        message="SIGHUP reconnected every backend",
    )
    assert fed.p("dc3", "memfs", "after").read_bytes() == b"dc3"


def test_mv_across_backends_copies_files_and_directories(fed) -> None:
    source = fed.p("dc1", "memfs")
    (source / "file").write_bytes(b"moved file")
    (source / "tree" / "sub").mkdir(parents=True)
    (source / "tree" / "sub" / "leaf").write_bytes(b"leaf")
    with pytest.raises(OSError) as cross:
        os.rename(source / "file", fed.p("dc2", "memfs", "file"))
    assert cross.value.errno == errno.EXDEV
    for name in ("file", "tree"):
        moved = run(["mv", str(source / name), str(fed.p("dc2", "memfs"))])
        assert moved.returncode == 0, moved.stderr
    dc1, dc2 = fed.servers["dc1"].http, fed.servers["dc2"].http
    assert dc2.read("/memfs/file") == b"moved file"
    assert dc2.read("/memfs/tree/sub/leaf") == b"leaf"
    assert not dc1.exists("/memfs/file") and not dc1.exists("/memfs/tree")
    with pytest.raises(OSError) as linked:
        os.link(fed.p("dc2", "memfs", "file"), fed.p("dc2", "memfs", "hard"))
    assert linked.value.errno == errno.EPERM


def test_backends_are_mounted_and_unmounted_at_run_time(fed, make_server) -> None:
    extra = make_server()
    mounts = fed.p(".mounts")
    assert stat.S_IMODE(os.stat(mounts).st_mode) == 0o600
    assert not fed.p("dc4").exists()
    fed.mount.control(".mounts", f"mount /dc4 {extra.url} root=/memfs\n")
    fed.p("dc4", "made-here").write_bytes(b"dc4")
    assert extra.http.read("/memfs/made-here") == b"dc4"  # root=/memfs: dc4 is /memfs
    assert f"/dc4\t{extra.url}\tup\t0" in mounts.read_text()
    for line, code in (
        (f"mount /dc4 {extra.url}", errno.EEXIST),
        (f"mount /a/b {extra.url}", errno.EINVAL),
        (f"mount /reload {extra.url}", errno.EINVAL),
        ("mount /dc5 ftp://nowhere", errno.EINVAL),
        (f"mount /dc5 {extra.url} colour=blue", errno.EINVAL),
        (f"mount /dc5 {extra.url} root=/nowhere", errno.EINVAL),
        ("mount /dc5 http://127.0.0.1:9", errno.EIO),  # nothing listens there
        ("unmount /dc9", errno.ENOENT),
    ):
        with pytest.raises(OSError) as refused:
            fed.mount.control(".mounts", line)
        assert refused.value.errno == code, line
    fed.mount.control(".mounts", "unmount /dc4\n")
    assert not fed.p("dc4").exists()
    assert "/dc4" not in mounts.read_text()
    assert sorted(os.listdir(fed.mount.path)) == ["dc1", "dc2", "dc3", "reload"]


def test_unmounting_a_backend_with_an_upload_pending_is_ebusy(fed, make_server) -> None:
    server = make_server()
    with FaultProxy(server.url, lifetime=60.0) as proxy:
        fed.mount.control(".mounts", f"mount /slow {proxy.url}\n")
        held = proxy.pause("PUT", "/files", path="held")
        closed = threading.Event()

        def write() -> None:
            fed.p("slow", "memfs", "held").write_bytes(b"pending")  # close waits for the PUT
            closed.set()

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        wait_until(lambda: proxy.counts["PUT /files"] >= 1, 10, message="the upload held")
        with pytest.raises(OSError) as busy:
            fed.mount.control(".mounts", "unmount /slow wait=0.5\n")
        assert busy.value.errno == errno.EBUSY
        assert "/slow" in fed.p(".mounts").read_text()  # it stays mounted
        held.release()
        writer.join(10)
        assert closed.is_set()
        assert server.http.read("/memfs/held") == b"pending"
        fed.mount.control(".mounts", "unmount /slow\n")
        assert not fed.p("slow").exists()


def test_stats_have_a_section_per_backend(fed) -> None:
    fed.p("dc3", "memfs", "x").write_bytes(b"x")
    stats = json.loads(fed.p(".agfs-stats").read_bytes())
    assert stats["url"] == "agfs-federation"
    assert sorted(stats["backends"]) == ["/dc1", "/dc2", "/dc3"]
    dc3 = stats["backends"]["/dc3"]
    assert dc3["url"] == fed.servers["dc3"].url and dc3["state"] == "up"
    assert dc3["requests"].get("PUT /files", 0) >= 1
    assert stats["backends"]["/dc1"]["requests"].get("PUT /files", 0) == 0


def test_a_spool_whose_backend_is_gone_is_reported_not_uploaded_elsewhere(
    make_server, fed_tmp
) -> None:
    first, second = make_server(), make_server()
    work = fed_tmp / "crash"
    options = [f"cache_dir={work / 'cache'}", f"timeout={TIMEOUT}"]
    crashed = FederatedMount(
        ["--map", f"/a={first.url}", "--map", f"/b={second.url}"],
        work / "mnt",
        workdir=work,
        options=options,
        name="first",
    ).start()
    try:
        with open(crashed.path / "b" / "memfs" / "unsaved", "wb") as f:
            f.write(b"spooled, never uploaded")
            f.flush()
            crashed.kill()  # a crash while the file is open: its spool stays
    except OSError:
        pass  # the close of a file on a dead mount
    finally:
        crashed.unmount()
    again = FederatedMount(
        ["--map", f"/a={first.url}"], work / "mnt", workdir=work, options=options, name="again"
    ).start()
    try:
        wait_until(
            lambda: (
                "/b/memfs/unsaved belongs to a backend this mount does not have"
                in again.log_file.read_text()
            ),
            10,
            message="the next mount to report the other backend's spool",
        )
        assert not first.http.exists("/memfs/unsaved")  # not on the backend now at /a
        # A new file is created by its first upload, which never came.
        assert not second.http.exists("/memfs/unsaved")
    finally:
        again.unmount()
