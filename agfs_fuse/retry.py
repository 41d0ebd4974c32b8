"""When to try a request again, and how long to wait: exponential backoff with jitter.

A refused connection is retried for a couple of seconds at most (a restarting server is
back in that time; a dead one must give EIO quickly, not after the whole deadline).
Only requests that never reached the server, or whose repetition changes nothing, are
retried: a rename or a queue pop sent twice is not the same as sent once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
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


class StalledDirectories:
    """Directories whose server just stopped answering: ask them with a short deadline.

    The kernel sends one lookup at a time per directory, and asks again for a page whose
    readahead failed; so after one request timed out, the next one for the same directory
    would wait a whole deadline more, and three programs would wait three. Instead, for
    one deadline after a timeout, idempotent requests there get ``probe`` seconds: a
    server that healed still answers in time (and clears the mark), a stalled one fails
    fast. Requests elsewhere are untouched.
    """

    def __init__(
        self, deadline: float, *, probe: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.deadline = deadline
        self.probe = min(probe, deadline)
        self._clock = clock
        self._until: dict[str, float] = {}

    def timeout_for(self, directory: str) -> float | None:
        """The deadline to use there, or None for the normal one."""
        until = self._until.get(directory)
        if until is None:
            return None
        if self._clock() >= until:
            del self._until[directory]
            return None
        return self.probe

    def timed_out(self, directory: str) -> None:
        self._until[directory] = self._clock() + self.deadline

    def answered(self, directory: str) -> None:
        self._until.pop(directory, None)
