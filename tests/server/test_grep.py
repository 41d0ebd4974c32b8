"""POST /grep runs Go's RE2: linear time, Go's syntax, Go's 400s for what RE2 refuses."""

from __future__ import annotations

import threading
import time

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
