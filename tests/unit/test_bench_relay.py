"""The bench's delay relay: adds at least the round trip it is asked for, keeps the bytes
whole and in order in both directions, passes a half-close on, and does not cap bandwidth
when asked for no delay."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.relay import DelayRelay, EchoServer, echo_rtts


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@contextlib.contextmanager
def client_through_relay(target_port: int, rtt: float) -> Iterator[socket.socket]:
    """A client socket connected to ``target_port`` through a relay adding ``rtt``."""
    with DelayRelay(("127.0.0.1", target_port), rtt=rtt) as relay, socket.create_connection(
        ("127.0.0.1", relay.port), timeout=10
    ) as client:
        yield client


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def test_an_echo_through_the_relay_takes_at_least_the_added_round_trip(echo):
    with DelayRelay(("127.0.0.1", echo.port), rtt=0.04) as relay:
        rtts = echo_rtts(relay.port, count=3)
    assert min(rtts) >= 0.04


def test_each_direction_is_delayed_by_half_the_round_trip():
    """Only the client-to-server leg is timed: a server that answers at once still waits
    RTT/2 for the request, so the one-way arrival lags the send by at least that."""
    listener = socket.create_server(("127.0.0.1", 0))
    arrived: list[float] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1)
            arrived.append(time.monotonic())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with client_through_relay(listener.getsockname()[1], rtt=0.1) as c:
        sent = time.monotonic()
        c.sendall(b"x")
        t.join(10)
    listener.close()
    assert arrived and arrived[0] - sent >= 0.05


def test_bytes_arrive_whole_and_in_order_both_ways(echo):
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with client_through_relay(echo.port, rtt=0.002) as c:
        sender = threading.Thread(target=c.sendall, args=(payload,), daemon=True)
        sender.start()
        back = recv_exactly(c, len(payload))
        sender.join(10)
    assert back == payload


def test_a_half_close_reaches_the_server_and_the_reply_still_comes_back():
    """The server reads to end of stream, then answers: only a passed-on half-close lets
    it see that end while the client's receiving side stays open."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            got = bytearray()
            while chunk := conn.recv(65536):
                got += chunk
            conn.sendall(b"got %d bytes" % len(got))

    threading.Thread(target=serve, daemon=True).start()
    with client_through_relay(listener.getsockname()[1], rtt=0.01) as c:
        c.sendall(b"a" * 100_000)
        c.shutdown(socket.SHUT_WR)
        reply = bytearray()
        while chunk := c.recv(65536):
            reply += chunk
    listener.close()
    assert bytes(reply) == b"got 100000 bytes"


def test_chunks_sent_while_earlier_ones_wait_are_in_flight_together(echo):
    """Latency, not a bandwidth cap: twenty writes in a row come back in one RTT plus
    slack, far below the twenty RTTs a relay holding one chunk at a time would need."""
    rtt = 0.1
    with client_through_relay(echo.port, rtt=rtt) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        for _ in range(20):
            c.sendall(b"y" * 1000)
        back = recv_exactly(c, 20_000)
        elapsed = time.monotonic() - t0
    assert back == b"y" * 20_000
    assert rtt <= elapsed < 10 * rtt


def test_a_relay_counts_the_connections_it_made(echo):
    with DelayRelay(("127.0.0.1", echo.port), rtt=0) as relay:
        for _ in range(3):
            echo_rtts(relay.port, count=1)
        assert relay.connections == 3
