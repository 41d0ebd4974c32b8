"""When to try a request again, and how long to wait: exponential backoff with jitter.

A refused connection is retried for a couple of seconds at most (a restarting server is
back in that time; a dead one must give EIO quickly, not after the whole deadline).
Only requests that never reached the server, or whose repetition changes nothing, are
retried: a rename or a queue pop sent twice is not the same as sent once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass
class Backoff:
    first: float = 0.05
    factor: float = 2.0
    cap: float = 0.5
    budget: float = 2.0
    """Total seconds of waiting between attempts, at most."""
    rng: random.Random = field(default_factory=random.Random)

    def delays(self) -> Iterator[float]:
        """Jittered delays (50-150 % of the exponential step) until the budget is spent."""
        step, spent = self.first, 0.0
        while True:
            delay = min(self.cap, step) * self.rng.uniform(0.5, 1.5)
            if spent + delay > self.budget:
                return
            spent += delay
            yield delay
            step *= self.factor
