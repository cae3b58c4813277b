"""The one nearest-rank percentile: its edges, and the three places that report it agree."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from lab.bench.stats import percentile as bench_percentile
from services.analytics.metrics import latency_percentiles
from services.common.percentiles import histogram_percentile, nearest_rank, percentile
from services.producer.stats import ProducerStats

ONE_TO_TEN = list(range(1, 11))
ONE_TO_HUNDRED = list(range(1, 101))


@pytest.mark.parametrize("values, q, expected", [
    # Banker's rounding once gave 6 and 100 for these two.
    (ONE_TO_TEN, 50, 5),
    (ONE_TO_HUNDRED, 99, 99),
    (ONE_TO_TEN, 0, 1),
    (ONE_TO_TEN, 10, 1),
    (ONE_TO_TEN, 11, 2),
    (ONE_TO_TEN, 95, 10),
    (ONE_TO_TEN, 100, 10),
    (ONE_TO_HUNDRED, 1, 1),
    (ONE_TO_HUNDRED, 50, 50),
    (ONE_TO_HUNDRED, 95, 95),
    (ONE_TO_HUNDRED, 99.5, 100),
    (ONE_TO_HUNDRED, 100, 100),
    ([7.5], 0, 7.5),
    ([7.5], 50, 7.5),
    ([7.5], 99, 7.5),
    ([7.5], 100, 7.5),
    ([], 50, None),
    ([], 99, None),
])
def test_percentile_edges(values, q, expected):
    assert percentile(values, q) == expected
    assert percentile(reversed(values), q) == expected     # any order
    assert histogram_percentile(Counter(values), q) == expected


@pytest.mark.parametrize("n, q, rank", [(10, 50, 5), (100, 99, 99), (1, 0, 1), (1, 100, 1), (3, 34, 2),
                                        (20000, 99, 19800), (20000, 99.99, 19998), (20000, 100, 20000)])
def test_nearest_rank_is_the_ceiling_within_1_to_n(n, q, rank):
    assert nearest_rank(n, q) == rank


@pytest.mark.parametrize("seed", range(5))
def test_histogram_and_samples_agree_with_repeats(seed):
    rng = random.Random(seed)
    samples = [rng.randint(0, 30) for _ in range(rng.randint(1, 400))]
    for q in (1, 50, 90, 95, 99, 100):
        assert histogram_percentile(Counter(samples), q) == percentile(samples, q)


@pytest.mark.parametrize("values", [ONE_TO_TEN, ONE_TO_HUNDRED, [42], []])
def test_stats_metrics_and_bench_report_the_same_percentiles(values):
    stats = ProducerStats()
    stats.record_acks(Counter(), [float(v) for v in values])
    send = stats.snapshot()["send_latency_ms"]
    metrics = latency_percentiles(Counter(values))
    for q in (50, 95, 99):
        expected = percentile(values, q)
        assert send[f"p{q}"] == expected
        assert metrics[f"p{q}"] == expected
        assert bench_percentile(values, q) == expected
    assert send["samples"] == metrics["samples"] == len(values)
