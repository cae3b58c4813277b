"""The lab's report: kafka_metrics_report.txt from the recorded results, report.html from the executed notebooks.

The text report reads only lab.results' JSON files (never a notebook's printed output);
the HTML report is the executed notebooks, inputs hidden, with their charts embedded.
"""
from __future__ import annotations

import html
import logging
import time
from pathlib import Path

import nbformat
import pandas as pd

from lab import experiments, paths, results, semantics

log = logging.getLogger(__name__)

TITLE = "Kafka streaming lab: metrics report"
# Every section the text report always has, in order (a missing result says so inside its section).
SECTIONS = (
    "VERSIONS",
    "PARAMETERS",
    "1. LOAD IN BATCHES (spec test step 1: 10 000 events)",
    "2. CONSUMER LAG (spec test step 2)",
    "3. REPLAY (spec test step 3)",
    "4. DELIVERY SEMANTICS (a crashing inventory-consumer, at-least-once against exactly-once)",
    "FIGURES",
)
NOTEBOOK_OF = {results.LOAD: "notebooks/01-load-10k.ipynb", results.LAG: "notebooks/02-consumer-lag.ipynb",
               results.REPLAY: "notebooks/03-replay.ipynb", results.SEMANTICS: "notebooks/04-delivery-semantics.ipynb"}
WIDTH = 100


def _heading(title: str) -> str:
    return f"\n{title}\n{'=' * len(title)}\n"


def _missing(name: str) -> str:
    return f"(not recorded: run {NOTEBOOK_OF[name]}, or ./run_all.sh)\n"


def _table(df: pd.DataFrame, index: bool = True) -> str:
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_rows", 10_000,
                           "display.max_colwidth", 80):
        return df.to_string(index=index) + "\n"


def _kv(rows: dict, indent: str = "  ") -> str:
    width = max((len(k) for k in rows), default=0)
    return "".join(f"{indent}{k:<{width}}  {v}\n" for k, v in rows.items())


def versions_section(recorded: dict) -> str:
    doc = next((r for r in recorded.values() if r and r.get("versions")), None)
    if doc is None:
        return "(no notebook recorded versions)\n"
    v = doc["versions"]
    rows = {"Kafka broker": (f"Apache Kafka {v['kafka']} ({v['broker']})" if v.get("kafka") else v["broker"]),
            "broker API level (probed)": v["broker_api_probe"],
            "cluster id": v["cluster_id"],
            "Python": v["python"],
            **{f"client: {k}": ver for k, ver in v["clients"].items() if ver}}
    return _kv(rows)


def parameters_section(recorded: dict, run: dict | None) -> str:
    out = ""
    if run:
        out += _kv({"command": run["command"], "parameter files": ", ".join(run["param_files"]) or "(none)",
                    "-p overrides": ", ".join(f"{k}={v}" for k, v in run["overrides"].items()) or "(none)"})
        out += "  precedence: notebook defaults < params/lab.yaml < --params files in order < -p\n\n"
    for name in results.NAMES:
        doc = recorded.get(name)
        params = (doc or {}).get("parameters")
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items()) if params else "(not recorded)"
        out += f"  {name}: {shown}\n"
    return out


def load_section(load: dict | None) -> str:
    if load is None:
        return _missing(results.LOAD)
    t = load["totals"]
    rec = load["reconciliation"]
    rb = load["inventory_read_back"]
    out = (f"{t['produced']:,} of {t['requested']:,} events acknowledged in {len(load['batches'])} batches "
           f"via POST /orders/bulk: {t['events_per_s']:,.0f} events/s over {t['bulk_duration_s']:.2f}s of bulk "
           f"requests.\n")
    out += ("Analytics counted the whole load " if load["analytics_counted"]
            else "Analytics did NOT count the whole load; waited ")
    out += (f"{load['analytics_counted_after_s']:.2f}s after the first batch started "
            f"({load['analytics_counted_after_last_ack_s']:.2f}s after the last acknowledgement).\n\n")
    out += "Per batch (events/s, duration, partition spread):\n" + _table(experiments.load_table(load)) + "\n"
    out += "Reconciliation (three independent counts):\n" + _table(experiments.reconciliation_table(load))
    out += (f"  InventoryEvents read back: {rb['records']} records since the load began, {rb['ours']} distinct "
            f"orders of this load ({rb['reserved']} reserved, {rb['rejected']} rejected for lack of stock), "
            f"{rb['duplicates']} duplicates, {rb['foreign']} from elsewhere, {rb['invalid']} invalid.\n")
    out += ("  RESULT: all counts agree.\n" if rec["reconciled"]
            else "  RESULT: MISMATCH\n" + "".join(f"    - {m}\n" for m in rec["mismatches"]))
    return out


