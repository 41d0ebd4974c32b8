"""The lean HTTP/1.1 transport against a scripted loopback server.

Each test gives the server the exact bytes to answer with, so framing (Content-Length,
chunked with extensions and trailers, read-to-close, 100 Continue), connection reuse and
every way an answer can break are checked byte for byte, for whole answers
(``exchange``) and streamed ones (``stream``) alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import httpx
import pytest
import trio

import agfs_fuse
from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import InvalidArgument, NotFound
from agfs_fuse.request_paths import DirectPath, HttpxPath
from agfs_fuse.transport import PIECE, AgfsTransport, FileBody, Reply, Streamed, Timeouts

pytestmark = pytest.mark.timeout(20)

CLOSE = b""
"""In a script: hang up instead of answering."""

HANG_UP = b"\x00hang up"
"""At the end of a script entry: send the rest, then hang up."""


@dataclass
class Scripted:
    """Answers each request with the next script entry; records what it received."""

    script: list[bytes]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    hung_up: trio.Event = field(default_factory=trio.Event)

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = bytearray()

        async def more() -> None:
            data = await stream.receive_some(65536)
            if not data:
                raise EOFError
            buffer.extend(data)

        try:
            while self.script:
                while b"\r\n\r\n" not in buffer:
                    await more()
                head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
                buffer[:] = rest
                body = await self._body(head, buffer, more)
                self.requests.append((head, body))
                answer = self.script.pop(0)
                if answer is CLOSE:
                    return
                await stream.send_all(answer.removesuffix(HANG_UP))
                if answer.endswith(HANG_UP):
                    return
        except (EOFError, trio.BrokenResourceError):
            return
        finally:
            await stream.aclose()
            self.hung_up.set()

    @staticmethod
    async def _body(head: bytes, buffer: bytearray, more) -> bytes:  # noqa: ANN001
        fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        fields = {k.lower(): v for k, v in fields.items()}
        if b"content-length" in fields:
            size = int(fields[b"content-length"])
            while len(buffer) < size:
                await more()
            body = bytes(buffer[:size])
            del buffer[:size]
            return body
        if fields.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                while b"\r\n" not in buffer:
                    await more()
                line, _, rest = bytes(buffer).partition(b"\r\n")
                size = int(line, 16)
                while len(rest) < size + 2:
                    await more()
                    line, _, rest = bytes(buffer).partition(b"\r\n")
                body += rest[:size]
                buffer[:] = rest[size + 2 :]
                if size == 0:
                    return body
        return b""


async def _serve(nursery: trio.Nursery, server: Scripted) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]


class Peer:
    """Requests to one scripted server over one ``AgfsTransport``."""

    def __init__(self, transport: AgfsTransport, port: int) -> None:
        self.transport = transport
        self.key = ("http", "127.0.0.1", port)
        self.host = b"127.0.0.1:%d" % port

    def _headers(self, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
        return [(b"Host", self.host)] + [(k.encode(), v.encode()) for k, v in extra.items()]

    async def ask(
        self,
        method: str,
        target: bytes,
        body: bytes | FileBody | None = None,
        read: float = 2.0,
        **extra: str,
    ) -> Reply:
        headers = self._headers(extra)
        if body is not None:
            size = len(body) if isinstance(body, bytes) else body.size
            headers.append((b"Content-Length", str(size).encode()))
        timeouts = Timeouts(connect=2.0, read=read, write=2.0, pool=2.0)
        return await self.transport.exchange(self.key, method, target, headers, body, timeouts)

    async def stream(self, target: bytes = b"/", **extra: str) -> Streamed:
        timeouts = Timeouts(connect=2.0, read=2.0, write=2.0, pool=2.0)
        return await self.transport.stream(self.key, "GET", target, self._headers(extra), timeouts)

    async def streamed(self, target: bytes = b"/") -> list[bytes]:
        """The pieces of a streamed answer's body, read to its end."""
        answer = await self.stream(target)
        try:
            return [piece async for piece in answer.aiter_bytes()]
        finally:
            await answer.aclose()


def _run(script: list[bytes], talk, *, slots: int = 32) -> Scripted:  # noqa: ANN001
    """Serve ``script``, let ``talk(peer)`` make requests, return the server."""
    server = Scripted(list(script))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await _serve(nursery, server)
            transport = AgfsTransport(max_connections=slots)
            try:
                await talk(Peer(transport, server.port))
            finally:
                await transport.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    return server


