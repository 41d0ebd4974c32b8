"""No hangs: every failing call returns, with the right errno, in bounded time, through a
real kernel mount (``-o timeout=3``) behind the fault proxy.

- refused connections: EIO after the short retry budget (about 2 s), never the deadline;
  the mount root still answers (``df``, ``stat``, ``mountpoint``);
- a server that accepts and never answers: ETIMEDOUT after about the deadline, never
  later, the program exits, and other files of the mount keep working meanwhile;
- 502/503/504 bursts shorter than the retry budget are invisible to idempotent requests;
  longer ones give EIO within the budget;
- non-idempotent requests (rename, create, unlink, mkdir) are never retried blindly: a 503
  or a lost connection gives an error after exactly one request, whether the server carried
  it out or not.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from tests.faults.conftest import (
    DEADLINE,
    RETRY_BUDGET,
    SLACK,
    Metrics,
    Rig,
    finish_probe,
    finish_tool,
    new_dir,
    probe,
    spawn_tool,
    start_probe,
    wait_until,
)
from tests.faults.probe import pattern

#: A refused connection costs the retry budget once per request the kernel sends for one
#: call (a stale dentry is looked up twice, a failed readahead is read again).
FAST_FAIL = 2 * RETRY_BUDGET + 2.0
#: The mountpoint itself answers from its last attributes, after asking the server first.
ROOT_BOUND = 2 * RETRY_BUDGET + SLACK
#: A stalled request ends after the deadline; generous for a noisy machine, but well
#: below two deadlines.
STALL_MIN = DEADLINE * 0.8
STALL_MAX = DEADLINE + 2.5
#: The mount for the refused-connection test has a long deadline, so that failing within
#: the retry budget is clearly not waiting for the deadline.
LONG_DEADLINE = 20.0


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_stalled(what: str, result: dict, problems: list[str], metrics: Metrics) -> None:
    """ETIMEDOUT after about the deadline; anything else is recorded in ``problems``."""
    metrics.blocked("stalled server (timeout=3)", result.get("elapsed"))
    if result["ok"] or result["errno"] != "ETIMEDOUT":
        problems.append(f"{what}: expected ETIMEDOUT, got {result}")
    elif not STALL_MIN <= result["elapsed"] <= STALL_MAX:
        problems.append(
            f"{what}: blocked {result['elapsed']:.2f}s with -o timeout={DEADLINE:g} "
            f"(expected {STALL_MIN:.1f}-{STALL_MAX:.1f}s)"
        )


# -- refused connections ------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_refused_connections_fail_fast_with_eio(rig: Rig, metrics: Metrics) -> None:
    """Connections refused: every call fails with EIO within the short retry budget (on a
    mount whose deadline is 20 s), and the mountpoint itself still answers."""
    remote, _ = new_dir(rig)
    for i in range(6):
        rig.http.mkdir(f"{remote}/d{i}")
        rig.http.write(f"{remote}/d{i}/f", b"hello")
    # names stay known to the kernel (so the calls below run in parallel, one directory
    # each), attributes and misses are asked for every time
    mount = rig.new_mount(
        timeout=LONG_DEADLINE, mountpoint=rig.base / "mnt-long", options=("entry_timeout=60",)
    )
    local = mount.path / remote.lstrip("/")
    for i in range(6):
        assert (local / f"d{i}" / "f").read_bytes() == b"hello"
    mp = str(mount.path)

    rig.proxy.refuse()
    probes = {
        "stat": start_probe("stat", str(local / "d0" / "f")),
        "listdir": start_probe("listdir", str(local / "d1")),
        "read": start_probe("read", str(local / "d2" / "f")),
        "stat missing": start_probe("stat", str(local / "d3" / "never-seen")),
        "write": start_probe("write", str(local / "d4" / "new"), "1000", "1"),
    }
    tools = {
        "ls": spawn_tool(["ls", "-l", str(local / "d5")], timeout=60),
        "cat": spawn_tool(["cat", str(local / "d2" / "f")], timeout=60),
    }
    root_tools = {
        name: spawn_tool(cmd, timeout=60)
        for name, cmd in {
            "df": ["df", mp],
            "stat": ["stat", mp],
            "mountpoint": ["mountpoint", mp],
            "cd": ["sh", "-c", f"cd '{mp}'"],
        }.items()
    }
    for what, proc in probes.items():
        result = finish_probe(proc, timeout=60)
        assert not result["ok"], f"{what} succeeded with the server refusing: {result}"
        assert result["errno"] == "EIO", (what, result)
        assert result["elapsed"] <= FAST_FAIL, (what, result)
        metrics.blocked("refused connection (timeout=20)", result["elapsed"])
    for what, proc in tools.items():
        code, out, secs = finish_tool(proc)
        assert code != 0, f"{what} succeeded with the server refusing"
        assert "Input/output error" in out, (what, out)
        assert secs <= FAST_FAIL, (what, secs)
        metrics.blocked("refused connection (timeout=20)", secs)
    # the mountpoint itself keeps its attributes: df, stat, cd and mountpoint work (each
    # look at the root still asks the server first, within the retry budget)
    for what, proc in root_tools.items():
        code, out, secs = finish_tool(proc)
        assert code == 0, (what, out)
        assert secs <= ROOT_BOUND, (what, secs)
        metrics.blocked("mount root while refused", secs)
    assert mount.proc is not None and mount.proc.poll() is None, mount.describe()


# -- a server that never answers ----------------------------------------------------------


@pytest.mark.timeout(90)
def test_stalled_server_gives_etimedout_after_the_deadline(rig: Rig, metrics: Metrics) -> None:
    """stat, ls and close() against a server that never answers, at the same time (each in
    its own directory; programs and probes): ETIMEDOUT after about the deadline, and every
    program exits by itself; meanwhile other files answer; afterwards the mount serves and
    the timed-out upload lands in the background."""
    remote, local = new_dir(rig)
    for sub in ("s", "l", "w", "o", "ts", "tl"):
        rig.http.mkdir(f"{remote}/{sub}")
    rig.http.write(f"{remote}/s/stat-me", b"x")
    rig.http.write(f"{remote}/ts/stat-me", b"x")
    rig.http.mkdir(f"{remote}/l/list-me")
    rig.http.mkdir(f"{remote}/tl/list-me")
    rig.http.write(f"{remote}/o/other", pattern(7, 50_000))
    stalls = [
        rig.proxy.stall("GET", "/stat", path="stat-me"),
        rig.proxy.stall("GET", "/directories", path="list-me"),
        rig.proxy.stall("PUT", "/files", path="write-me"),
    ]
    data = pattern(8, 300_000)
    started = time.monotonic()
    procs = {
        "stat": start_probe("stat", str(local / "s" / "stat-me")),
        "listdir": start_probe("listdir", str(local / "l" / "list-me")),
        "write": start_probe("write", str(local / "w" / "write-me"), str(len(data)), "8"),
    }
    # programs exit by themselves, with "Connection timed out" (never killed by the guard)
    tools = {
        "stat(1)": spawn_tool(["stat", str(local / "ts" / "stat-me")], timeout=STALL_MAX + 20),
        "ls(1)": spawn_tool(["ls", str(local / "tl" / "list-me")], timeout=STALL_MAX + 20),
    }
    # while those hang on the server, the rest of the mount answers at once
    other = probe("read", str(local / "o" / "other"), timeout=30)
    assert other["ok"], other
    assert other["elapsed"] < DEADLINE * 0.5, f"one stalled request blocked another: {other}"

    results = {op: finish_probe(proc, timeout=STALL_MAX + 30) for op, proc in procs.items()}
    total = time.monotonic() - started
    problems: list[str] = []
    for op, result in results.items():
        _check_stalled(op, result, problems, metrics)
    for what, proc in tools.items():
        code, out, secs = finish_tool(proc)
        metrics.blocked("stalled server (timeout=3)", secs)
        if code == 0 or "Connection timed out" not in out:
            problems.append(f"{what}: expected 'Connection timed out', got {code}: {out!r}")
        elif not STALL_MIN <= secs <= STALL_MAX:
            problems.append(f"{what}: blocked {secs:.2f}s with -o timeout={DEADLINE:g}")
    assert results["write"]["step"] == "close", results["write"]
    assert total <= STALL_MAX + SLACK, f"the stalled calls ran one after the other: {total:.1f}s"
    assert all(rule.hits >= 1 for rule in stalls), stalls

    # the server answers again: the same mount serves, and the timed-out upload lands
    rig.proxy.clear()
    assert probe("stat", str(local / "s" / "stat-me"))["ok"]
    assert probe("listdir", str(local / "l" / "list-me"))["ok"]
    wait_until(
        lambda: (
            rig.http.exists(f"{remote}/w/write-me")
            and rig.http.sha256(f"{remote}/w/write-me") == _sha(data)
        ),
        timeout=45,
        message="the upload that timed out to be retried in the background",
    )
    metrics.verified(len(data))
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(60)
def test_stalled_read_gives_etimedout_after_one_deadline(rig: Rig, metrics: Metrics) -> None:
    """A read (``cat``, ``read()``) of a server that accepts and never answers returns
    ETIMEDOUT after about one deadline, not one per request the kernel retries."""
    remote, local = new_dir(rig)
    for sub in ("a", "b"):
        rig.http.mkdir(f"{remote}/{sub}")
        rig.http.write(f"{remote}/{sub}/f", pattern(9, 100_000))
    rule = rig.proxy.stall("GET", "/files", path=remote)
    problems: list[str] = []
    cat = spawn_tool(["cat", str(local / "b" / "f")], timeout=60)
    _check_stalled("read()", probe("read", str(local / "a" / "f"), timeout=60), problems, metrics)
    code, out, secs = finish_tool(cat)
    metrics.blocked("stalled server (timeout=3)", secs)
    if code == 0 or "Connection timed out" not in out:
        problems.append(f"cat: expected 'Connection timed out', got {code}: {out!r}")
    elif not STALL_MIN <= secs <= STALL_MAX:
        problems.append(f"cat: blocked {secs:.2f}s with -o timeout={DEADLINE:g}")
    if problems:
        problems.append(f"GET /files requests stalled: {rule.hits}")
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(90)
def test_stalled_lookups_in_one_directory_each_end_after_the_deadline(
    rig: Rig, metrics: Metrics
) -> None:
    """Three programs stat three names in one directory of a stalled server (a shell's
    completion, ``ls -l``, a build tool...): each gets ETIMEDOUT after about the deadline,
    not one deadline per program queued before it."""
    remote, local = new_dir(rig)
    rig.proxy.stall("GET", "/stat", path=f"{remote}/stalled")
    procs = [start_probe("stat", str(local / f"stalled{i}")) for i in range(3)]
    problems: list[str] = []
    for i, proc in enumerate(procs):
        _check_stalled(f"stat #{i}", finish_probe(proc, timeout=60), problems, metrics)
    assert not problems, "\n".join(problems)


# -- 502/503/504 --------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("status", [502, 503, 504])
def test_short_5xx_burst_is_invisible(srig: Rig, status: int, metrics: Metrics) -> None:
    remote, local = new_dir(srig)
    data = pattern(3, 200_000)
    srig.http.write(f"{remote}/f", data)
    srig.http.mkdir(f"{remote}/d")
    checks = [
        ("GET", "/stat", "stat", local / "f"),
        ("GET", "/files", "read", local / "f"),
        ("GET", "/directories", "listdir", local / "d"),
    ]
    for method, route, op, path in checks:
        rule = srig.proxy.fail(status, method, route, path=f"{remote}/{path.name}", count=3)
        result = probe(op, str(path))
        assert result["ok"], f"{op} saw a {status} burst of 3: {result}"
        assert rule.hits == 3, rule
        metrics.blocked(f"{status} burst of 3 (invisible)", result["elapsed"])
        if op == "read":
            assert result["extra"][0]["sha256"] == _sha(data)
            metrics.verified(len(data))


@pytest.mark.timeout(60)
def test_long_503_burst_gives_eio_within_the_retry_budget(srig: Rig, metrics: Metrics) -> None:
    remote, local = new_dir(srig)
    srig.http.write(f"{remote}/f", b"x")
    rule = srig.proxy.fail(503, "GET", "/stat", path=f"{remote}/f")
    result = probe("stat", str(local / "f"), timeout=60)
    assert not result["ok"] and result["errno"] == "EIO", result
    assert result["elapsed"] <= FAST_FAIL, result
    assert rule.hits >= 2, "a 503 on stat was not retried"
    metrics.blocked("endless 503", result["elapsed"])
    srig.proxy.clear()
    assert probe("stat", str(local / "f"))["ok"]


@pytest.mark.timeout(60)
def test_503_on_rename_is_not_retried(srig: Rig) -> None:
    remote, local = new_dir(srig)
    srig.http.write(f"{remote}/a", b"A")
    before = srig.proxy.counts["POST /rename"]
    rule = srig.proxy.fail(503, "POST", "/rename", count=1)
    result = probe("rename", str(local / "a"), str(local / "b"))
    assert not result["ok"], result
    assert result["errno"] == "EIO", result
    assert rule.hits == 1
    assert srig.proxy.counts["POST /rename"] == before + 1, "a rename was sent again after a 503"
    assert srig.http.read(f"{remote}/a") == b"A"
    assert not srig.http.exists(f"{remote}/b")
    # the next rename goes through, once
    assert probe("rename", str(local / "a"), str(local / "b"))["ok"]
    assert srig.proxy.counts["POST /rename"] == before + 2
    assert srig.http.read(f"{remote}/b") == b"A"
    assert not srig.http.exists(f"{remote}/a")


# -- lost connections on requests that must not be repeated ----------------------------------


def _prepare(rig: Rig, remote: str, op: str) -> None:
    if op in ("rename", "unlink"):
        rig.http.write(f"{remote}/a", b"A")


_NON_IDEMPOTENT = {
    # op: (method, route, probe args (names under the test dir), state if applied, if not)
    # (A new file, O_EXCL or not, is created by its whole-file PUT at close, which is safe
    # to repeat: see test_a_new_files_upload_whose_answer_is_lost_is_sent_again.)
    "rename": ("POST", "/rename", ("a", "b"), ({"b"}, {"a"})),
    "unlink": ("DELETE", "/files", ("a",), (set(), {"a"})),
    "mkdir": ("POST", "/directories", ("d",), ({"d"}, set())),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("applied", [False, True], ids=["not-applied", "applied"])
@pytest.mark.parametrize("op", sorted(_NON_IDEMPOTENT))
def test_lost_connection_on_non_idempotent_request(
    srig: Rig, op: str, applied: bool, metrics: Metrics
) -> None:
    """The connection drops after the request was sent: the program gets EIO, the request
    went to the server exactly once, and the server's state is the one it chose."""
    method, route, names, (if_applied, if_not) = _NON_IDEMPOTENT[op]
    remote, local = new_dir(srig)
    _prepare(srig, remote, op)
    rule = srig.proxy.drop(method, route, applied=applied, path=remote)
    result = probe(op, *(str(local / name) for name in names), timeout=60)
    assert not result["ok"], f"{op} reported success though its answer was lost: {result}"
    assert result["errno"] == "EIO", result
    assert result["elapsed"] <= FAST_FAIL, result
    assert rule.hits == 1, f"{method} {route} was sent {rule.hits} times (retried blindly)"
    metrics.blocked("lost connection (non-idempotent)", result["elapsed"])
    expected = if_applied if applied else if_not
    assert srig.http.names(remote) == expected
    srig.proxy.clear()
    assert os.path.isdir(local)  # the mount goes on


