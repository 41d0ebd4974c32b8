"""Stats and logs: ``/.agfs-stats``, ``agfs-fuse stats``, ``--debug``, ``--systemd``, quiet mode."""

from __future__ import annotations

import errno
import json
import os
import re
import stat

import pytest

from tests.support.mount import run_mount_cli, wait_until

pytestmark = pytest.mark.timeout(60)

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")
JOURNAL_LINE = re.compile(r"^<([0-7])>[A-Za-z_][\w.]*: \S")
OP_LINE = re.compile(
    r" DEBUG agfs_fuse\.operations: (\w+)\(.*\) ok \((\d+\.\d) ms\)$", re.MULTILINE
)
HTTP_LINE = re.compile(
    r" DEBUG agfs_fuse\.client: (GET|PUT|POST|DELETE|HEAD) (/\S*) (\S*) ?"
    r"-> (\S+) \((\d+\.\d) ms\)$",
    re.MULTILINE,
)
TOP_KEYS = {
    "url",
    "requests_total",
    "requests",
    "errors",
    "bytes_sent",
    "bytes_received",
    "latency_ms",
    "attr_cache",
    "pending_uploads",
    "kept_spools",
    "open_files",
    "page_cache",
}


def file_operations(local) -> None:
    """A little of everything: create, write, read, list, stat, rename, mkdir, unlink."""
    (local / "a.txt").write_text("hello\n")
    assert (local / "a.txt").read_text() == "hello\n"
    os.mkdir(local / "sub")
    (local / "a.txt").rename(local / "sub" / "b.txt")
    assert os.listdir(local / "sub") == ["b.txt"]
    assert os.stat(local / "sub" / "b.txt").st_size == 6
    (local / "sub" / "b.txt").unlink()
    os.rmdir(local / "sub")


