"""lab.report: the text report from recorded results only, and the HTML of the executed notebooks."""
from __future__ import annotations

import base64
import io
import os

import matplotlib.image
import nbformat
import pytest

from lab import report, results
from tests.unit.lab_fixtures import demo_result, lag_result, load_result, replay_result

VERSIONS = {"kafka": "4.3.1", "broker_api_probe": "4.3", "broker": "embedded, KRaft, at 127.0.0.1:9092",
            "cluster_id": "abc", "python": "3.11.7", "clients": {"kafka-python": "3.0.12", "pandas": None}}


def record_all(results_dir):
    results.record(results.LOAD, {"parameters": {"n_events": 400, "batches": 4, "item": "mixed"},
                                  "versions": VERSIONS, **load_result()}, results_dir)
    results.record(results.LAG, {"parameters": {"burst": 300}, "versions": VERSIONS, **lag_result()}, results_dir)
    results.record(results.REPLAY, {"parameters": {"post_reset_orders": 100}, "versions": VERSIONS,
                                    "replay": replay_result(), "replay_matters": demo_result()}, results_dir)
    results.record(results.RUN, {"command": "./run_all.sh -p n_events=400", "param_files": ["params/lab.yaml"],
                                 "overrides": {"n_events": 400}, "parameters": {}}, results_dir)


def test_text_report_has_every_section_with_the_recorded_figures(tmp_path):
    record_all(tmp_path / "results")
    text = report.write_text_report(reports_dir=tmp_path).read_text()
    positions = [text.index(f"\n{s}\n{'=' * len(s)}\n") for s in report.SECTIONS]
    assert positions == sorted(positions)
    for expected in (
        "Apache Kafka 4.3.1 (embedded, KRaft, at 127.0.0.1:9092)", "client: kafka-python       3.0.12",
        "command          ./run_all.sh -p n_events=400", "01-load-10k: n_events=400, batches=4, item='mixed'",
        "400 of 400 events acknowledged in 4 batches", "RESULT: all counts agree.",
        "phase 1 status at its end: STALL: partitions 0, 1:", "lag reached 0 at t=12.0s",
        "scaling out to 3 consumers multiplied the drain rate by 3.00",
        "phase 1 (1 consumer, 100 ms/event): drained 10.0 events/s after its start, 100% of the model's "
        "10.0/s (1 x 1000 / 100 ms); its end lag of 260 would drain in 26.0 s at this rate",
        "POST /replay re-read 1,400 events", "Replay after equals the counts read straight from the topics.",
        "replay after equals the truth: yes; restored live metrics equal the truth: yes",
    ):
        assert expected in text
    readings = text[text.index("Lag readings"):text.index("3. REPLAY")]
    assert len([line for line in readings.splitlines() if line.strip()[:1].isdigit()]) == len(lag_result()["samples"])
    assert "client: pandas" not in text   # a client that is not installed is left out, not shown as None


def test_text_report_shows_a_mismatch_and_missing_results(tmp_path):
    load = load_result()
    load["reconciliation"] = {**load["reconciliation"], "reconciled": False,
                              "mismatches": ["/metrics orders_total increase = 399, expected 400"]}
    results.record(results.LOAD, {"parameters": {}, "versions": VERSIONS, **load}, tmp_path / "results")
    text = report.write_text_report(reports_dir=tmp_path).read_text()
    assert "RESULT: MISMATCH\n    - /metrics orders_total increase = 399, expected 400" in text
    assert "(not recorded: run notebooks/02-consumer-lag.ipynb, or ./run_all.sh)" in text
    assert all(f"\n{s}\n" in text for s in report.SECTIONS)


def tiny_png() -> str:
    out = io.BytesIO()
    matplotlib.image.imsave(out, [[0.0, 1.0], [1.0, 0.0]], format="png")
    return base64.b64encode(out.getvalue()).decode()


PNG = tiny_png()


