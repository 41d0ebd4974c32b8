"""Which requests the client retries, and that a retried upload resends its whole body.

trio's MockClock jumps over the backoff pauses, so no test sleeps.
"""

import random
import ssl

import httpx
import pytest
import trio
import trio.testing

from agfs_fuse import errors
from agfs_fuse.client import AgfsClient
from agfs_fuse.retry import Backoff


def run_with(handler, action):
    async def main():
        client = AgfsClient(
            "http://agfs.test/api/v1",
            transport=httpx.MockTransport(handler),
            backoff=Backoff(budget=2.0, rng=random.Random(0)),
        )
        try:
            return await action(client)
        finally:
            await client.aclose()

    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class Flaky:
    """Fails the first ``failures`` requests with ``fault``, then answers ``ok``."""

    def __init__(self, failures, fault, ok):
        self.failures, self.fault, self.ok = failures, fault, ok
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        self.requests.append(request)
        if len(self.requests) <= self.failures:
            if isinstance(self.fault, int):
                return httpx.Response(self.fault, text="bad gateway")
            raise self.fault
        return self.ok(request)


STAT = {"name": "a", "size": 1, "mode": 420, "modTime": "2026-01-01T00:00:00Z", "isDir": False}


def test_refused_connections_are_retried_for_any_request():
    flaky = Flaky(3, httpx.ConnectError("refused"), lambda r: httpx.Response(200, json={}))
    run_with(flaky, lambda c: c.rename("/a", "/b"))
    assert len(flaky.requests) == 4


def test_a_dead_server_gives_up_within_the_budget():
    flaky = Flaky(10**6, httpx.ConnectError("refused"), None)

    async def action(client):
        started = trio.current_time()
        with pytest.raises(errors.ServerUnreachable):
            await client.stat("/a")
        return trio.current_time() - started

    waited = run_with(flaky, action)
    assert waited <= 2.0
    assert 4 <= len(flaky.requests) <= 40


@pytest.mark.parametrize(
    ("fault", "action", "attempts"),
    [
        (httpx.ReadError("reset"), lambda c: c.stat("/a"), 2),  # idempotent: retried
        (httpx.ReadError("reset"), lambda c: c.rename("/a", "/b"), 1),  # may have happened
        (httpx.ReadError("reset"), lambda c: c.read("/q/dequeue", idempotent=False), 1),
        (httpx.ReadError("reset"), lambda c: c.write("/q/enqueue", b"m"), 1),
        (503, lambda c: c.stat("/a"), 2),
        (502, lambda c: c.list("/"), 2),
        (503, lambda c: c.delete("/a"), 1),
        (httpx.ReadTimeout("slow"), lambda c: c.stat("/a"), 1),  # the deadline is spent
    ],
)
def test_only_requests_safe_to_repeat_are_retried(fault, action, attempts):
    ok = Flaky(1, fault, lambda r: httpx.Response(200, json=STAT | {"files": []}))
    try:
        run_with(ok, action)
    except errors.AgfsError:
        assert attempts == 1
    assert len(ok.requests) == attempts


def test_a_retried_upload_resends_the_whole_body(tmp_path):
    data = bytes(range(256)) * 8192  # 2 MiB: several chunks
    spool = tmp_path / "spool"
    spool.write_bytes(data)
    bodies = []

    def handler(request):
        bodies.append(request.read())
        if len(bodies) == 1:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"message": "ok"})

    with open(spool, "rb") as source:
        run_with(handler, lambda c: c.write_from("/memfs/f", source, len(data)))
    assert len(bodies) == 2 and bodies[1] == data


def test_a_tls_failure_is_not_retried_and_says_why():
    attempts = []

    def handler(request):
        attempts.append(request)
        try:
            raise ssl.SSLCertVerificationError("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
        except ssl.SSLError as cause:
            raise httpx.ConnectError("") from cause

    with pytest.raises(errors.TlsFailure) as caught:
        run_with(handler, lambda c: c.stat("/a"))
    assert len(attempts) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
