"""Response-head parsers for the client's transport: hand-written, h11's and httptools'.

Not a test: it prints numbers, the ones in ``agfs_fuse/transport.py``'s docstring.

    .venv/bin/python -m bench.head_parsers [--runs 9] [--requests 2000]

1. Micro-benchmark: heads per second for each parser, median of ``--runs`` runs, over the
   heads ``agfs-fuse serve`` (which answers like the Go server) really sends: a JSON
   ``stat``, a small file, a larger (chunked) one and an error, each with
   ``Content-Type`` and ``Date``.
2. End to end: ``--requests`` small ``GET /files`` reads by ``AgfsClient`` against
   ``agfs-fuse serve`` on loopback, with each parser in the transport in turn (round robin,
   ``--runs`` times): requests per second and the client's CPU time per request.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import h11
import httpx
import trio

from agfs_fuse import transport
from agfs_fuse.client import AgfsClient
from tests.support.server import run_server

Parser = Callable[[bytes], transport.Parsed]


def h11_parse(raw: bytes) -> transport.Parsed:
    """h11 reads answers only to a request it sent: a throwaway one per head."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "agfs")]))
    conn.send(h11.EndOfMessage())
    try:
        conn.receive_data(raw + b"\r\n\r\n")
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise httpx.RemoteProtocolError(str(exc)) from None
    if not isinstance(event, h11.Response | h11.InformationalResponse):
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x answer: {raw[:60]!r}")
    version = "HTTP/" + event.http_version.decode()
    return (
        version,
        event.status_code,
        list(event.headers.raw_items()),
    )


def hand_written_parse(raw: bytes) -> transport.Parsed:
    """The parser the transport had before httptools: split on CRLF and colons."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise httpx.RemoteProtocolError(f"bad header line {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    return parts[0].decode("ascii", "replace"), int(parts[1]), headers


def parsers() -> dict[str, Parser]:
    return {
        "hand-written": hand_written_parse,
        "h11": h11_parse,
        "httptools": transport.parse_head,  # the one in use
    }


def real_heads(url: str) -> list[bytes]:
    """The heads the server sends for a stat, a small read, a larger one (like Go's
    net/http, it sends a body of 2 KiB or more chunked) and a stat of a missing file
    (memfs answers it with a 500)."""
    parts = urlsplit(url)
    base = parts.path
    setup = httpx.Client()
    setup.put(f"{url}/files?path=/memfs/head", content=b"x" * 100)
    setup.put(f"{url}/files?path=/memfs/larger", content=b"x" * 4096)
    setup.close()
    targets = [
        f"{base}/stat?path=/memfs/head",
        f"{base}/files?path=/memfs/head",
        f"{base}/files?path=/memfs/larger",
        f"{base}/stat?path=/memfs/missing",
    ]
    heads = []
    for target in targets:
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: agfs\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
        heads.append(data.split(b"\r\n\r\n", 1)[0])
    return heads


def micro(heads: list[bytes], runs: int, count: int = 20_000) -> dict[str, float]:
    """Median heads per second of each parser."""
    results: dict[str, list[float]] = {name: [] for name in parsers()}

    def seen(parse: Parser, head: bytes) -> tuple[str, int, list[tuple[bytes, bytes]]]:
        version, status, headers = parse(head)
        return version, status, [(name.lower(), value) for name, value in headers]

    for name, parse in parsers().items():  # every parser reads every head the same
        for head in heads:
            assert seen(parse, head) == seen(hand_written_parse, head), (name, head)
    for _ in range(runs):
        for name, parse in parsers().items():
            started = time.perf_counter()
            for i in range(count):
                parse(heads[i % len(heads)])
            results[name].append(count / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in results.items()}


def end_to_end(url: str, runs: int, requests: int) -> dict[str, tuple[float, float]]:
    """Median (requests per second, client CPU microseconds per request) of each parser."""
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in parsers()}
    original = transport.parse_head

    async def reads() -> tuple[float, float]:
        client = AgfsClient(url)
        try:
            await client.read("/memfs/head")  # connect outside the timing
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(requests):
                await client.read("/memfs/head")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await client.aclose()
        return requests / wall, cpu / requests * 1e6

    try:
        for _ in range(runs):
            for name, parse in parsers().items():
                transport.parse_head = parse  # type: ignore[assignment]
                results[name].append(trio.run(reads))
    finally:
        transport.parse_head = original  # type: ignore[assignment]
    return {
        name: (
            statistics.median(rate for rate, _ in values),
            statistics.median(cpu for _, cpu in values),
        )
        for name, values in results.items()
    }


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--runs", type=int, default=5)
    options.add_argument("--requests", type=int, default=2000)
    args = options.parse_args()
    with run_server() as server:
        heads = real_heads(server.url)
        print("heads measured:")
        for head in heads:
            print("   ", head.decode().replace("\r\n", " | "))
        print(f"\nmicro-benchmark, heads/s (median of {args.runs}):")
        for name, rate in micro(heads, args.runs).items():
            print(f"    {name:14} {rate:>10,.0f}   {1e6 / rate:6.1f} us/head")
        print(f"\n{args.requests} GET /files of 100 bytes over loopback (median of {args.runs}):")
        for name, (rate, cpu) in end_to_end(server.url, args.runs, args.requests).items():
            print(f"    {name:14} {rate:>8,.0f} requests/s   {cpu:6.1f} us client CPU/request")


if __name__ == "__main__":
    main()
