"""The bench's pure arithmetic: how growth with n is judged."""
from __future__ import annotations

import pytest

from lab.bench import linearity, targets


def test_linear_time_gives_one():
    lin = linearity({1_000: 0.075, 10_000: 0.75, 100_000: 7.5})
    assert lin["per_event_us"] == {"1000": 75.0, "10000": 75.0, "100000": 75.0}
    assert lin["max_over_min"] == 1.0
    assert lin["marginal_ratio"] == pytest.approx(1.0)


def test_growth_is_the_worst_size_over_the_best():
    # 72 -> 90 us per event: 25% slower per event at the largest n.
    lin = linearity({1_000: 0.072, 10_000: 0.75, 100_000: 9.0})
    assert lin["max_over_min"] == pytest.approx(90 / 72, abs=1e-3)


def _bulk(service_s, raw_s):
    sizes = sorted(service_s)
    row = {"ratio": 1.0}
    return {"bulk": {"by_n": {str(n): row for n in sizes},
                     "linearity": {"service": linearity(service_s), "raw": linearity(raw_s),
                                   "flatness": 9.9},
                     "peak_rss_mb": {"producer-order": 1, "inventory-consumer": 1, "analytics-consumer": 1}}}


@pytest.mark.parametrize("service_s, met", [
    ({1_000: 0.075, 10_000: 0.8, 100_000: 8.5}, True),    # 75 / 80 / 85 us: within 20%
    ({1_000: 0.070, 10_000: 0.8, 100_000: 9.5}, False),   # 70 -> 95 us: 36% slower per event
])
def test_the_growth_target_judges_the_service_own_time(service_s, met):
    # The raw loop's growth (and the service/raw quotient, 9.9 here) does not enter the target.
    rows = targets(_bulk(service_s, {1_000: 0.07, 10_000: 1.0, 100_000: 12.0}))
    growth = [r for r in rows if r["target"].startswith("bulk time per event")]
    assert len(growth) == 1 and growth[0]["met"] is met
