"""Extents against a plain set-of-bytes model, with a seeded random sequence of operations."""

import random

import pytest

from agfs_fuse.extents import Extents


def _model_ranges(model: set[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for byte in sorted(model):
        if ranges and ranges[-1][1] == byte:
            ranges[-1] = (ranges[-1][0], byte + 1)
        else:
            ranges.append((byte, byte + 1))
    return ranges


@pytest.mark.parametrize("seed", range(20))
def test_random_operations_match_a_set_model(seed):
    rng = random.Random(seed)
    extents, model = Extents(), set()
    for _ in range(300):
        start = rng.randrange(0, 200)
        end = start + rng.randrange(0, 30)
        if rng.random() < 0.8:
            extents.add(start, end)
            model.update(range(start, end))
        else:
            extents.truncate(start)
            model = {b for b in model if b < start}
        assert list(extents) == _model_ranges(model)
        probe = rng.randrange(0, 220)
        span = rng.randrange(0, 20)
        assert extents.covers(probe, probe + span) == all(
            b in model for b in range(probe, probe + span)
        )
        covered = {b for s, e in extents.overlapping(probe, probe + span) for b in range(s, e)}
        assert covered == {b for b in model if probe <= b < probe + span}
    assert extents.total == len(model)
    assert extents.end == (max(model) + 1 if model else 0)


def test_touching_ranges_merge_and_empty_ranges_are_ignored():
    extents = Extents()
    extents.add(0, 5)
    extents.add(5, 10)
    extents.add(20, 20)
    assert list(extents) == [(0, 10)]
    extents.clear()
    assert not extents and extents.end == 0
