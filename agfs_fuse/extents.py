"""Sets of byte ranges: which parts of a sparse spool hold bytes written locally.

A file changed in place through the handle API is not fetched first; only the ranges
written are kept, and only they are sent back. Ranges are half-open ``[start, end)``,
kept sorted, non-overlapping and non-adjacent (touching ranges are merged).
"""

from __future__ import annotations

import bisect


class Extents:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __iter__(self):
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    @property
    def total(self) -> int:
        """Bytes covered."""
        return sum(e - s for s, e in self)

    @property
    def end(self) -> int:
        """One past the last covered byte (0 when empty)."""
        return self._ends[-1] if self._ends else 0

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        # First range that ends at or after ``start`` and last that starts at or before ``end``.
        lo = bisect.bisect_left(self._ends, start)
        hi = bisect.bisect_right(self._starts, end)
        if lo < hi:
            start = min(start, self._starts[lo])
            end = max(end, self._ends[hi - 1])
        self._starts[lo:hi] = [start]
        self._ends[lo:hi] = [end]

    def truncate(self, size: int) -> None:
        """Forget everything at or beyond ``size``."""
        index = bisect.bisect_left(self._starts, size)
        del self._starts[index:]
        del self._ends[index:]
        if self._ends and self._ends[-1] > size:
            self._ends[-1] = size

    def covers(self, start: int, end: int) -> bool:
        if end <= start:
            return True
        index = bisect.bisect_right(self._starts, start) - 1
        return index >= 0 and self._ends[index] >= end

    def overlapping(self, start: int, end: int) -> list[tuple[int, int]]:
        """The covered parts of ``[start, end)``, clipped to it."""
        result = []
        index = max(0, bisect.bisect_right(self._starts, start) - 1)
        while index < len(self._starts) and self._starts[index] < end:
            s, e = max(self._starts[index], start), min(self._ends[index], end)
            if s < e:
                result.append((s, e))
            index += 1
        return result

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