def ok(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(*chunks: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks)
    return CHUNKED_HEAD + body + b"0\r\n" + trailer + b"\r\n"


def test_whole_answers_of_each_framing_reuse_one_connection() -> None:
    big = bytes(range(256)) * (PIECE // 256 * 2 + 3)
    got = []

    async def talk(peer: Peer) -> None:
        for _ in range(6):
            reply = await peer.ask("GET", b"/x")
            got.append((reply.status_code, reply.content))

    script = [
        ok(b"one", b"X-Thing: A"),
        ok(b""),
        chunked(b"ab", big, trailer=b"X-T: 1\r\n"),
        ok(big),  # larger than a piece: read in pieces
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil close" + HANG_UP,
    ]
    server = _run(script, talk)
    assert got == [
        (200, b"one"),
        (200, b""),
        (200, b"ab" + big),
        (200, big),
        (204, b""),
        (200, b"until close"),
    ]
    assert server.connections == 1


def test_streamed_chunked_body_with_extensions_trailers_and_a_large_chunk() -> None:
    big = bytes(range(256)) * (PIECE // 256 * 2 + 3)  # more than two pieces
    got = []

    async def talk(peer: Peer) -> None:
        pieces = await peer.streamed()
        assert max(len(p) for p in pieces) <= PIECE
        got.append(b"".join(pieces))
        got.append(b"".join(await peer.streamed()))

    server = _run([chunked(b"ab", big, b"c", trailer=b"X-T: 1\r\n"), ok(b"next")], talk)
    assert got == [b"ab" + big + b"c", b"next"]
    assert server.connections == 1


def test_streamed_length_and_empty_bodies_reuse_the_connection() -> None:
    big = bytes(range(256)) * (PIECE // 256 + 5)

    async def talk(peer: Peer) -> None:
        answer = await peer.stream()
        assert answer.status_code == 200 and answer.headers["content-length"] == str(len(big))
        assert b"".join([p async for p in answer.aiter_bytes()]) == big
        await answer.aclose()
        assert await peer.streamed() == []

    server = _run([ok(big), ok(b"")], talk)
    assert server.connections == 1


def test_read_to_close_body_then_a_fresh_connection() -> None:
    got = []

    async def talk(peer: Peer) -> None:
        got.append(b"".join(await peer.streamed()))
        got.append((await peer.ask("GET", b"/")).content)

    server = _run([b"HTTP/1.1 200 OK\r\n\r\nuntil close" + HANG_UP, ok(b"again")], talk)
    assert got == [b"until close", b"again"]
    assert server.connections == 2


def test_connection_close_header_is_honoured() -> None:
    async def talk(peer: Peer) -> None:
        assert (await peer.ask("GET", b"/")).content == b"x"
        assert (await peer.ask("GET", b"/")).content == b"y"

    server = _run([ok(b"x", b"Connection: close"), ok(b"y")], talk)
    assert server.connections == 2


def test_interim_100_continue_is_skipped() -> None:
    async def talk(peer: Peer) -> None:
        reply = await peer.ask("PUT", b"/", b"data")
        assert (reply.status_code, reply.content) == (200, b"done")

    server = _run([b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")], talk)
    assert server.requests[0][1] == b"data"


def test_request_line_keeps_the_encoded_target_headers_and_body() -> None:
    async def talk(peer: Peer) -> None:
        reply = await peer.ask(
            "PUT", b"/api/v1/files?path=/a%2Bb%20c%23", b"data", **{"X-Key": "v"}
        )
        assert (reply.status_code, reply.text, reply.sent) == (201, "null", 4)
        assert reply.headers["x-thing"] == "A" and reply.json() is None

    created = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\nX-Thing:  A \t\r\n\r\nnull"
    server = _run([created], talk)
    head, body = server.requests[0]
    assert head.startswith(b"PUT /api/v1/files?path=/a%2Bb%20c%23 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-Key: v" in head and b"\r\nContent-Length: 4" in head and body == b"data"


def test_head_and_204_have_no_body() -> None:
    async def talk(peer: Peer) -> None:
        assert (await peer.ask("HEAD", b"/")).content == b""
        assert (await peer.ask("DELETE", b"/")).status_code == 204
        assert (await peer.ask("GET", b"/")).content == b"after"

    no_body = b"HTTP/1.1 204 No Content\r\n\r\n"
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    server = _run([head_answer, no_body, ok(b"after")], talk)
    assert server.connections == 1


def test_a_server_that_closed_an_idle_connection_gets_a_new_one() -> None:
    async def talk(peer: Peer) -> None:
        assert (await peer.ask("GET", b"/")).content == b"first"
        await server.hung_up.wait()  # the idle connection is dead now
        assert (await peer.ask("GET", b"/")).content == b"second"

    server = Scripted([ok(b"first") + HANG_UP, ok(b"second")])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await _serve(nursery, server)
            transport = AgfsTransport()
            await talk(Peer(transport, server.port))
            await transport.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert server.connections == 2


BROKEN_ANSWERS = {
    "not HTTP": (b"SMTP ready\r\n\r\n", "not an HTTP"),
    "short body": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "mid-body"),
    "bad length": (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "Content-Length"),
    "bad chunk size": (CHUNKED_HEAD + b"zz\r\n", "chunk size"),
    "chunk overrun": (CHUNKED_HEAD + b"2\r\nabX", "CRLF|mid-answer"),
    "bad header": (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "header"),
    "length and chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "Transfer-Encoding",
    ),
    "hang-up": (CLOSE, "without an answer"),
}


@pytest.mark.parametrize("case", list(BROKEN_ANSWERS))
def test_a_broken_whole_answer_raises_a_protocol_error_and_frees_the_slot(case: str) -> None:
    answer, match = BROKEN_ANSWERS[case]

    async def talk(peer: Peer) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match=match):
            await peer.ask("GET", b"/broken")
        assert (await peer.ask("GET", b"/next")).content == b"next"  # one slot: it was freed

    hang_up = answer if answer is CLOSE else answer + HANG_UP  # the next one: a new connection
    _run([hang_up, ok(b"next")], talk, slots=1)


@pytest.mark.parametrize("case", list(BROKEN_ANSWERS))
def test_a_broken_streamed_answer_raises_a_protocol_error_and_frees_the_slot(case: str) -> None:
    answer, match = BROKEN_ANSWERS[case]

    async def talk(peer: Peer) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match=match):
            await peer.streamed(b"/broken")
        assert (await peer.ask("GET", b"/next")).content == b"next"  # one slot: it was freed

    hang_up = answer if answer is CLOSE else answer + HANG_UP
    _run([hang_up, ok(b"next")], talk, slots=1)


def _silent_then_ok(talk) -> Scripted:  # noqa: ANN001
    """A server that never answers a request for ``/silent`` and answers others "fine";
    ``talk(port)`` makes the requests. Returns the server, to count its connections."""
    server = Scripted([])
    release = trio.Event()

    async def silent_then_ok(stream: trio.SocketStream) -> None:
        server.connections += 1
        data = await stream.receive_some(65536)
        if b"/silent" in data:
            await release.wait()
            return
        await stream.send_all(ok(b"fine"))

    server.handle = silent_then_ok  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await _serve(nursery, server)
            await talk(server.port)
            release.set()
            nursery.cancel_scope.cancel()

    trio.run(main)
    return server


def test_a_silent_server_is_a_read_timeout_and_the_pool_recovers() -> None:
    async def talk(port: int) -> None:
        peer = Peer(AgfsTransport(max_connections=1), port)
        with pytest.raises(httpx.ReadTimeout):
            await peer.ask("GET", b"/silent", read=0.2)
        assert (await peer.ask("GET", b"/")).content == b"fine"
        await peer.transport.aclose()

    server = _silent_then_ok(talk)
    assert server.connections == 2  # the timed-out connection was not reused


def test_refused_connection_is_a_connect_error() -> None:
    async def main() -> None:
        with trio.socket.socket() as probe:
            await probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # bound, never listening: refused
            with pytest.raises(httpx.ConnectError, match="refused"):
                await Peer(AgfsTransport(), port).ask("GET", b"/")

    trio.run(main)


def test_a_streamed_body_closed_early_frees_its_slot() -> None:
    async def talk(peer: Peer) -> None:
        for _ in range(3):  # one slot only: a leaked slot would time out the 2nd request
            answer = await peer.stream()
            async for _piece in answer.aiter_bytes():
                break
            await answer.aclose()

    server = _run([chunked(b"a" * 10, b"b" * 10)] * 3, talk, slots=1)
    assert server.connections == 3  # an unfinished body is never reused


def test_a_file_body_goes_by_sendfile_with_its_length(tmp_path) -> None:  # noqa: ANN001
    data = bytes(range(256)) * (3 * PIECE // 256 + 7)
    source = tmp_path / "spool"
    source.write_bytes(data)

    async def talk(peer: Peer) -> None:
        with open(source, "rb") as f:
            body = FileBody(f.fileno(), len(data), lambda: AssertionError("short"))
            assert (await peer.ask("PUT", b"/f", body)).content == b"stored"

    server = _run([ok(b"stored")], talk)
    head, body = server.requests[0]
    assert body == data and f"Content-Length: {len(data)}".encode() in head


def test_a_file_shorter_than_its_body_raises_the_callers_error(tmp_path) -> None:  # noqa: ANN001
    source = tmp_path / "spool"
    source.write_bytes(b"only this")

    class Shrank(Exception):
        pass

    async def talk(peer: Peer) -> None:
        with open(source, "rb") as f, pytest.raises(Shrank):
            await peer.ask("PUT", b"/f", FileBody(f.fileno(), 100, Shrank))

    _run([CLOSE], talk)


def test_the_client_goes_past_httpx_with_the_same_headers_and_errors() -> None:
    """``AgfsClient`` on its own transport sends answers it reads whole by ``exchange``:
    its default and configured headers go along, and errors map as through httpx."""
    stat = b'{"name":"a b","size":3,"mode":420,"modTime":"2026-01-02T03:04:05Z","isDir":false}'
    missing = b'{"error":"file not found: /x"}'
    server = Scripted([ok(stat), ok(missing).replace(b"200 OK", b"404 Not Found")])
    seen: list = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await _serve(nursery, server)
            client = AgfsClient(
                f"http://127.0.0.1:{server.port}/api/v1", headers={"Authorization": "Bearer t"}
            )
            assert isinstance(client._path, DirectPath)
            seen.append(await client.stat("/a b"))
            with pytest.raises(NotFound):
                await client.stat("/x")
            seen.append(client.stats.requests["GET /stat"])
            await client.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    info, count = seen
    assert (info.name, info.size, count) == ("a b", 3, 2)
    head = server.requests[0][0]
    assert head.startswith(b"GET /api/v1/stat?path=/a%20b HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n".encode() in head
    assert b"\r\nAuthorization: Bearer t" in head and b"\r\nAccept: */*" in head
    assert b"ccept-Encoding" not in head and b"ccept-encoding" not in head  # nothing decodes


def test_the_client_keeps_httpx_for_a_transport_it_is_given() -> None:
    given = httpx.MockTransport(lambda request: httpx.Response(200))
    assert isinstance(AgfsClient("http://127.0.0.1:1/api/v1", transport=given)._path, HttpxPath)
    assert isinstance(AgfsClient("http://127.0.0.1:1/api/v1")._path, DirectPath)
    # a URL only httpx can judge (here: a host IDNA refuses) keeps its error from httpx;
    # a port out of range never gets this far (normalize_base_url refuses it)
    assert isinstance(AgfsClient("http://a..b/api/v1")._path, HttpxPath)
    with pytest.raises(InvalidArgument):
        AgfsClient("http://h:99999999/api/v1")


def test_the_client_names_itself_unless_a_configured_header_says_otherwise() -> None:
    """The client sends ``User-Agent: agfs-fuse/<version>``; a ``-o header=`` of the same
    name (in any case) replaces it rather than being sent beside it."""
    server = Scripted([ok(b"{}"), ok(b"{}")])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await _serve(nursery, server)
            url = f"http://127.0.0.1:{server.port}/api/v1"
            for headers in ({}, {"user-agent": "mine/1"}):
                client = AgfsClient(url, headers=headers)
                await client.read("/memfs/a")
                await client.aclose()
            nursery.cancel_scope.cancel()

    trio.run(main)
    plain, configured = (head.lower() for head, _ in server.requests)
    assert plain.endswith(f"\r\nuser-agent: agfs-fuse/{agfs_fuse.__version__}".encode())
    assert configured.count(b"user-agent") == 1 and b"\r\nuser-agent: mine/1" in configured
