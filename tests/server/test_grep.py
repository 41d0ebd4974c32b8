"""POST /grep runs Go's RE2: linear time, Go's syntax, Go's 400s for what RE2 refuses."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import err
from tests.support.server import ServerProcess

#: Catastrophic backtracking for Python's ``re`` (about 13 s a line), linear for RE2.
REDOS_PATTERN = "(a+)+$"
REDOS_LINE = b"a" * 26 + b"!"


@pytest.mark.timeout(60)
def test_redos_pattern_answers_fast_and_health_stays_fast(
    server: ServerProcess, client: httpx.Client, ws: str
) -> None:
    client.put("/files", params={"path": f"{ws}/evil"}, content=(REDOS_LINE + b"\n") * 3)
    health_times: list[float] = []
    grep_done = threading.Event()

    def probe_health() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as probe:
            while not grep_done.is_set() or not health_times:  # at least one probe
                start = time.monotonic()
                probe.get("/health").raise_for_status()
                health_times.append(time.monotonic() - start)

    prober = threading.Thread(target=probe_health)
    prober.start()
    try:
        start = time.monotonic()
        # backtracking takes ~40 s; linear matching well under a second, even when loaded
        with httpx.Client(base_url=server.url, timeout=20) as c:
            r = c.post("/grep", json={"path": f"{ws}/evil", "pattern": REDOS_PATTERN})
        elapsed = time.monotonic() - start
    finally:
        grep_done.set()
        prober.join()
    assert r.status_code == 200 and r.json() == {"matches": None, "count": 0}
    assert elapsed < 10.0, f"grep took {elapsed:.1f} s"
    assert health_times and max(health_times) < 10.0


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a(?=b)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
        (r"(a)\1", "error parsing regexp: invalid escape sequence: `\\1`"),
        ("(ab", "error parsing regexp: missing closing ): `(ab`"),
        ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
    ],
)
def test_patterns_go_rejects_are_400(
    client: httpx.Client, ws: str, pattern: str, message: str
) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"ab\n")
    r = client.post("/grep", json={"path": f"{ws}/f", "pattern": pattern})
    assert r.status_code == 400
    assert err(r) == "invalid regex pattern: " + message


def test_go_syntax_named_groups_and_case_flag(client: httpx.Client, ws: str) -> None:
    client.put("/files", params={"path": f"{ws}/f"}, content=b"Alpha\nbeta\n")
    r = client.post(
        "/grep", json={"path": f"{ws}/f", "pattern": "(?P<x>ALPHA)", "case_insensitive": True}
    )
    assert r.json()["matches"] == [{"file": f"{ws}/f", "line": 1, "content": "Alpha"}]


def test_invalid_utf8_lines_match_as_go_reads_them(
    lclient: httpx.Client, lws: tuple[str, Path]
) -> None:
    """Go's ``MatchString`` reads each invalid byte as U+FFFD (one per byte, so ``..``
    spans two of them), and its JSON encoder writes each as the escape ``\\ufffd``."""
    path, local = lws
    (local / "bad.txt").write_bytes(b"caf\xe9x line\nplain\nok \xff\xfe end\ntrunc \xe2\x82!\n")

    def grep(pattern: str) -> httpx.Response:
        return lclient.post("/grep", json={"path": f"{path}/bad.txt", "pattern": pattern})

    r = grep("caf.x")
    assert r.json()["matches"] == [
        {"file": f"{path}/bad.txt", "line": 1, "content": "caf\ufffdx line"}
    ]
    assert b'"content":"caf\\ufffdx line"' in r.content
    assert [m["line"] for m in grep("ok .. end").json()["matches"]] == [3]
    assert grep("ok . end").json()["matches"] is None
    assert [m["line"] for m in grep("trunc \ufffd\ufffd!").json()["matches"]] == [4]
    assert [m["line"] for m in grep("\ufffd").json()["matches"]] == [1, 3, 4]


def test_request_nested_up_to_go_limit_decodes(client: httpx.Client, ws: str) -> None:
    """Go decodes a body nested up to 10000 levels (the object counts as one) and
    refuses one level more; Python's own decoder stops near 1000."""
    client.put("/files", params={"path": f"{ws}/f"}, content=b"hello\n")

    def grep_with_nested(levels: int) -> httpx.Response:
        head = f'{{"path": "{ws}/f", "pattern": "hel", "x": '.encode()
        return client.post("/grep", content=head + b"[" * levels + b"]" * levels + b"}")

    for levels in (5000, 9999):
        r = grep_with_nested(levels)
        assert r.status_code == 200, (levels, r.text[:200])
        assert r.json()["count"] == 1
    r = grep_with_nested(10000)
    assert r.status_code == 400
    assert err(r) == "invalid request body: invalid character '[' exceeded max depth"
