"""normalize_base_url and the client's construction."""

from __future__ import annotations

import errno
import logging
import uuid

import httpx
import pytest
import trio

from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import InvalidArgument
from agfs_fuse.wire import normalize_base_url

LOGGER = "agfs_fuse.wire"


def fresh_host() -> str:
    """A host no other test has used, so the 'say it once' memory starts empty for it."""
    return f"h-{uuid.uuid4().hex[:12]}.test"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://h:8080/api/v1", "http://h:8080/api/v1"),
        ("http://h:8080/api/v1/", "http://h:8080/api/v1"),
        ("http://h:8080/api/v1///", "http://h:8080/api/v1"),
        ("http://h:8080", "http://h:8080/api/v1"),
        ("http://h:8080/", "http://h:8080/api/v1"),
        ("https://h", "https://h/api/v1"),
        ("http://h/agfs", "http://h/agfs/api/v1"),
        ("http://h/agfs/", "http://h/agfs/api/v1"),
        ("http://h/agfs/api/v1", "http://h/agfs/api/v1"),
        ("https://proxy.example/a/b/", "https://proxy.example/a/b/api/v1"),
        ("  http://h:8080/api/v1  ", "http://h:8080/api/v1"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v1"),
        ("http://[::1]:8080/api/v1", "http://[::1]:8080/api/v1"),
        ("HTTP://h/api/v1", "http://h/api/v1"),
        ("http://h/myapi/v1", "http://h/myapi/v1/api/v1"),
    ],
)
def test_normalize_base_url(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


def test_normalize_is_idempotent() -> None:
    for url in ("http://h", "http://h/agfs/", "https://h:1/api/v1/"):
        once = normalize_base_url(url)
        assert normalize_base_url(once) == once


@pytest.mark.parametrize(
    "bad",
    [
        "h:8080",
        "localhost:8080/api/v1",
        "ftp://h/api/v1",
        "file:///tmp/agfs",
        "ws://h/api/v1",
        "",
        "   ",
        "/api/v1",
        "http://",
        "http:///api/v1",
        "http://:8080/api/v1",
        "http://h/api/v1?x=1",
        "http://h/api/v1#frag",
    ],
)
def test_bad_urls_raise_invalid_argument(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_base_url(bad)
    assert info.value.errno == errno.EINVAL


def test_client_constructor_rejects_bad_url() -> None:
    with pytest.raises(InvalidArgument):
        AgfsClient("ftp://h/api/v1")


def test_appending_suffix_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    host = fresh_host()
    caplog.set_level(logging.INFO, logger=LOGGER)
    for _ in range(3):
        assert normalize_base_url(f"http://{host}:8080") == f"http://{host}:8080/api/v1"
    records = [r for r in caplog.records if r.name == LOGGER and host in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "/api/v1" in message
    assert f"http://{host}:8080/api/v1" in message
    assert records[0].levelno == logging.INFO


def test_suffix_log_once_also_for_equivalent_spellings(caplog: pytest.LogCaptureFixture) -> None:
    host = fresh_host()
    caplog.set_level(logging.INFO, logger=LOGGER)
    normalize_base_url(f"http://{host}")
    normalize_base_url(f"http://{host}/")
    normalize_base_url(f"http://{host}//")
    records = [r for r in caplog.records if r.name == LOGGER and host in r.getMessage()]
    assert len(records) == 1


def test_no_log_when_suffix_present(caplog: pytest.LogCaptureFixture) -> None:
    host = fresh_host()
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    normalize_base_url(f"http://{host}/api/v1")
    normalize_base_url(f"http://{host}/api/v1/")
    assert [r for r in caplog.records if host in r.getMessage()] == []


def test_client_uses_normalized_base_url(caplog: pytest.LogCaptureFixture) -> None:
    host = fresh_host()
    caplog.set_level(logging.INFO, logger=LOGGER)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "healthy"})

    async def main() -> None:
        client = AgfsClient(f"http://{host}/agfs/", transport=httpx.MockTransport(handler))
        try:
            assert client.base_url == f"http://{host}/agfs/api/v1"
            await client.health()
        finally:
            await client.aclose()

    trio.run(main)
    assert [str(r.url) for r in seen] == [f"http://{host}/agfs/api/v1/health"]
    assert len([r for r in caplog.records if host in r.getMessage()]) == 1


def test_client_timeouts() -> None:
    client = AgfsClient("http://h/api/v1", timeout=7.5, connect_timeout=2.0)
    assert client.timeout == 7.5
    deadlines = client._timeouts
    assert (deadlines.read, deadlines.write, deadlines.pool) == (7.5, 7.5, 7.5)
    assert deadlines.connect == 2.0
    # connect never waits longer than the overall per-request deadline
    short = AgfsClient("http://h/api/v1", timeout=1.0, connect_timeout=5.0)
    assert short._timeouts.connect == 1.0
    trio.run(client.aclose)
    trio.run(short.aclose)


@pytest.mark.parametrize(
    "bad",
    [
        "http://alice:pw-secret@h/api/v1",
        "http://pw-secret@h/api/v1",
        "http://alice:pw-secret@h:99999/api/v1",
        "http://alice:pw-secret@[zz]/api/v1",
    ],
)
def test_credentials_in_the_url_are_refused_without_quoting_them(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_base_url(bad)
    assert "pw-secret" not in info.value.message
    with pytest.raises(InvalidArgument):
        AgfsClient(bad)


def test_credentials_error_points_to_token_file() -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_base_url("http://alice:pw@h/api/v1")
    assert "token_file" in info.value.message and "AGFS_TOKEN" in info.value.message


@pytest.mark.parametrize(
    "bad",
    [
        "http://h/a b/api/v1",
        "http://h\\x/api/v1",
        "http://h/api/v1\x00",
        "http://h/\tx",
        "http://h:99999/api/v1",
        "http://[zz]/api/v1",
        "http://[::1/api/v1",
        "http://h/" + "a" * 70_000,
    ],
)
def test_unusable_urls_are_short_one_line_errors(bad: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        AgfsClient(bad)
    assert info.value.errno == errno.EINVAL
    assert len(info.value.message) < 300 and "\n" not in info.value.message
