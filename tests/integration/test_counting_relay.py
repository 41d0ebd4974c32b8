"""The counting relay that request-count and handle-leak checks rely on, in front of the
session's server (the reference, or the real one under ``make conformance``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import SMALL_BODY, LiveServer, Workspace
from tests.support.counting import CountingRelay

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def relay(server: LiveServer) -> Iterator[CountingRelay]:
    relay = CountingRelay(server.url)
    try:
        yield relay
    finally:
        relay.close()


def test_counts_requests_and_finds_a_handle_left_open(relay: CountingRelay, ws: Workspace) -> None:
    path = f"{ws.mem}/counted"
    with httpx.Client(base_url=relay.url, timeout=10) as c:
        before = relay.counts()
        assert c.put("/files", params={"path": path}, content=b"abc").status_code == 200
        opened = c.post("/handles/open", params={"path": path, "flags": "0"})
        assert opened.status_code == 200, opened.text
        handle_id = opened.json()["handle_id"]  # the client gets the answer intact
        assert c.get(f"/handles/{handle_id}/read", params={"size": "3"}).content == b"abc"
        assert relay.delta(before) == {
            "PUT /files": 1,
            "POST /handles/open": 1,
            "GET /handles/{id}/read": 1,
        }
        assert relay.open_handles() == [handle_id]
        assert c.delete(f"/handles/{handle_id}").status_code == 200
    assert relay.open_handles() == []


@pytest.mark.parametrize("fault", ["drop", "cut"])
def test_a_handle_whose_open_answer_is_lost_is_still_found(
    relay: CountingRelay, server: LiveServer, ws: Workspace, fault: str
) -> None:
    """The server opened the handle, the client never learnt its id: exactly the leak a
    leak check is for."""
    path = f"{ws.mem}/lost-answer"
    if fault == "drop":
        relay.proxy.drop("POST", "/handles/open", applied=True, count=1)
    else:
        relay.proxy.cut("POST", "/handles/open", count=1)
    with httpx.Client(base_url=relay.url, timeout=10) as c:
        assert c.put("/files", params={"path": path}, content=b"abc").status_code == 200
        with pytest.raises(httpx.HTTPError):
            c.post("/handles/open", params={"path": path, "flags": "0"}).json()
    leaked = relay.open_handles()
    try:
        assert len(leaked) == 1, leaked
    finally:
        with httpx.Client(base_url=server.url, timeout=10) as direct:
            for handle_id in leaked:
                direct.delete(f"/handles/{handle_id}")
    assert relay.open_handles() == []


def test_a_refused_open_is_no_handle(relay: CountingRelay, ws: Workspace) -> None:
    with httpx.Client(base_url=relay.url, timeout=10) as c:
        refused = c.post("/handles/open", params={"path": f"{ws.local}/x", "flags": "0"})
    assert refused.status_code >= 400  # localfs has no handle API (or no such file)
    assert relay.proxy.opened_handles() == [] and relay.open_handles() == []


def test_an_answer_to_a_body_over_the_limit_is_relayed(small_server: LiveServer) -> None:
    """The real server answers 413 after limit+1 bytes and closes while the body is still
    being sent; the relay must pass the 413 on, not reset the client."""
    relay = CountingRelay(small_server.url)
    try:
        with httpx.Client(base_url=relay.url, timeout=10) as c:
            r = c.put("/files", params={"path": "/memfs/big"}, content=b"x" * (8 << 20))
        assert r.status_code == 413, r.text
        assert r.json()["error"] == f"request body exceeds maximum size of {SMALL_BODY} bytes"
    finally:
        relay.close()
