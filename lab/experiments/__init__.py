"""The lab's three experiments, as functions the notebooks call: the 10k load, consumer lag, replay.

Each experiment talks to a running stack (lab_stack() in a notebook: embedded or compose) over HTTP and
reads Kafka directly where the point is to check the services independently. Each one returns a plain
dict that the notebook records with lab.results; lab.experiments.tables turns those dicts into
DataFrames for the notebooks and the text report alike.

Modules: notebook (set-up in a notebook), client (HTTP and the waits), load (01), lag (02 and the drain
model), replay_check (03), tables. `from lab import experiments` gives every name.
"""
from lab.experiments.client import (
    HTTP_TIMEOUT_S,
    POLL_S,
    metrics,
    produce,
    replay,
    wait_counted,
    wait_live,
    wait_settled,
)
from lab.experiments.lag import (
    LagSampler,
    annotate_status,
    drain_model,
    drain_rates,
    drain_time_s,
    expected_drain_rate,
    phase_label,
    processed_between,
    run_lag_experiment,
    summarize_phases,
)
from lab.experiments.load import expected_order_ids, read_back_inventory, reconcile, run_load, split, topic_end_offsets
from lab.experiments.notebook import (
    PROGRESS_FORMAT,
    PROGRESS_LINE,
    lab_stack,
    notebook_setup,
    show_progress,
    under_papermill,
    versions,
)
from lab.experiments.replay_check import (
    KEY_METRICS,
    key_metrics,
    replay_summary,
    run_replay,
    run_replay_matters,
    true_counts,
)
from lab.experiments.tables import (
    drift_table,
    load_table,
    phase_table,
    readings_table,
    reconciliation_table,
    replay_table,
)
from lab.stack import restore_services  # its home is the stack side; notebooks and lab/*.py call it from here

__all__ = [
    "HTTP_TIMEOUT_S", "POLL_S", "metrics", "produce", "replay", "wait_counted", "wait_live", "wait_settled",
    "LagSampler", "annotate_status", "drain_model", "drain_rates", "drain_time_s", "expected_drain_rate",
    "phase_label", "processed_between", "run_lag_experiment", "summarize_phases",
    "expected_order_ids", "read_back_inventory", "reconcile", "run_load", "split", "topic_end_offsets",
    "PROGRESS_FORMAT", "PROGRESS_LINE", "lab_stack", "notebook_setup", "show_progress", "under_papermill", "versions",
    "KEY_METRICS", "key_metrics", "replay_summary", "run_replay", "run_replay_matters", "true_counts",
    "drift_table", "load_table", "phase_table", "readings_table", "reconciliation_table", "replay_table",
    "restore_services",
]
