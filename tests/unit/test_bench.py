"""The bench's pure arithmetic: how growth with n is judged."""
from __future__ import annotations

import pytest

from lab.bench import flatness, linearity, pair_median, targets


def test_linear_time_gives_one():
    lin = linearity({1_000: 0.075, 10_000: 0.75, 100_000: 7.5})
    assert lin["per_event_us"] == {"1000": 75.0, "10000": 75.0, "100000": 75.0}
    assert lin["max_over_min"] == 1.0
    assert lin["marginal_ratio"] == pytest.approx(1.0)


def test_growth_is_the_worst_size_over_the_best():
    # 72 -> 90 us per event: 25% slower per event at the largest n.
    lin = linearity({1_000: 0.072, 10_000: 0.75, 100_000: 9.0})
    assert lin["max_over_min"] == pytest.approx(90 / 72, abs=1e-3)


def _bulk(quotients):
    sizes = sorted(quotients)
    return {"bulk": {"by_n": {str(n): {"ratio": 1.0} for n in sizes},
                     "linearity": {"service_over_raw_time": {str(n): q for n, q in quotients.items()},
                                   "flatness": flatness({str(n): q for n, q in quotients.items()})},
                     "peak_rss_mb": {"producer-order": 1, "inventory-consumer": 1, "analytics-consumer": 1}}}


@pytest.mark.parametrize("quotients, met", [
    ({1_000: 0.88, 10_000: 0.89, 100_000: 0.86}, True),   # the service grows as the raw loop does
    ({1_000: 0.80, 10_000: 0.86, 100_000: 1.05}, False),  # the service slows at 100k, raw does not
])
def test_the_growth_target_is_the_service_over_raw_quotient(quotients, met):
    rows = targets(_bulk(quotients))
    growth = [r for r in rows if r["target"].startswith("bulk time grows with n")]
    assert len(growth) == 1 and growth[0]["met"] is met


def test_flatness_is_max_over_min_of_the_paired_quotients():
    # 3 pairs at each n; each n's figure is the median of its pairs' service/raw time.
    runs = {1_000: ([0.09, 0.07, 0.08], [0.10, 0.08, 0.10]),     # quotients 0.9, 0.875, 0.8
            100_000: ([9.0, 8.0, 11.0], [9.0, 10.0, 10.0])}      # quotients 1.0, 0.8, 1.1
    ratios = {str(n): pair_median([{"seconds": x} for x in s], [{"seconds": x} for x in r], "seconds")
              for n, (s, r) in runs.items()}
    assert ratios == {"1000": 0.875, "100000": 1.0}
    assert flatness(ratios) == pytest.approx(1.0 / 0.875, abs=1e-3)