@pytest.mark.timeout(60)
@pytest.mark.parametrize("applied", [False, True], ids=["not-applied", "applied"])
def test_a_new_files_upload_whose_answer_is_lost_is_sent_again(
    srig: Rig, applied: bool, metrics: Metrics
) -> None:
    """An O_EXCL create sends nothing until the upload at close, a whole-file PUT: when
    its answer is lost it is sent again, and the file is there once, whole."""
    remote, local = new_dir(srig)
    rule = srig.proxy.drop("PUT", "/files", applied=applied, path=remote, count=1)
    creates = srig.proxy.watch("POST", "/files", path=remote)
    result = probe("create-excl", str(local / "c"), timeout=60)
    assert result["ok"], result
    metrics.blocked("lost answer to a new file's upload", result["elapsed"])
    # Nothing written: uploaded at the release, a moment after close.
    wait_until(lambda: srig.http.names(remote) == {"c"}, message="the new file uploaded")
    assert rule.hits == 1 and creates.hits == 0
    srig.proxy.clear()


# -- answers cut short ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_answers_cut_short(srig: Rig, metrics: Metrics) -> None:
    """A body cut mid-way (the connection closes before Content-Length bytes arrived):
    once, it is invisible to a read (retried); always, the read gets EIO within the
    budget; during the fetch of an existing file changed in place (``>>``), the change
    fails and the server's file is left as it was (never a truncated copy uploaded)."""
    remote, local = new_dir(srig)
    data = pattern(13, 300_000)
    for name in ("f", "g", "h"):  # one each: the kernel keeps pages of a file it read
        srig.http.write(f"{remote}/{name}", data)
    once = srig.proxy.cut("GET", "/files", path=f"{remote}/f", count=1)
    read = probe("read", str(local / "f"))
    assert read["ok"] and read["extra"][0]["sha256"] == _sha(data), read
    assert once.hits == 1
    metrics.verified(len(data))

    srig.proxy.cut("GET", "/files", path=f"{remote}/g")
    read = probe("read", str(local / "g"), timeout=60)
    assert not read["ok"] and read["errno"] == "EIO", read
    assert read["elapsed"] <= FAST_FAIL, read
    metrics.blocked("body cut short", read["elapsed"])

    always = srig.proxy.cut("GET", "/files", path=f"{remote}/h")
    uploads = srig.proxy.watch("PUT", "/files", path=f"{remote}/h")
    appended = probe("append", str(local / "h"), "tail", timeout=60)
    assert not appended["ok"] and appended["errno"] == "EIO", appended
    assert appended["elapsed"] <= FAST_FAIL, appended
    metrics.blocked("body cut short", appended["elapsed"])
    assert uploads.hits == 0, "a file whose fetch was cut short was uploaded"
    assert srig.http.sha256(f"{remote}/h") == _sha(data)
    srig.proxy.remove(always)
    assert probe("append", str(local / "h"), "tail")["ok"]
    assert srig.http.read(f"{remote}/h") == data + b"tail"
    metrics.verified(len(data))
