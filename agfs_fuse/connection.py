"""One keep-alive HTTP connection's bytes: sending, receiving, and their deadlines.

``transport`` pools these and speaks HTTP over them; here is only the socket work, tuned
for what a mount sends and receives: a file body goes by sendfile(2), a large one is sent
while watching for an early answer (the server's 413 over its body limit), and a body is
received straight into a buffer of its announced size. Failures are raised as httpx's
exception types, which the session maps to errors whichever request path failed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import httpx
import trio

MAX_HEAD = 64 * 1024
"""The largest response head accepted; an AGFS head is a few hundred bytes."""

_RECEIVE = 256 * 1024
ANSWER_POLL = 0.02
"""While a send waits for room, how often it looks for an early answer (seconds)."""

Key = tuple[str, str, int]
"""(scheme, host, port): which idle connections a request may use."""


def deadline_scope(seconds: float | None) -> contextlib.AbstractContextManager[object]:
    """A scope that raises ``trio.TooSlowError`` after ``seconds`` (None: never)."""
    return trio.fail_after(seconds) if seconds is not None else trio.CancelScope()


class Connection:
    """One keep-alive connection: a trio stream and the bytes received but not yet used."""

    def __init__(
        self, key: Key, stream: trio.abc.Stream, sock: trio.socket.SocketType | None
    ) -> None:
        self.key = key
        self.stream = stream
        self.sock = sock  # set for plain TCP, whose bodies are received with recv_into
        self.buffer = bytearray()
        self.scratch = bytearray()  # where bodies are received, reused across answers

    def looks_closed(self) -> bool:
        """An idle connection the server closed (or sent junk on) is readable."""
        sock = self.sock if self.sock is not None else _socket_of(self.stream)
        return sock is None or sock.is_readable()

    async def send(self, data: bytes | memoryview, seconds: float | None) -> None:
        try:
            with deadline_scope(seconds):
                await self.stream.send_all(data)
        except trio.TooSlowError:
            raise httpx.WriteTimeout("timed out sending the request") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(f"sending the request failed: {exc}") from exc

    async def send_file(
        self, source: int, size: int, shrank: Callable[[], Exception], seconds: float | None
    ) -> bool:
        """``size`` bytes of the file ``source`` from offset 0, with sendfile(2) on the
        plain socket: the kernel copies the bytes. ``shrank()`` is raised when the file
        ends sooner. False when the server answered before taking it all (see ``_pump``)."""
        assert self.sock is not None
        fd = self.sock.fileno()

        def step(offset: int) -> int:
            sent = os.sendfile(fd, source, offset, size - offset)
            if sent == 0:
                raise shrank()
            return sent

        return await self._pump(step, size, seconds)

    async def send_watching(self, data: bytes, seconds: float | None) -> bool:
        """A large ``data`` on the plain socket, as ``send_file`` sends a file."""
        assert self.sock is not None
        fd, view = self.sock.fileno(), memoryview(data)
        return await self._pump(lambda offset: os.write(fd, view[offset:]), len(data), seconds)

    async def _pump(self, step: Callable[[int], int], size: int, seconds: float | None) -> bool:
        """Call ``step(offset)`` (a non-blocking send returning the count sent) until
        ``size`` bytes are sent: True. False as soon as the socket turns readable while
        the server is not taking more: it answered early (the real server's 413 over its
        body limit, after which it reads nothing more and resets the connection 500 ms
        later) or hung up; sending on would only wait for that reset."""
        assert self.sock is not None
        offset = 0
        while offset < size:
            try:
                offset += step(offset)
            except BlockingIOError:
                if not await self._writable_unless_answered(seconds):
                    return False
                continue
            except OSError as exc:
                raise httpx.WriteError(f"sending the request failed: {exc}") from exc
            await trio.lowlevel.checkpoint()  # a fast peer never blocks: let others run
        return True

    async def _writable_unless_answered(self, seconds: float | None) -> bool:
        """Wait until the socket takes more (True) or the server has answered or hung up
        (False). The answer may come while we wait, so readability is looked at again
        every ``ANSWER_POLL`` seconds: waiting for both in two tasks would cost a task
        per wait on the hot path of every large upload."""
        assert self.sock is not None
        deadline = None if seconds is None else trio.current_time() + seconds
        while not self.sock.is_readable():
            wait = ANSWER_POLL
            if deadline is not None:
                wait = min(wait, deadline - trio.current_time())
                if wait <= 0:
                    raise httpx.WriteTimeout("timed out sending the request")
            with trio.move_on_after(wait):
                await trio.lowlevel.wait_writable(self.sock)
                return True
        return False

    async def _receive_some(self, seconds: float | None, limit: int = _RECEIVE) -> bytes:
        try:
            with deadline_scope(seconds):
                data = await self.stream.receive_some(limit)
        except trio.TooSlowError:
            raise httpx.ReadTimeout("timed out waiting for the server") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(f"receiving the answer failed: {exc}") from exc
        return data if isinstance(data, bytes) else bytes(data)

    async def fill(self, seconds: float | None) -> None:
        """Receive more bytes into the buffer; the server closing raises ``ReadError``."""
        data = await self._receive_some(seconds)
        if not data:
            raise httpx.RemoteProtocolError("server closed the connection mid-answer")
        self.buffer += data

    async def line(self, seconds: float | None) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("answer line too long")
            await self.fill(seconds)
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def head(self, seconds: float | None) -> bytes:
        """The response head up to its blank line; EOF before any byte says so."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("answer head too long")
            data = await self._receive_some(seconds)
            if not data:
                what = "without an answer" if not self.buffer else "mid-answer"
                raise httpx.RemoteProtocolError(f"server closed the connection {what}")
            self.buffer += data
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        return head

    async def exactly(self, size: int, seconds: float | None) -> bytes:
        """``size`` bytes: first what is buffered, then received straight into place."""
        if len(self.buffer) >= size:
            data = bytes(self.buffer[:size])
            del self.buffer[:size]
            return data
        if len(self.scratch) < size:
            self.scratch = bytearray(size)  # kept: fresh pages cost a fault each
        view = memoryview(self.scratch)[:size]
        have = len(self.buffer)
        view[:have] = self.buffer
        self.buffer.clear()
        while have < size:
            have += await self._receive_into(view[have:], seconds)
        return bytes(view)

    async def _receive_into(self, view: memoryview, seconds: float | None) -> int:
        if self.sock is None:
            data = await self._receive_some(seconds, len(view))
            view[: len(data)] = data
            count = len(data)
        else:
            try:
                with deadline_scope(seconds):
                    count = await self.sock.recv_into(view)
            except trio.TooSlowError:
                raise httpx.ReadTimeout("timed out waiting for the server") from None
            except OSError as exc:
                raise httpx.ReadError(f"receiving the answer failed: {exc}") from exc
        if not count:
            raise httpx.RemoteProtocolError("server closed the connection mid-body")
        return count

    async def until_closed(self, seconds: float | None) -> bytes:
        """The next piece of a read-to-close body; ``b""`` once the server has closed."""
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data
        return await self._receive_some(seconds)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError, OSError):
            await trio.aclose_forcefully(self.stream)


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    inner = getattr(stream, "transport_stream", stream)
    return getattr(inner, "socket", None)
