"""The lab's charts, drawn from recorded results (plain dicts) and saved as PNG files.

Figures are built with matplotlib's object API (no pyplot), so drawing works the same
in a notebook kernel, in run_all.sh and in tests, with no display and no global state.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PARTITION_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
PHASE_COLOURS = {1: "#fbe3e1", 2: "#fff1d6", 3: "#e3f4e1"}
DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    log.info("chart saved: %s", path)
    return path


STATUS_WORDS = {"WARN": "falling behind", "STALL": "stuck", "STOP": "no commits"}


def phase_caption(ph: dict, lag: dict) -> list[str]:
    """Short lines over a phase: which, who consumes, how fast it drained, the group's status at its end."""
    lines = [f"phase {ph['phase']}", ph["label"]]
    if ph["throttle_ms"] == 0 and ph.get("lag_start") == 0:
        lines.append("lag already 0")
    elif ph["throttle_ms"] == 0 and lag.get("caught_up_t") is not None and ph["start_t"] <= lag["caught_up_t"]:
        lines.append(f"caught up {lag['caught_up_t'] - ph['start_t']:.0f}s after restart")
    elif "active_events_per_s" in ph:
        lines.append(f"drains {ph['active_events_per_s']:,.1f} events/s")
        if ph.get("expected_events_per_s"):
            # The throttle's model beside the measurement: how much of the possible rate was reached.
            lines.append(f"{ph['measured_vs_expected']:.0%} of the model's {ph['expected_events_per_s']:,.0f}/s")
        if ph.get("lag_end") and ph.get("drained_in_s_at_this_rate") is not None:
            lines.append(f"{ph['lag_end']:,} left: drained in {ph['drained_in_s_at_this_rate']:,.0f}s at this rate")
    if ph.get("status"):
        st = ph["status"]
        culprits = [f"p{p}" for p, v in st["partitions"].items() if v["status"] == st["status"]]
        why = f" ({', '.join(culprits)} {STATUS_WORDS[st['status']]})" if st["status"] in STATUS_WORDS else ""
        lines.append(f"status: {st['status']}{why}")
    return lines


def lag_chart(lag: dict, path: Path) -> Path:
    """Per-partition and total lag over time with the three phases shaded; the oldest event's age below."""
    return _save(lag_figure(lag), path)


