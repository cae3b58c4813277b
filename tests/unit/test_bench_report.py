"""The bench's report for the clients and scale sections: targets, ratios and the rows the table prints."""
from __future__ import annotations

import pytest

from lab.bench import table, targets
from lab.bench.clients import WHO, rotation, rows
from lab.bench.command import orders_written
from lab.bench.harness import Plan
from lab.bench.stats import summary


def _runs(rates: dict[str, list[float]], events: int = 1000) -> dict[str, list[dict]]:
    return {who: [{"events": events, "acked": events, "seconds": events / r, "events_per_s": r} for r in rs]
            for who, rs in rates.items()}


def test_each_client_runs_first_second_and_third_once_in_three_rotations():
    orders = [rotation(rep) for rep in range(3)]
    assert all(sorted(o) == sorted(WHO) for o in orders)
    for position in range(3):
        assert {o[position] for o in orders} == set(WHO)


def test_client_ratios_are_medians_of_the_pairs_in_one_rotation():
    # Rotation 2 ran on a slow moment for everyone: the pairs' ratios ignore it, the medians apart would not.
    r = rows(_runs({"service": [10_000, 5_000, 12_000], "kafka-python": [20_000, 10_000, 24_000],
                    "confluent-kafka": [80_000, 100_000, 96_000]}))
    assert r["service_over_confluent"] == pytest.approx(0.125)        # 0.125, 0.05, 0.125
    assert r["kafka_python_over_confluent"] == pytest.approx(0.25)    # 0.25, 0.1, 0.25
    assert r["service_over_kafka_python"] == pytest.approx(0.5)
    assert r["confluent-kafka_events_per_s"]["median"] == 96_000


def _clients() -> dict:
    return {"n": 50_000, "confluent_kafka": "2.16.1", "librdkafka": "2.16.0",
            "produce": rows(_runs({"service": [14_000], "kafka-python": [21_000], "confluent-kafka": [88_000]})),
            "read_decode": rows(_runs({"service": [90_000], "kafka-python": [93_000], "confluent-kafka": [105_000]},
                                      events=101_000))}


def _scale(analytics=(1.9, 1.8), inventory=(2.0, 2.1), replay=(79_000, 67_000)) -> dict:
    def s(v):
        return summary([v])
    return {"events": {"small": 10_000, "mid": 100_000, "large": 1_000_000},
            "analytics_restart_s": {"1000000": s(analytics[0]), "10000": s(analytics[1])},
            "analytics_restart_ratio": round(analytics[0] / analytics[1], 3),
            "inventory_restart_s": {"1000000": s(inventory[0]), "10000": s(inventory[1])},
            "inventory_restart_ratio": round(inventory[0] / inventory[1], 3),
            "replay_events_per_s": {"1000000": s(replay[0]), "100000": s(replay[1])},
            "replay_ratio": round(replay[0] / replay[1], 3),
            "analytics_peak_rss_mb": 141.0, "verify": {"seconds": 21.0, "peak_rss_mb": 1674.0, "ok": True}}


@pytest.mark.parametrize("scale, met", [
    (_scale(), {"analytics": True, "inventory": True, "replay": True}),
    # No snapshot: the restart reads the whole history; a replay that slows as the history grows.
    (_scale(analytics=(9.0, 1.8), replay=(50_000, 67_000)), {"analytics": False, "inventory": True, "replay": False}),
    (_scale(analytics=(3.6, 1.8)), {"analytics": True, "inventory": True, "replay": True}),  # exactly 2: met
])
def test_scale_targets(scale, met):
    rows_ = {t["target"].split()[0]: t for t in targets({"scale": scale})}
    assert set(rows_) == {"analytics", "inventory", "replay"}
    assert {k: r["met"] for k, r in rows_.items()} == met
    assert rows_["analytics"]["target"] == "analytics restart at 1,000,000 events / at 10,000"
    assert rows_["analytics"]["bound"] == "<= 2" and rows_["replay"]["bound"] == ">= 0.8"


def test_a_skipped_section_has_a_line_and_no_target():
    results = {"scale": {"skipped": "KAFKA_BOOTSTRAP names a cluster of its own"},
               "clients": {"skipped": "confluent-kafka is not installed"}}
    assert targets(results) == []
    text = table({"results": results, "targets": []})
    assert "scale rows skipped: KAFKA_BOOTSTRAP" in text
    assert "confluent-kafka rows skipped: confluent-kafka is not" in text


def test_the_clients_table_prints_the_ratios_over_confluent_and_the_java_ceiling():
    perf = {"record_size": 108, "events_per_s": summary([140_737])}
    text = table({"results": {"clients": _clients(), "perf": perf}, "targets": []})
    produce = next(line for line in text.splitlines() if line.startswith("| produce 50,000 orders"))
    cells = [c.strip() for c in produce.strip("|").split("|")]
    assert cells[1:7] == ["14,000 ev/s", "21,000 ev/s", "88,000 ev/s", "140,737 rec/s of 108 B", "0.16", "0.24"]
    read = next(line for line in text.splitlines() if line.startswith("| read + JSON decode 101,000 events"))
    assert [c.strip() for c in read.strip("|").split("|")][5:7] == ["0.86", "0.89"]
    assert "confluent-kafka 2.16.1, librdkafka 2.16.0" in text


def test_the_scale_table_puts_the_large_history_beside_the_small_one():
    report = {"results": {"scale": _scale()}, "targets": targets({"scale": _scale()})}
    lines = table(report).splitlines()
    analytics = next(line for line in lines if line.startswith("| analytics-consumer restart"))
    assert [c.strip() for c in analytics.strip("|").split("|")][1:4] == ["1.90 s", "1.80 s", "1.06"]
    replay = next(line for line in lines if line.startswith("| replay events/s, 1,000,000 vs 100,000"))
    assert [c.strip() for c in replay.strip("|").split("|")][1:4] == ["79,000 ev/s", "67,000 ev/s", "1.18"]
    assert any("verify 1,674" in line for line in lines)
    assert all(t["target"] in "\n".join(lines) for t in report["targets"])


def test_the_clients_section_counts_only_the_services_orders():
    plan = Plan(clients_n=50_000, clients_reps=3)
    assert orders_written(plan, ("clients",)) == 3 * 50_000 + plan.reps * plan.e2e_n
    assert orders_written(plan, ("e2e", "clients")) == orders_written(plan, ("e2e",)) + 3 * 50_000