def test_stats_file_is_json_with_the_documented_keys(make_mount, server):
    mount = make_mount(server.url)
    stats = mount.stats()
    assert set(stats) >= TOP_KEYS, TOP_KEYS - set(stats)
    assert stats["url"] == server.url
    assert set(stats["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert set(stats["attr_cache"]) >= {"hits", "misses", "hit_rate"}
    assert set(stats["page_cache"]) >= {"opens_kept", "opens_dropped"}
    assert stats["requests_total"] == sum(stats["requests"].values()) > 0
    assert "GET /health" in stats["requests"]  # the mount-time check counts
    latency = stats["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert 0.0 <= stats["attr_cache"]["hit_rate"] <= 1.0
    assert stats["pending_uploads"] == stats["open_files"] == 0


def test_stats_count_requests_bytes_and_errors(make_mount, server, remote_dir):
    size = 256 * 1024 + 3
    payload = os.urandom(size)
    server.http.write(f"{remote_dir}/known.bin", payload)
    mount = make_mount(server.url)
    local = mount.path / remote_dir.lstrip("/")
    before = mount.stats()

    assert (local / "known.bin").read_bytes() == payload
    after_read = mount.stats()
    assert after_read["requests_total"] > before["requests_total"]
    assert after_read["bytes_received"] - before["bytes_received"] >= size

    written = os.urandom(100_000)
    (local / "out.bin").write_bytes(written)
    after_write = mount.stats()
    assert after_write["bytes_sent"] - after_read["bytes_sent"] >= len(written)
    puts = after_write["requests"].get("PUT /files", 0)
    assert puts > after_read["requests"].get("PUT /files", 0)
    assert server.http.read(f"{remote_dir}/out.bin") == written

    errors_before = sum(after_write["errors"].values())

    def a_miss_was_counted() -> bool:
        # A listing younger than attr_timeout answers for the missing name with no
        # request; once it is older, the server is asked and its 404 counts.
        assert not (local / "no-such-file").exists()
        return sum(mount.stats()["errors"].values()) > errors_before

    wait_until(a_miss_was_counted, message="a 404 from the server counted as an error")


def test_stats_show_open_files_and_pending_uploads(make_mount, server, remote_dir):
    mount = make_mount(server.url)
    local = mount.path / remote_dir.lstrip("/")
    fd = os.open(local / "held.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"not uploaded yet")
        held = mount.stats()
        assert held["open_files"] >= 1
        assert held["pending_uploads"] == 1
    finally:
        os.close(fd)
    done = wait_until(
        lambda: (s := mount.stats())["pending_uploads"] == 0 and s["open_files"] == 0 and s,
        timeout=10,
        message="the upload to finish and the file to close",
    )
    assert done["pending_uploads"] == 0
    assert server.http.read(f"{remote_dir}/held.bin") == b"not uploaded yet"


def test_stats_file_is_hidden_read_only_and_found_by_name(make_mount, server):
    mount = make_mount(server.url)
    names = os.listdir(mount.path)
    assert ".agfs-stats" not in names
    assert "reload" in names  # the other control file is listed
    info = os.stat(mount.path / ".agfs-stats")
    assert stat.S_ISREG(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o444
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        with pytest.raises(OSError) as refused:
            fd = os.open(mount.path / ".agfs-stats", flags)
            try:
                os.write(fd, b"{}")
            finally:
                os.close(fd)
        assert refused.value.errno in (errno.EACCES, errno.EPERM, errno.EBADF), refused.value
    with pytest.raises(OSError):
        os.unlink(mount.path / ".agfs-stats")
    assert "requests_total" in mount.stats()
    assert mount.alive()


def test_stats_command_prints_a_table(make_mount, server):
    mount = make_mount(server.url)
    done = run_mount_cli(["stats", str(mount.path)])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    rows = {}
    for line in done.stdout.splitlines():
        name, _, value = line.partition("  ")
        rows[name.strip()] = value.strip()
    assert rows["url"] == server.url
    assert int(rows["requests_total"]) > 0
    assert "latency_ms.p50" in rows and "attr_cache.hit_rate" in rows
    assert any(name.startswith("requests.GET ") for name in rows)

    raw = run_mount_cli(["stats", str(mount.path), "--json"])
    assert raw.returncode == 0
    assert json.loads(raw.stdout)["url"] == server.url


def test_stats_command_on_a_plain_directory_fails_in_one_line(workdir):
    plain = workdir / "not-a-mount"
    plain.mkdir()
    done = run_mount_cli(["stats", str(plain)])
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agfs-fuse: error: ") and str(plain) in lines[0]


def test_default_log_is_quiet_during_file_operations(make_mount, server, remote_dir):
    mount = make_mount(server.url)
    # the mount answers a moment before its "mounted" line reaches the log file
    wait_until(
        lambda: " INFO agfs_fuse.mount: mounted " in mount.log(), message="the 'mounted' line"
    )
    at_mount = mount.log()
    file_operations(mount.path / remote_dir.lstrip("/"))
    assert mount.stats()["requests_total"] > 10
    assert mount.log() == at_mount, "new log lines during normal operations:\n" + mount.log()


def test_debug_log_times_fuse_ops_and_http_requests(make_mount, server, remote_dir):
    mount = make_mount(server.url, extra_args=["--debug"])
    file_operations(mount.path / remote_dir.lstrip("/"))
    log = mount.log()
    ops = {m.group(1) for m in OP_LINE.finditer(log)}
    assert {"lookup", "create", "write", "flush", "read", "mkdir", "rename", "unlink"} <= ops, ops
    requests = [(m.group(1), m.group(2), m.group(3)) for m in HTTP_LINE.finditer(log)]
    routes = {(method, route) for method, route, _ in requests}
    assert {("GET", "/health"), ("PUT", "/files"), ("POST", "/directories")} <= routes, routes
    assert any(path.endswith("/a.txt") for _, _, path in requests)
    untimed = [
        line for line in log.splitlines() if "agfs_fuse.client" in line and "ms)" not in line
    ]
    assert untimed == [], untimed


@pytest.mark.parametrize("how", ["--systemd", "JOURNAL_STREAM"])
def test_journal_lines_have_priorities_and_no_timestamps(make_mount, server, remote_dir, how):
    extra_args = ["--debug"]
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if how == "--systemd":
        extra_args.append("--systemd")
    else:
        env["JOURNAL_STREAM"] = "8:12345"
    mount = make_mount(
        server.url, options=["insecure"], extra_args=extra_args, env=env, log_to_file=False
    )
    file_operations(mount.path / remote_dir.lstrip("/"))
    mount.unmount()
    lines = [line for line in mount.output().splitlines() if line and not line.startswith("  ")]
    assert lines, "nothing logged"
    bad = [line for line in lines if not JOURNAL_LINE.match(line) or TIMESTAMP.search(line)]
    assert bad == [], bad
    priorities = {JOURNAL_LINE.match(line).group(1) for line in lines}
    assert {"4", "6", "7"} <= priorities, priorities  # insecure warning, mounted, debug
    assert any(line.startswith("<6>agfs_fuse.mount: mounted ") for line in lines)
    assert any(line.startswith("<4>agfs_fuse.connect: -o insecure") for line in lines)