def lag_section(lag: dict | None) -> str:
    if lag is None:
        return _missing(results.LAG)
    b = lag["burst"]
    out = (f"Group {lag['group']} on {lag['topic']}: a burst of {b['produced']:,} orders at t={lag['burst_t']:.1f}s, "
           f"lag sampled per partition in offsets (end - committed, markers excluded) and in seconds "
           f"(age of the oldest unprocessed event).\n")
    out += (f"Status after Burrow's rules over a {lag['status_window_s']:g}s window "
            f"(STOP after {lag['stop_after_s']:g}s without any commit in the group).\n\n")
    phases = experiments.phase_table(lag).drop(columns=["why"])
    out += "Per phase:\n" + _table(phases) + "\n"
    for p in lag["phases"]:
        if "status" in p:
            out += f"  phase {p['phase']} status at its end: {p['status']['status']}: {p['status']['reason']}\n"
    out += "\n" + model_lines(lag) + "\n"
    speedup = lag.get("scale_out_speedup")
    if speedup is not None:
        out += (f"  scaling out to {lag['phases'][1]['instances']} consumers multiplied the drain rate "
                f"by {speedup:.2f}\n")
    out += (f"  lag reached 0 at t={lag['caught_up_t']:.1f}s\n" if lag["caught_up"]
            else "  lag did NOT reach 0 within the observation window\n")
    out += f"  final status: {lag['final_status']['status']}: {lag['final_status']['reason']}\n\n"
    out += "Lag readings (every sample; lag in events, age in seconds):\n"
    out += _table(experiments.readings_table(lag), index=False)
    return out


def model_lines(lag: dict) -> str:
    """Each phase's measured drain rate beside the throttle's model, and how long its end lag takes to drain."""
    out = ("Model against measurement: a throttled phase can drain at most instances x 1000 / throttle_ms "
           "events/s, with no more consumers at work than partitions; the model counts only the throttle's "
           "sleep.\n")
    for p in lag["phases"]:
        if "active_events_per_s" not in p:
            continue
        measured = p["active_events_per_s"]
        line = f"  phase {p['phase']} ({p['label']}): drained {measured:,.1f} events/s after its start"
        if p.get("expected_events_per_s"):
            line += (f", {p['measured_vs_expected']:.0%} of the model's {p['expected_events_per_s']:,.1f}/s "
                     f"({p['consumers_at_work']} x 1000 / {p['throttle_ms']} ms)")
            if (p.get("extra_ms_per_event") or 0) > 0:
                # Per working consumer, as if the partitions shared the work evenly.
                line += (f"; the rest: {p['extra_ms_per_event']:.1f} ms per event and consumer beyond the sleep, "
                         f"the work around it (decode, produce, the transaction commits) and any wait "
                         f"(for the CPU, for a partition's turn, a rebalance)")
        else:
            line += " (unthrottled: no model, the machine sets the rate)"
        drained = p.get("drained_in_s_at_this_rate")
        if p.get("lag_end"):
            line += (f"; its end lag of {p['lag_end']:,} would drain in {drained:,.1f} s at this rate"
                     if drained is not None else f"; its end lag of {p['lag_end']:,} does not drain at this rate")
        out += line + "\n"
    return out