def executed_notebook(path, marker):
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {marker} title"),
        nbformat.v4.new_code_cell("secret_input_code = 1", outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="progress log line\n"),
            # Progress as a JupyterLab run shows it (stdout), between lines the cell printed itself.
            nbformat.v4.new_output("stream", name="stdout",
                                   text=f"12:00:01 load batch 1/4: 100 of 100 events acknowledged\n{marker} printed\n"
                                        "12:00:02 lag t=  1.0s phase 1: total   300\n"),
            nbformat.v4.new_output("stream", name="stdout", text="12:00:03 reconciliation: all counts agree\n"),
            nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Image>"},
                                   metadata={"image/png": {"alt": f"{marker} chart"}}),
            # A chart as a cell's last expression, as the notebooks show theirs.
            nbformat.v4.new_output("execute_result", data={"image/png": PNG, "text/plain": "<Image>"},
                                   metadata={"image/png": {"alt": f"{marker} last chart"}}, execution_count=1),
            nbformat.v4.new_output("execute_result",
                                   data={"text/html": f"<table><tr><td>{marker} table</td></tr></table>",
                                         "text/plain": "table"}, execution_count=1),
        ]),
        nbformat.v4.new_code_cell("no_output_here = 2"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_html_report_has_outputs_and_charts_but_no_inputs_or_logs(tmp_path):
    record_all(tmp_path / "results")
    report.write_text_report(reports_dir=tmp_path)
    for name in results.NAMES:
        executed_notebook(tmp_path / "notebooks" / f"{name}.ipynb", name)
    html = report.write_html_report(title="Lab title", reports_dir=tmp_path).read_text()
    assert "<title>Lab title</title>" in html
    for name in results.NAMES:
        assert f"{name} table" in html and f'alt="{name} chart"' in html and f'alt="{name} last chart"' in html
    assert html.count('" src="data:image/png;base64,') == 2 * len(results.NAMES)   # the charts, embedded
    assert "No description has been provided" not in html
    assert "secret_input_code" not in html and "no_output_here" not in html
    assert "progress log line" not in html
    assert "load batch 1/4" not in html and "lag t=" not in html and "reconciliation: all" not in html
    assert all(f"{name} printed" in html for name in results.NAMES)
    assert "RESULT: all counts agree." in html          # the text report closes the page
    assert "Not executed in this run" not in html and "Run in JupyterLab" not in html


def test_html_report_says_which_copy_it_shows(tmp_path):
    results_dir, executed_dir, saved_dir = tmp_path / "results", tmp_path / "notebooks", tmp_path / "saved"
    record_all(results_dir)
    executed_notebook(executed_dir / f"{results.LOAD}.ipynb", "pipeline")
    executed_notebook(executed_dir / f"{results.LAG}.ipynb", "stale")
    executed_notebook(saved_dir / f"{results.LAG}.ipynb", "interactive")
    # 02 was run again in JupyterLab after the pipeline: its results are newer than the executed copy.
    old = os.path.getmtime(results.path_of(results.LAG, results_dir)) - 60
    os.utime(executed_dir / f"{results.LAG}.ipynb", (old, old))
    assert report.notebook_to_render(results.LOAD, executed_dir, results_dir, saved_dir) == \
        (executed_dir / f"{results.LOAD}.ipynb", None)
    path, note = report.notebook_to_render(results.LAG, executed_dir, results_dir, saved_dir)
    assert path == saved_dir / f"{results.LAG}.ipynb" and "JupyterLab" in note
    results.path_of(results.REPLAY, results_dir).unlink()
    assert report.notebook_to_render(results.REPLAY, executed_dir, results_dir, saved_dir) == \
        (None, "Not executed in this run.")


@pytest.mark.parametrize("name", results.NAMES)
def test_record_and_load_round_trip(tmp_path, name):
    path = results.record(name, {"value": 1, "where": tmp_path}, tmp_path)
    doc = results.load(name, tmp_path)
    # A path is recorded relative to the reports dir, here the results dir's parent (results.portable).
    assert doc["value"] == 1 and doc["where"] == tmp_path.name and doc["name"] == name
    assert path.stat().st_mode & 0o044 == 0o044     # readable by everyone who reads reports/
    results.clear(tmp_path)
    assert results.load(name, tmp_path) is None



def test_the_lag_section_puts_each_phase_beside_the_model():
    lag = lag_result()
    # One consumer at 100 ms/event that managed 9.2 events/s: 92% of the model, 8.7 ms per event more.
    lag["phases"][0].update(active_events_per_s=9.2, measured_vs_expected=0.92, extra_ms_per_event=8.7,
                            drained_in_s_at_this_rate=28.3)
    text = report.lag_section(lag)
    assert ("phase 1 (1 consumer, 100 ms/event): drained 9.2 events/s after its start, 92% of the model's "
            "10.0/s (1 x 1000 / 100 ms); the rest: 8.7 ms per event and consumer beyond the sleep") in text
    assert "its end lag of 260 would drain in 28.3 s at this rate" in text
    assert "phase 3 (1 consumer, unthrottled): drained 140.0 events/s after its start (unthrottled: no model" in text
