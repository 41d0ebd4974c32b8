"""Counters a running mount keeps about itself, for ``/.agfs-stats`` and ``agfs-fuse stats``.

Plain state with an injected clock: requests by kind, errors, bytes each way and latency
percentiles over a rolling window of recent requests (so a long-running mount shows how
it behaves now, not an average over weeks).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

LATENCY_WINDOW = 4096


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


class RequestStats:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock()
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.bytes_sent = 0
        self.bytes_received = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record(
        self, kind: str, seconds: float, *, sent: int = 0, received: int = 0, error: str = ""
    ) -> None:
        self.requests[kind] += 1
        self.bytes_sent += sent
        self.bytes_received += received
        self._latencies.append(seconds)
        if error:
            self.errors[error] += 1

    def add_received(self, count: int) -> None:
        """Bytes of a streamed body, counted as they arrive."""
        self.bytes_received += count

    def snapshot(self) -> dict[str, object]:
        ordered = sorted(self._latencies)
        return {
            "uptime_s": round(self._clock() - self.started, 3),
            "requests_total": sum(self.requests.values()),
            "requests": dict(sorted(self.requests.items())),
            "errors": dict(sorted(self.errors.items())),
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "latency_ms": {
                name: round(percentile(ordered, fraction) * 1000, 3)
                for name, fraction in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            },
        }