def replay_section(rep: dict | None) -> str:
    if rep is None:
        return _missing(results.REPLAY)
    r, demo = rep["replay"], rep["replay_matters"]
    out = (f"POST /replay re-read {r['events_replayed']:,} events from offset 0 with a disposable group in "
           f"{r['duration_s']:.2f}s ({r['events_per_s']:,.0f} events/s); {len(r['diff'])} metrics differ from the "
           f"live ones.\n")
    out += ("Replay after equals the counts read straight from the topics.\n" if r["after_matches_truth"]
            else f"Replay after DIFFERS from the counts read straight from the topics: {r['truth']}\n")
    out += "\nBefore/after table (every metric):\n" + _table(experiments.replay_table(r)) + "\n"
    out += (f"Why replay matters: analytics restarted without rebuilding its state (ANALYTICS_REBUILD=0), then "
            f"{demo['post_reset_orders']:,} new orders arrived. Its live metrics counted only those; POST /replay "
            f"recomputed the true figures from the topics ({demo['replay']['events_replayed']:,} events in "
            f"{demo['replay']['duration_s']:.2f}s), and a normal restart rebuilt them.\n")
    out += _table(experiments.drift_table(demo))
    out += (f"  replay after equals the truth: {'yes' if demo['replay_after_matches_truth'] else 'NO'}; "
            f"restored live metrics equal the truth: {'yes' if demo['restored_matches_truth'] else 'NO'}\n")
    return out


def semantics_section(sem: dict | None) -> str:
    if sem is None:
        return _missing(results.SEMANTICS)
    out = (f"Per mode (PROCESSING_GUARANTEE of inventory-consumer): a burst of {sem['burst']:,} orders into one "
           f"consumer at {sem['throttle_ms']} ms/event, killed with -9 up to {sem['kills']} times mid-stream and "
           f"restarted at once (as a supervisor would), then drained to lag 0. {sem['topic']} was read back "
           f"independently over the run's own offsets, in read_committed and in read_uncommitted; only the "
           f"run's orders count. Throughput: the same burst into an unthrottled consumer, no kills, "
           f"POST to lag 0.\n\n")
    out += _table(semantics.semantics_table(sem)) + "\n"
    out += "".join(f"  {line}\n" for line in semantics.verdict(sem))
    for m in sem["modes"]:
        kills = ", ".join(f"{t:.1f}s" for t in m["kill_run"]["kill_times_s"]) or "none"
        out += f"  {m['mode']}: kills at {kills} after the burst; lag 0 at {m['kill_run']['caught_up_s']:.1f}s\n"
    out += ("  Stock drift = stock used in the window minus the units its distinct orders reserved: a redelivered "
            "order reserved again shows here.\n")
    return out


def figures_section(reports_dir: Path) -> str:
    figures = sorted((reports_dir / "figures").glob("*.png"))
    listed = "".join(f"  {f.relative_to(reports_dir)}\n" for f in figures) or "  (none drawn)\n"
    return listed + "  report.html: the executed notebooks with these charts, inputs hidden\n"


def render_text(recorded: dict, run: dict | None, reports_dir: Path, title: str = TITLE) -> str:
    """The whole text report from recorded results (a pure function of its inputs)."""
    bodies = (versions_section(recorded), parameters_section(recorded, run), load_section(recorded.get(results.LOAD)),
              lag_section(recorded.get(results.LAG)), replay_section(recorded.get(results.REPLAY)),
              semantics_section(recorded.get(results.SEMANTICS)), figures_section(reports_dir))
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    recorded_at = ", ".join(f"{n} {d['recorded_at']}" for n, d in recorded.items() if d)
    head = (f"{title}\n{'#' * len(title)}\n"
            f"Written {stamp} by notebooks/99-report.ipynb from reports/results/*.json (generated; do not edit).\n"
            f"Results recorded: {recorded_at or 'none'}\n")
    return head + "".join(_heading(s) + b for s, b in zip(SECTIONS, bodies, strict=True))


def write_text_report(title: str = TITLE, reports_dir: Path | None = None) -> Path:
    """Write reports/kafka_metrics_report.txt; returns its path."""
    reports_dir = reports_dir or paths.REPORTS_DIR
    results_dir = reports_dir / "results"
    text = render_text(results.load_all(results_dir), results.load(results.RUN, results_dir), reports_dir, title)
    out = reports_dir / "kafka_metrics_report.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log.info("text report written: %s", out)
    return out


