"""Nearest-rank percentiles: the one definition that /stats, /metrics and the bench report."""
from __future__ import annotations

from collections.abc import Iterable, Mapping


def nearest_rank(n: int, q: float) -> int:
    """The 1-based rank of the q-th percentile among n sorted samples: ceil(q% of n), within 1..n."""
    # Integer ceiling: a float round() rounds half to even, so p50 of 1..10 would land on 6.
    return max(1, min(n, int(-(-q * n // 100))))


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank q-th percentile of values, in any order (None when there are none)."""
    s = sorted(values)
    return s[nearest_rank(len(s), q) - 1] if s else None


def histogram_percentile(counts: Mapping[float, int], q: float) -> float | None:
    """The nearest-rank q-th percentile of a histogram {value: how many samples} (None when empty)."""
    total = sum(counts.values())
    if not total:
        return None
    rank = nearest_rank(total, q)
    seen = 0
    for value, count in sorted(counts.items()):
        seen += count
        if seen >= rank:
            return value
    raise AssertionError("unreachable: the ranks seen add up to the total")
