"""The bench's arithmetic: summaries of repeated runs and side-by-side ratios."""
from __future__ import annotations

import statistics

# The services' definition, so the bench's p99 and /stats' p99 are the same statistic.
from services.common.percentiles import percentile  # noqa: F401 - re-exported for the sections


def summary(values) -> dict:
    """Median, min, max and spread ((max - min) / median) of repeated measurements."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "spread_pct": None, "n": 0, "values": []}
    med = statistics.median(vals)
    return {"median": round(med, 4), "min": round(min(vals), 4), "max": round(max(vals), 4),
            "spread_pct": round(100 * (max(vals) - min(vals)) / med, 1) if med else None,
            "n": len(vals), "values": [round(v, 4) for v in vals]}


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def versus(service: list[dict], raw: list[dict], **extra) -> dict:
    ratios = [s["events_per_s"] / r["events_per_s"] for s, r in zip(service, raw, strict=True)]
    return {**extra,
            "service_events_per_s": summary(s["events_per_s"] for s in service),
            "raw_events_per_s": summary(r["events_per_s"] for r in raw),
            # The median of the side-by-side pairs' ratios, as for bulk growth: a load spike
            # from elsewhere hits both halves of a pair, where a ratio of two medians taken
            # apart keeps it.
            "ratio": pair_median(service, raw, "events_per_s"),
            "ratio_of_medians": ratio(statistics.median(s["events_per_s"] for s in service),
                                      statistics.median(r["events_per_s"] for r in raw)),
            "ratio_per_rep": summary(ratios),
            "service_runs": service, "raw_runs": raw}


def pair_median(service: list[dict], raw: list[dict], key: str) -> float:
    """The median over side-by-side pairs of service[i][key] / raw[i][key]."""
    return round(statistics.median(s[key] / r[key] for s, r in zip(service, raw, strict=True)), 3)


def flatness(time_ratios: dict[str, float]) -> float:
    """max/min over n of (service time / raw time): 1 = the service grows with n as the raw loop does."""
    return round(max(time_ratios.values()) / min(time_ratios.values()), 3)


def linearity(seconds_by_n: dict[int, float]) -> dict:
    """How time grows with n: per-event time at each n and the marginal cost of the last step vs the first.

    Marginal cost per event between consecutive sizes removes the fixed cost of a request
    (HTTP, the final flush round trip); for linear growth the last step costs what the
    first did, so `marginal_ratio` is 1.
    """
    ns = sorted(seconds_by_n)
    per_event_us = {str(n): round(seconds_by_n[n] / n * 1e6, 2) for n in ns}
    steps = [(seconds_by_n[b] - seconds_by_n[a]) / (b - a) for a, b in zip(ns, ns[1:], strict=False)]
    return {"per_event_us": per_event_us,
            # Information (the target is flatness, see targets()): 1 = the same time per event at every n.
            "max_over_min": round(max(per_event_us.values()) / min(per_event_us.values()), 3),
            "marginal_us": [round(s * 1e6, 2) for s in steps],
            "marginal_ratio": round(steps[-1] / steps[0], 3) if steps and steps[0] > 0 else None}