def notebook_to_render(name: str, executed_dir: Path, results_dir: Path,
                       notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> tuple[Path | None, str | None]:
    """Which copy of a notebook shows the recorded results: (path or None, a note for the reader or None).

    ./run_all.sh writes the executed copy after the notebook recorded its results. Results newer
    than that copy come from a run in JupyterLab, whose outputs live in notebooks/ once saved.
    """
    executed, result = executed_dir / f"{name}.ipynb", results.path_of(name, results_dir)
    if executed.exists() and (not result.exists() or executed.stat().st_mtime >= result.stat().st_mtime):
        return executed, None
    if result.exists():
        return (notebooks_dir / f"{name}.ipynb",
                f"Run in JupyterLab, not by `./run_all.sh`: shown as last saved in notebooks/{name}.ipynb.")
    return None, "Not executed in this run."


def _with_alt_text(output: dict) -> dict:
    """A PNG output with alt text as an explicit <img>: nbconvert's lab template drops the alt metadata."""
    alt = output.get("metadata", {}).get("image/png", {}).get("alt")
    if (output.get("output_type") not in ("display_data", "execute_result")
            or "image/png" not in output.get("data", {}) or not alt):
        return output
    png = output["data"]["image/png"].replace("\n", "")
    img = f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}"/>'
    return {**output, "data": {"text/html": img, "text/plain": output["data"].get("text/plain", alt)},
            "metadata": {}}


def _without_progress(output: dict) -> dict | None:
    """An output without the lab's progress lines, or None if nothing else is left.

    Under papermill progress is the whole stderr stream; in a notebook run and saved in
    JupyterLab it is stdout lines in lab.experiments.PROGRESS_FORMAT, among what the cell printed.
    """
    if output.get("output_type") != "stream":
        return output
    if output.get("name") == "stderr":
        return None
    kept = [line for line in output.get("text", "").splitlines(keepends=True)
            if not experiments.PROGRESS_LINE.match(line)]
    return {**output, "text": "".join(kept)} if kept else None


def merged_notebook(notebooks: list[tuple[str, Path | None, str | None]], text_report: str,
                    title: str) -> nbformat.NotebookNode:
    """One notebook of the executed ones: markdown and outputs only (no stderr logs), the text report last."""
    merged = nbformat.v4.new_notebook()
    merged.cells.append(nbformat.v4.new_markdown_cell(
        f"# {title}\n\nThe lab notebooks as executed, inputs hidden "
        f"(rendered {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}); the text report closes the page."))
    for name, path, note in notebooks:
        if note:
            merged.cells.append(nbformat.v4.new_markdown_cell(f"*{name}: {note}*"))
        if path is None:
            continue
        nb = nbformat.read(path, as_version=4)
        merged.metadata = merged.metadata or nb.metadata
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                merged.cells.append(cell)
            elif cell.cell_type == "code":
                # Progress logs are for the terminal; the report keeps what the cells show.
                outputs = [_with_alt_text(o) for o in map(_without_progress, cell.get("outputs", [])) if o]
                if outputs:
                    merged.cells.append({**cell, "outputs": outputs})
    merged.cells.append(nbformat.v4.new_markdown_cell(
        "## kafka_metrics_report.txt\n\n```text\n" + text_report.rstrip() + "\n```"))
    merged.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    return merged


def write_html_report(title: str = TITLE, reports_dir: Path | None = None, executed_dir: Path | None = None) -> Path:
    """Write reports/report.html: executed notebooks 01-04 and the text report, inputs hidden."""
    from nbconvert import HTMLExporter

    reports_dir = reports_dir or paths.REPORTS_DIR
    executed_dir = executed_dir or reports_dir / "notebooks"
    text_path = reports_dir / "kafka_metrics_report.txt"
    text = text_path.read_text() if text_path.exists() else "(no text report written yet)"
    nb = merged_notebook([(name, *notebook_to_render(name, executed_dir, reports_dir / "results"))
                          for name in results.NAMES], text, title)
    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.from_dict(nb), resources={"metadata": {"name": title}})
    out = reports_dir / "report.html"
    out.write_text(body)
    log.info("HTML report written: %s", out)
    return out