def lag_figure(lag: dict) -> Figure:
    """The lag chart's figure, of a finished experiment or of one still running (no burst yet, phases open)."""
    samples = lag["samples"]
    t = [s["t"] for s in samples]
    partitions = sorted({p["partition"] for s in samples for p in s["partitions"]})

    def series(p: int, field: str) -> list:
        out = []
        for s in samples:
            row = next((r for r in s["partitions"] if r["partition"] == p), None)
            out.append(None if row is None else (row[field] or 0))
        return out

    fig = Figure(figsize=(12, 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    for ax in (top, bottom):
        for ph in lag["phases"]:
            ax.axvspan(ph["start_t"], ph["end_t"], color=PHASE_COLOURS.get(ph["phase"], "#eeeeee"), zorder=0)
            ax.axvline(ph["start_t"], color="#888888", lw=0.8, ls=":", zorder=1)
        ax.grid(True, alpha=0.3)

    for i, p in enumerate(partitions):
        colour = PARTITION_COLOURS[i % len(PARTITION_COLOURS)]
        # Narrower lines on top of wider ones, so partitions with equal values all stay visible.
        width = 1.2 + 0.9 * (len(partitions) - 1 - i)
        top.plot(t, series(p, "lag"), color=colour, lw=width, label=f"partition {p}")
        bottom.plot(t, series(p, "lag_seconds"), color=colour, lw=width, label=f"partition {p}")
    top.plot(t, [s["total_lag"] for s in samples], color="black", lw=2.6, label="total")

    peak = max((s["total_lag"] for s in samples), default=0)
    top.set_ylim(0, max(1, peak) * 1.5)   # head-room for the phase captions
    burst = lag["burst"]
    if burst is not None:
        top.axvline(lag["burst_t"], color="#c0392b", lw=1.2, ls="--")
        top.annotate(f"burst of {burst['produced']:,} orders", xy=(lag["burst_t"], peak * 0.93),
                     xytext=(6, 0), textcoords="offset points", color="#c0392b", fontsize=9, va="top")
    for ph in lag["phases"]:
        # The last phase is often short: its caption hangs left from the plot's right edge.
        last = ph is lag["phases"][-1]
        top.text(ph["end_t"] - 0.5 if last else (ph["start_t"] + ph["end_t"]) / 2, max(1, peak) * 1.47,
                 "\n".join(phase_caption(ph, lag)), ha="right" if last else "center", va="top", fontsize=9)

    top.set_ylabel("lag (events not yet processed)")
    top.legend(loc="center left", bbox_to_anchor=(1.005, 0.5), fontsize=9)   # outside: never over a line
    bottom.set_ylabel("oldest unprocessed\nevent's age (s)")
    bottom.set_xlabel("seconds since the experiment started")
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="center left", bbox_to_anchor=(1.005, 0.5), fontsize=9)
    throttle = next((ph["throttle_ms"] for ph in lag["phases"] if ph["throttle_ms"]), 0)
    what = f"{burst['produced']:,}-order burst" if burst is not None else "a burst"
    live = f"live at t={lag['live_t']:.0f}s: " if "live_t" in lag else ""
    fig.suptitle(f"{live}Consumer lag of {lag['group']} on {lag['topic']}: {what} "
                 f"into a consumer throttled to {throttle} ms/event", fontsize=12)
    return fig


class LiveLagChart:
    """The lag chart of a running experiment, redrawn in place in a notebook: one IPython display, updated.

    Pass it as run_lag_experiment's on_progress. It needs IPython only (no widget library).
    """

    ALT = "Lag per partition and in total so far; the oldest unprocessed event's age below"

    def __init__(self, dpi: int = 72):
        self.dpi = dpi         # a smaller picture than the saved chart: it is redrawn at every sample
        self._handle = None

    def __call__(self, lag: dict) -> None:
        from IPython.display import Image, display

        buf = io.BytesIO()
        lag_figure(lag).savefig(buf, format="png", dpi=self.dpi)
        img = Image(data=buf.getvalue(), format="png", alt=self.ALT)
        if self._handle is None:
            self._handle = display(img, display_id=True)
        else:
            self._handle.update(img)


def load_chart(load: dict, path: Path) -> Path:
    """Events/s per batch, and how each batch spread over the partitions."""
    batches = load["batches"]
    labels = [str(b["batch"]) for b in batches]
    fig = Figure(figsize=(11, 4), layout="constrained")
    rate_ax, spread_ax = fig.subplots(1, 2)
    bars = rate_ax.bar(labels, [b["events_per_s"] for b in batches], color="#1f77b4")
    rate_ax.bar_label(bars, labels=[f"{b['events_per_s']:,.0f}/s\n{b['duration_s']:.2f}s" for b in batches],
                      fontsize=8, padding=2)
    rate_ax.set_ylim(0, max((b["events_per_s"] for b in batches), default=1) * 1.25)
    rate_ax.set_xlabel("batch")
    rate_ax.set_ylabel("events acknowledged per second")
    rate_ax.set_title("producer throughput per POST /orders/bulk")
    partitions = sorted({p for b in batches for p in b["by_partition"]}, key=int)
    bottom = [0] * len(batches)
    for i, p in enumerate(partitions):
        counts = [b["by_partition"].get(p, 0) for b in batches]
        spread_ax.bar(labels, counts, bottom=bottom, color=PARTITION_COLOURS[i % len(PARTITION_COLOURS)],
                      label=f"partition {p}")
        bottom = [a + c for a, c in zip(bottom, counts, strict=True)]
    spread_ax.set_xlabel("batch")
    spread_ax.set_ylabel("events")
    spread_ax.set_title("partition spread (keyed on order_id)")
    spread_ax.legend(fontsize=8, loc="lower right")
    t = load["totals"]
    fig.suptitle(f"{t['produced']:,} events in {len(batches)} batches; analytics counted them all "
                 f"{load['analytics_counted_after_s']:.1f}s after the first batch" if load["analytics_counted"]
                 else f"{t['produced']:,} events in {len(batches)} batches; analytics did NOT count them all",
                 fontsize=11)
    return _save(fig, path)


def replay_chart(demo: dict, path: Path) -> Path:
    """orders_total and inventory_events_total through the replay-matters demo."""
    stages = [("live, just\nafter reset", demo["after_reset"]), ("live, after\nnew orders", demo["drifted"]),
              ("true (read from\nthe topics)", demo["truth"]), ("POST /replay\nafter", demo["replay"]["after"]),
              ("live, after a\nnormal restart", demo["restored"])]
    metrics = ("orders_total", "inventory_events_total")
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.subplots()
    width = 0.38
    for i, metric in enumerate(metrics):
        xs = [k + (i - 0.5) * width for k in range(len(stages))]
        bars = ax.bar(xs, [s[metric] for _, s in stages], width, label=metric,
                      color=PARTITION_COLOURS[i])
        ax.bar_label(bars, labels=[f"{s[metric]:,}" for _, s in stages], fontsize=8, padding=2)
    ax.set_xticks(range(len(stages)), [name for name, _ in stages], fontsize=9)
    ax.set_ylabel("events counted")
    ax.set_ylim(0, max(s[m] for _, s in stages for m in metrics) * 1.15)
    ax.legend(fontsize=9, loc="upper left")
    ax.set_title("analytics without its rebuild counts only new arrivals; replay recomputes the truth")
    return _save(fig, path)


MODE_COLOURS = {"at_least_once": "#d62728", "exactly_once": "#2ca02c"}


def _kills(n: int) -> str:
    return f"{n} kill{'' if n == 1 else 's'}"


def semantics_chart(doc: dict, path: Path) -> Path:
    """Duplicates (both isolation levels) and stock drift per mode.

    Below, each crash run's output over time, kills marked.
    """
    modes = doc["modes"]
    names = [m["mode"] for m in modes]
    fig = Figure(figsize=(12, 4 + 2.4 * len(modes)), layout="constrained")
    grid = fig.add_gridspec(1 + len(modes), 2, height_ratios=(4, *[2.4] * len(modes)))
    dup_ax, drift_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
    width = 0.38
    for i, (iso, colour) in enumerate((("read_committed", "#1f77b4"), ("read_uncommitted", "#aec7e8"))):
        xs = [k + (i - 0.5) * width for k in range(len(modes))]
        values = [m["kill_run"][iso]["duplicates"] for m in modes]
        bars = dup_ax.bar(xs, values, width, color=colour, label=iso)
        dup_ax.bar_label(bars, labels=[str(v) for v in values], fontsize=9, padding=2)
    dup_ax.set_xticks(range(len(modes)), [f"{m['mode']}\n{_kills(m['kills_done'])}" for m in modes])
    dup_ax.set_ylabel("duplicate records (order ids seen again)")
    dup_ax.set_ylim(0, max([1] + [m["kill_run"][i]["duplicates"] for m in modes for i in ("read_committed",
                                                                                         "read_uncommitted")]) * 1.25)
    dup_ax.legend(fontsize=9, loc="upper right")
    dup_ax.set_title("duplicates in InventoryEvents after the kills")
    drift = [m["kill_run"]["stock"]["drift"] for m in modes]
    bars = drift_ax.bar(names, drift, color=[MODE_COLOURS.get(n, "#7f7f7f") for n in names])
    drift_ax.bar_label(bars, labels=[f"{d} units\n{m['throughput']['events_per_s']:,.0f} events/s without kills"
                                     for d, m in zip(drift, modes, strict=True)], fontsize=9, padding=2)
    drift_ax.set_ylim(0, max([1] + drift) * 1.4)
    drift_ax.set_ylabel("stock drift (units)")
    drift_ax.set_title("stock used minus units reserved by distinct orders")

    for row, m in enumerate(modes, start=1):
        ax = fig.add_subplot(grid[row, :])
        tl = m["kill_run"]["timeline"]
        t = tl["t"]
        ax.plot(t, range(1, len(t) + 1), color=MODE_COLOURS.get(m["mode"], "#7f7f7f"), lw=1.6,
                label="output records written (read_uncommitted)")
        for key, colour, marker, label in (("aborted", "#ff7f0e", "|", "aborted (hidden from read_committed)"),
                                           ("duplicate", "black", "x", "duplicate in read_committed")):
            idx = tl[key]
            if idx:
                ax.scatter([t[i] for i in idx], [i + 1 for i in idx], color=colour, marker=marker, s=30, zorder=3,
                           label=f"{label}: {len(idx)}")
        for j, kt in enumerate(m["kill_run"]["kill_times_s"]):
            ax.axvline(kt, color="#444444", ls="--", lw=1, label="kill -9" if j == 0 else None)
        ax.set_ylabel("records")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{m['mode']}: its output records over time, {_kills(m['kills_done'])}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        if row == len(modes):
            ax.set_xlabel("seconds since the burst")
    fig.suptitle(f"What a crash does to the output: {doc['burst']:,}-order bursts into inventory-consumer at "
                 f"{doc['throttle_ms']} ms/event, killed with -9 mid-stream", fontsize=12)
    return _save(fig, path)
