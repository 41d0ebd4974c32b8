"""A userspace TCP relay that adds round-trip time: every byte is held back RTT/2 each way.

The bench machine's kernel has no netem qdisc, so a WAN link is imitated in userspace: the
relay accepts a connection, opens one to its target, and copies bytes both ways. Each chunk
it reads is stamped with the time it is due (read time + RTT/2) and written when that time
comes, so latency is added without capping bandwidth: chunks read while earlier ones wait
are in flight together, as on a long fat pipe. An end of stream travels the same way and
becomes a half-close (``shutdown(SHUT_WR)``) on the other side once the bytes before it are
out, so protocols that rely on half-close (sftp, HTTP/1.0 bodies) still see it in order.

Run it as its own process in the bench (``python -m bench.relay TARGET_PORT --rtt-ms 10``
prints ``listening on PORT``), so a busy bench loop never delays a chunk by taking the GIL;
tests use :class:`DelayRelay` in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

CHUNK = 256 * 1024
_EOF = b""


class _DelayedPipe:
    """One direction of one connection: read from ``src``, write to ``dst`` ``delay`` later.

    A reader thread stamps chunks and a writer thread releases them, so a slow ``dst`` never
    stops the reading side from stamping what arrives (the stamp is the arrival time).
    """

    def __init__(
        self, src: socket.socket, dst: socket.socket, delay: float,
        clock: Callable[[], float], done: Callable[[], None],
    ) -> None:
        self.src, self.dst, self.delay, self.clock = src, dst, delay, clock
        self._done = done
        self._due: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        self.failed = False

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self.src.recv(CHUNK)
            except OSError:
                chunk = _EOF
                self.failed = True
            self._due.put((self.clock() + self.delay, chunk))
            if not chunk:
                return

    def _write(self) -> None:
        try:
            while True:
                due, chunk = self._due.get()
                wait = due - self.clock()
                if wait > 0:
                    time.sleep(wait)
                if not chunk:
                    break
                self.dst.sendall(chunk)
            # Bytes before the end are out: pass the half-close on, or the reset on.
            if self.failed:
                _abort(self.dst)
            else:
                with contextlib.suppress(OSError):
                    self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.failed = True
            _abort(self.src)
        finally:
            self._done()


def _abort(sock: socket.socket) -> None:
    """Close with RST, so the peer sees the failure instead of a clean end of stream."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Connection:
    """A client socket, its upstream socket and the two pipes; closed when both are done."""

    def __init__(self, client: socket.socket, upstream: socket.socket, delay: float,
                 clock: Callable[[], float]) -> None:
        self.sockets = (client, upstream)
        self._left = 2
        self._lock = threading.Lock()
        for s in self.sockets:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pipes = (
            _DelayedPipe(client, upstream, delay, clock, self._pipe_done),
            _DelayedPipe(upstream, client, delay, clock, self._pipe_done),
        )

    def start(self) -> None:
        for p in self.pipes:
            p.start()

    def _pipe_done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            for s in self.sockets:
                s.close()


class DelayRelay:
    """Listens on 127.0.0.1 and relays each connection to ``target`` with ``rtt`` added.

    ``rtt`` is in seconds; each direction gets half of it. ``clock`` is injectable so the
    due-time arithmetic can be checked without a real wait.
    """

    def __init__(self, target: tuple[str, int], rtt: float, listen_port: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target, self.rtt, self.clock = target, rtt, clock
        self._listener = socket.create_server(("127.0.0.1", listen_port), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> DelayRelay:
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            self.connections += 1
            _Connection(client, upstream, self.rtt / 2, self.clock).start()

    def close(self) -> None:
        """Stop accepting; connections already relayed finish on their own."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def __enter__(self) -> DelayRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class EchoServer:
    """Echoes every byte back; with a relay in front, one echo costs exactly one RTT."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def echo_rtts(port: int, count: int = 20) -> list[float]:
    """Seconds per 1-byte echo through ``port``, one connection, ``count`` times."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            t0 = time.perf_counter()
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise RuntimeError("the echo through the relay came back wrong")
            out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.relay",
        description="Relay 127.0.0.1:LISTEN to 127.0.0.1:TARGET_PORT, adding RTT/2 each way.",
    )
    p.add_argument("target_port", type=int)
    p.add_argument("--rtt-ms", type=float, default=0.0, help="round trip to add (ms)")
    p.add_argument("--listen-port", type=int, default=0, help="0: any free port")
    a = p.parse_args(argv)
    relay = DelayRelay(("127.0.0.1", a.target_port), a.rtt_ms / 1000, a.listen_port).start()
    print(f"listening on {relay.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
