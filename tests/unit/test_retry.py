"""Backoff delays grow, jitter, respect their cap and stop at the budget; stalled
directories get a short deadline for one deadline."""

import random

from agfs_fuse.retry import Backoff, StalledDirectories


def test_delays_grow_exponentially_within_jitter_and_cap():
    delays = list(Backoff(first=0.1, factor=2, cap=0.4, budget=100, rng=random.Random(1)).delays())
    assert len(delays) > 10
    for n, delay in enumerate(delays[:6]):
        nominal = min(0.4, 0.1 * 2**n)
        assert 0.5 * nominal <= delay <= 1.5 * nominal


def test_total_wait_never_exceeds_the_budget():
    for seed in range(50):
        delays = list(Backoff(budget=2.0, rng=random.Random(seed)).delays())
        assert sum(delays) <= 2.0
        assert len(delays) >= 4  # a couple of seconds is several attempts, not one


def test_zero_budget_means_no_retry():
    assert list(Backoff(budget=0).delays()) == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stalled_directory_gets_the_short_deadline_for_one_deadline() -> None:
    clock = FakeClock()
    stalled = StalledDirectories(30.0, probe=0.5, clock=clock)
    assert stalled.timeout_for("/memfs/d") is None
    stalled.timed_out("/memfs/d")
    assert stalled.timeout_for("/memfs/d") == 0.5
    assert stalled.timeout_for("/memfs/other") is None  # elsewhere untouched
    clock.now += 29.9
    assert stalled.timeout_for("/memfs/d") == 0.5
    clock.now += 0.2
    assert stalled.timeout_for("/memfs/d") is None  # the mark ends after one deadline


def test_an_answer_clears_the_stall_mark() -> None:
    stalled = StalledDirectories(3.0, clock=FakeClock())
    stalled.timed_out("/d")
    stalled.answered("/d")
    assert stalled.timeout_for("/d") is None


def test_probe_deadline_never_exceeds_the_deadline() -> None:
    stalled = StalledDirectories(0.2, probe=0.5, clock=FakeClock())
    stalled.timed_out("/d")
    assert stalled.timeout_for("/d") == 0.2
