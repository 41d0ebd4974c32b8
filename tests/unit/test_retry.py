"""Backoff delays grow, jitter, respect their cap and stop at the budget."""

import random

from agfs_fuse.retry import Backoff


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
