"""The experiments' results as DataFrames, for the notebooks and the text report alike."""
from __future__ import annotations

import pandas as pd

from lab.experiments.lag import drain_time_s
from lab.experiments.replay_check import key_metrics
from services.analytics.metrics import flatten


def load_table(load: dict) -> pd.DataFrame:
    """One row per batch: size, acknowledged, duration, events/s and the partition spread."""
    rows = []
    for b in load["batches"]:
        rows.append({"batch": b["batch"], "requested": b["requested"], "produced": b["produced"],
                     "failed": b["failed"], "duration_s": b["duration_s"], "events_per_s": b["events_per_s"],
                     **{f"partition {p}": c for p, c in sorted(b["by_partition"].items())}})
    t = load["totals"]
    rows.append({"batch": "total", "requested": t["requested"], "produced": t["produced"], "failed": t["failed"],
                 "duration_s": t["bulk_duration_s"], "events_per_s": t["events_per_s"],
                 **{f"partition {p}": c for p, c in t["by_partition"].items()}})
    return pd.DataFrame(rows).set_index("batch")


def reconciliation_table(load: dict) -> pd.DataFrame:
    rec = load["reconciliation"]
    expected = rec["counts"]["produced (acknowledged)"]
    return pd.DataFrame([{"count": name, "value": value, "matches": "yes" if value == expected else "NO"}
                         for name, value in rec["counts"].items()]).set_index("count")


def _percent(ratio: float | None) -> str | None:
    return None if ratio is None else f"{ratio:.0%}"


def phase_table(lag: dict) -> pd.DataFrame:
    """One row per phase: measured drain rates beside the model's, lag, the oldest event's age, the status."""
    rows = []
    for p in lag["phases"]:
        rows.append({"phase": p["phase"], "consumers": p["label"],
                     "observed_s": round(p["end_t"] - p["start_t"], 1),
                     "processed": p.get("processed", 0), "drain_events_per_s": p.get("events_per_s", 0.0),
                     "drain_after_start_events_per_s": p.get("active_events_per_s", 0.0),
                     "model_events_per_s": p.get("expected_events_per_s"),
                     "measured_vs_model": _percent(p.get("measured_vs_expected")),
                     "lag_start": p.get("lag_start"), "lag_max": p.get("lag_max"), "lag_end": p.get("lag_end"),
                     "oldest_event_max_s": p.get("lag_seconds_max"),
                     "lag_end_drained_in_s": p.get("drained_in_s_at_this_rate"),
                     "status": p["status"]["status"] if "status" in p else None,
                     "why": p["status"]["reason"] if "status" in p else None})
    return pd.DataFrame(rows).set_index("phase")


def readings_table(lag: dict) -> pd.DataFrame:
    """Every lag reading: per-partition lag in offsets, the total, the oldest event's age, the time the
    total would take to drain at its phase's measured rate, the status."""
    rates = {p["phase"]: p.get("active_events_per_s", 0.0) for p in lag["phases"]}
    rows = []
    for s in lag["samples"]:
        row = {"t_s": s["t"], "phase": s["phase"]}
        row.update({f"lag p{p['partition']}": p["lag"] for p in s["partitions"]})
        row["total"] = s["total_lag"]
        row.update({f"age p{p['partition']} s": round(p["lag_seconds"] or 0.0, 1) for p in s["partitions"]})
        drained = drain_time_s(s["total_lag"], rates.get(s["phase"]))
        row["at phase rate, drained in s"] = None if drained is None else round(drained, 1)
        row["status"] = s.get("status")
        rows.append(row)
    return pd.DataFrame(rows)


def replay_table(result: dict) -> pd.DataFrame:
    """metric, before, after, delta: every flattened metric of a replay's before/after."""
    before, after = flatten(result["before"]), flatten(result["after"])
    rows = []
    for key in list(dict.fromkeys([*before, *after])):
        b, a = before.get(key), after.get(key)
        num = isinstance(a, (int, float)) and isinstance(b, (int, float))
        rows.append({"metric": key, "before": b, "after": a, "delta": (a - b) if num else None})
    return pd.DataFrame(rows).set_index("metric")


def drift_table(demo: dict) -> pd.DataFrame:
    """Key metrics through the demo: right after the reset, drifted live, true, replay, restored."""
    cols = {"live, just after the reset": demo["after_reset"], "live, after new orders": demo["drifted"],
            "true (read from the topics)": demo["truth"], "replay after": key_metrics(demo["replay"]["after"]),
            "live, after a normal restart": demo["restored"]}
    return pd.DataFrame(cols).rename_axis("metric")
