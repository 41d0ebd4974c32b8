"""proxyfs's pure parts: Go's ``url.Parse`` complaints about a ``base_url``, the SDK
client's URL normalisation, query encoding, time round trip, error-body decoding and
which failures it retries.

The expected texts were read off the real server's ``GET /mounts`` for the same URLs.
"""

from __future__ import annotations

import httpx
import pytest

from agfs_fuse.server.plugins.agfs_remote import (
    GO_ZERO_TIME,
    RemoteAgfs,
    RemoteError,
    error_text,
    go_query,
    go_time_text,
    normalize_base_url,
)
from agfs_fuse.server.plugins.proxyfs_config import (
    ProxyConfigError,
    check_proxy_config,
    url_parse_error,
)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://host:abc/api/v1", 'invalid port ":abc" after host'),
        ("http://h/%zz", 'invalid URL escape "%zz"'),
        ("http://h/a\tb", "net/url: invalid control character in URL"),
        (":foo", "missing protocol scheme"),
        ("http://a b/", 'invalid character " " in host name'),
        ("http://[::1]x/", 'invalid port "x" after host'),
        ("http://h%41/", 'invalid URL escape "%41"'),
        ("http://[::1", "missing ']' in host"),
        ("127.0.0.1:8080", "first path segment in URL cannot contain colon"),
    ],
)
def test_go_url_parse_complaints(url: str, problem: str) -> None:
    quoted = url.replace("\t", "\\t")
    assert url_parse_error(url) == f'parse "{quoted}": {problem}'


def test_a_bad_fragment_is_reported_with_the_whole_url() -> None:
    assert url_parse_error("http://h/#%zz") == 'parse "http://h/#%zz": invalid URL escape "%zz"'


@pytest.mark.parametrize(
    "url", ["http://h:8080/api/v1", "localhost:8080", "//h:1/x", "https://[::1]:9/", "http://h:"]
)
def test_urls_go_accepts(url: str) -> None:
    assert url_parse_error(url) is None


def test_config_checks_in_go_order() -> None:
    with pytest.raises(ProxyConfigError, match=r"^unknown configuration parameter: x \("):
        check_proxy_config({"x": 1})
    with pytest.raises(ProxyConfigError, match="^base_url is required in configuration$"):
        check_proxy_config({"base_url": True})
    with pytest.raises(ProxyConfigError, match=r"^invalid base_url format: //h:1/x \(expected"):
        check_proxy_config({"base_url": "//h:1/x"})
    assert check_proxy_config({"base_url": "http://h", "mount_path": "/p"}) == "http://h"


def test_the_client_appends_api_v1_unless_present() -> None:
    assert normalize_base_url("http://h:1/api/v1/") == "http://h:1/api/v1"
    assert normalize_base_url("http://h:1") == "http://h:1/api/v1"
    assert normalize_base_url("http://h:1/memfs") == "http://h:1/memfs/api/v1"
    assert normalize_base_url("h:1") == "h:1"


def test_queries_are_encoded_as_go_sorts_and_escapes_them() -> None:
    assert go_query({"size": "3", "path": "/a b+c"}) == "path=%2Fa+b%2Bc&size=3"


def test_times_round_trip_as_go_reprints_them() -> None:
    assert go_time_text("2026-05-11T13:56:07.120000000-07:00") == "2026-05-11T13:56:07.12-07:00"
    assert go_time_text("2026-05-11T13:56:07.000+00:00") == "2026-05-11T13:56:07Z"
    assert go_time_text("yesterday") == GO_ZERO_TIME
    assert go_time_text(None) == GO_ZERO_TIME


@pytest.mark.parametrize(
    ("status", "body", "text", "decoded"),
    [
        (404, b'{"error":"read: /x: not found"}\n', "HTTP 404: read: /x: not found", True),
        (404, b"404 page not found\n", "HTTP 404: failed to decode error response", False),
        (500, b'{"message":"no error key"}', "HTTP 500: ", True),
        (502, b'["not", "an object"]', "HTTP 502: failed to decode error response", False),
    ],
)
def test_error_bodies_decode_like_go(status: int, body: bytes, text: str, decoded: bool) -> None:
    assert error_text(httpx.Response(status, content=body)) == (text, decoded)


def _remote(answers: list[httpx.Response | Exception]) -> tuple[RemoteAgfs, list[float], list[str]]:
    """A client whose requests get ``answers`` in turn; (client, sleeps, methods seen)."""
    sleeps: list[float] = []
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = RemoteAgfs("http://h:1", sleep=sleeps.append, transport=httpx.MockTransport(handler))
    return client, sleeps, seen


def test_a_write_is_retried_after_1_2_and_4_seconds_on_server_errors() -> None:
    fail = httpx.Response(503, json={"error": "busy"})
    client, sleeps, seen = _remote([fail, fail, fail, fail])
    with pytest.raises(RemoteError, match=r"^HTTP 503: busy$"):
        client.write("/f", b"x")
    assert (sleeps, seen) == ([1.0, 2.0, 4.0], ["PUT"] * 4)
    client, sleeps, seen = _remote([fail, httpx.Response(200, json={"message": "ok"})])
    assert client.write("/f", b"xyz") == 3 and sleeps == [1.0]


def test_a_write_is_not_retried_on_client_errors_undecodable_bodies_or_timeouts() -> None:
    for answer, text in [
        (httpx.Response(404, json={"error": "nope"}), "HTTP 404: nope"),
        (httpx.Response(500, content=b"<html>"), "HTTP 500: failed to decode error response"),
        (
            httpx.ReadTimeout("slow"),
            'failed to execute request: Put "http://h:1/api/v1/files?path=%2Ff": '
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
        ),
    ]:
        client, sleeps, seen = _remote([answer])
        with pytest.raises(RemoteError) as raised:
            client.write("/f", b"x")
        assert (raised.value.message, sleeps, seen) == (text, [], ["PUT"])


def test_a_refused_connection_is_retried_for_writes_only() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    client, sleeps, seen = _remote([refused] * 4)
    with pytest.raises(RemoteError, match="dial tcp h:1: connect: connection refused$"):
        client.write("/f", b"x")
    assert len(seen) == 4 and sleeps == [1.0, 2.0, 4.0]
    client, sleeps, seen = _remote([refused])
    with pytest.raises(RemoteError, match=r'^failed to execute request: Get "http://h:1/api/v1/'):
        client.stat("/f")
    assert sleeps == []


def test_a_501_is_operation_not_supported_for_changes_but_quoted_for_reads() -> None:
    client, _, _ = _remote([httpx.Response(501, json={"error": "no"})] * 2)
    with pytest.raises(RemoteError, match="^operation not supported$"):
        client.mkdir("/d", 0o755)
    with pytest.raises(RemoteError, match="^HTTP 501: no$"):
        client.read("/f", 0, -1)
