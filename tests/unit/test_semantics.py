"""The delivery-semantics experiment's pure parts: duplicates, missing orders, stock drift, the table, chart and report.

Plus PROCESSING_GUARANTEE itself: its default, and a value that cannot work stopping the consumer in one line.
"""
from __future__ import annotations

import subprocess
import sys

import matplotlib.image
import pytest

from lab import paths, plots, report, semantics
from services.common.config import Config, ConfigError


def ev(order_id: str, qty: int, left: int, status: str = "reserved", warehouse: int = 0, item: str = "pizza") -> dict:
    return {"order_id": order_id, "item": item, "qty": qty, "status": status, "stock_left": left,
            "warehouse": warehouse}


# Warehouse 0, pizza from 100: a reserves 2, b reserves 3; then b is redelivered and reserved again.
ONCE = [ev("a", 2, 98), ev("b", 3, 95), ev("c", 1, 4, item="sushi", warehouse=1)]
TWICE = [*ONCE, ev("b", 3, 92)]


def test_guarantee_defaults_to_exactly_once_and_refuses_anything_else():
    assert Config.from_env({}).processing_guarantee == "exactly_once"
    assert Config.from_env({"PROCESSING_GUARANTEE": " At_Least_Once "}).processing_guarantee == "at_least_once"
    with pytest.raises(ConfigError, match=r"^PROCESSING_GUARANTEE='twice': use one of exactly_once, at_least_once$"):
        Config.from_env({"PROCESSING_GUARANTEE": "twice"})


def test_inventory_consumer_stops_at_start_with_one_line_for_a_bad_guarantee():
    proc = subprocess.run([sys.executable, "-m", "services.inventory"], cwd=paths.ROOT, capture_output=True,
                          text=True, timeout=60, env={"PROCESSING_GUARANTEE": "twice", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "inventory-consumer: PROCESSING_GUARANTEE='twice': use one of exactly_once, at_least_once"]


def test_modes_keep_their_order_and_refuse_unknown_or_repeated_ones():
    assert semantics.parse_modes("at_least_once, exactly_once") == ["at_least_once", "exactly_once"]
    assert semantics.parse_modes("exactly_once") == ["exactly_once"]
    for bad in ("", "exactly_once,exactly_once", "at_most_once"):
        with pytest.raises(ValueError):
            semantics.parse_modes(bad)


def test_restart_overrides_name_only_what_differs_from_the_default():
    assert semantics.overrides_for("exactly_once") == {}
    assert semantics.overrides_for("exactly_once", 20) == {"THROTTLE_MS": 20}
    assert semantics.overrides_for("at_least_once", 20) == {"PROCESSING_GUARANTEE": "at_least_once", "THROTTLE_MS": 20}


def test_duplicates_count_extra_records_and_the_orders_they_belong_to():
    assert semantics.duplicates(["a", "b", "b", "c", "c", "c"]) == {"duplicates": 3, "orders_doubled": 2}
    assert semantics.duplicates([]) == {"duplicates": 0, "orders_doubled": 0}


@pytest.mark.parametrize("records, used, reserved, drift", [
    (ONCE, 6, 6, 0),                      # each order reserved once: the stock used is what they reserved
    (TWICE, 9, 6, 3),                     # b reserved again: 3 units gone for no new order
    ([ev("a", 2, 0, status="rejected")], 0, 0, 0),  # a rejection uses no stock
    ([], 0, 0, 0),
])
def test_stock_drift_is_stock_used_minus_what_distinct_orders_reserved(records, used, reserved, drift):
    assert semantics.stock_drift(records) == {"stock_used": used, "reserved_units": reserved, "drift": drift}


def test_tally_counts_only_the_runs_orders_in_both_isolation_levels():
    aborted = ev("b", 3, 95)        # a crashed transaction's copy: in the log, hidden from read_committed
    foreign = ev("zz", 1, 91)
    fig = semantics.tally({"a", "b", "c", "d"}, {"read_committed": [*ONCE, foreign],
                                                 "read_uncommitted": [ONCE[0], aborted, *ONCE[1:], foreign]})
    assert fig["read_committed"] == {"records": 3, "foreign": 1, "orders": 3, "duplicates": 0, "orders_doubled": 0}
    assert fig["read_uncommitted"] == {"records": 4, "foreign": 1, "orders": 3, "duplicates": 1, "orders_doubled": 1}
    assert fig["missing"] == 1                       # d never came out
    assert fig["aborted_records"] == 1
    assert fig["stock"]["drift"] == 0


def test_markers_are_the_offsets_of_a_window_that_hold_no_record():
    assert semantics.markers({0: 10, 1: 0}, {0: 20, 1: 5}, records=15) == 0    # no transaction: no marker
    assert semantics.markers({0: 10, 1: 0}, {0: 20, 1: 5}, records=12) == 3


def test_timeline_marks_aborted_records_and_duplicates_in_write_order():
    t0 = 1_000_000
    entries = [{"order_id": oid, "partition": 0, "offset": off, "timestamp": t0 + ms}
               for oid, off, ms in (("a", 0, 100), ("b", 1, 200), ("b", 3, 1500), ("a", 4, 1600))]
    tl = semantics.timeline(entries, t0, committed_keys={(0, 0), (0, 3), (0, 4)})
    assert tl == {"t": [0.1, 0.2, 1.5, 1.6], "aborted": [1], "duplicate": [3]}


def mode_doc(mode: str, kills: int, dup_rc: int, dup_ru: int, drift: int, kill_times=None) -> dict:
    side = {"foreign": 0, "orders": 150, "orders_doubled": dup_rc}
    return {"mode": mode, "kills_done": kills,
            "kill_run": {"produced": 150, "kill_times_s": kill_times if kill_times is not None else [1.5] * kills,
                         "caught_up_s": 14.2,
                         "read_committed": {"records": 150 + dup_rc, "duplicates": dup_rc, **side},
                         "read_uncommitted": {"records": 150 + dup_ru, "duplicates": dup_ru,
                                              **{**side, "orders_doubled": dup_ru}},
                         "missing": 0, "aborted_records": dup_ru - dup_rc,
                         "markers": 0 if mode == "at_least_once" else 12,
                         "stock": {"stock_used": 450 + drift, "reserved_units": 450, "drift": drift},
                         "timeline": {"t": [0.5 + 0.1 * i for i in range(150 + dup_ru)],
                                      "aborted": list(range(10, 10 + dup_ru - dup_rc)),
                                      "duplicate": list(range(40, 40 + dup_rc))}},
            "throughput": {"produced": 150, "orders_out": 150, "duplicates": 0, "missing": 0, "duration_s": 0.3,
                           "events_per_s": 500.0}}


SEM = {"group": "inventory-grp", "topic": "InventoryEvents", "throttle_ms": 20, "burst": 150, "kills": 1,
       "modes": [mode_doc("at_least_once", 1, 7, 7, 22), mode_doc("exactly_once", 1, 0, 8, 0)]}


def test_table_and_verdict_state_the_figures_of_each_mode():
    table = semantics.semantics_table(SEM)
    assert list(table.index) == ["at_least_once", "exactly_once"]
    assert table.loc["at_least_once", "duplicates (read_committed)"] == 7
    assert table.loc["exactly_once", "duplicates (read_uncommitted)"] == 8
    assert table.loc["exactly_once", "aborted records"] == 8
    assert table.loc["at_least_once", "stock drift"] == 22
    assert table.loc["at_least_once", "txn markers"] == 0 and table.loc["exactly_once", "txn markers"] == 12
    alo, eo = semantics.verdict(SEM)
    assert alo.startswith("at_least_once: 1 kill, 7 duplicate records (7 orders processed twice) in "
                          "read_committed, stock drift 22 units; 0 missing.")
    assert eo.startswith("exactly_once: 1 kill, no duplicate in read_committed, no stock drift; read_uncommitted "
                         "sees 8 duplicates: the 8 records of aborted transactions")


def test_verdict_says_plainly_when_no_kill_landed_or_no_duplicate_happened():
    quiet = {**SEM, "modes": [mode_doc("at_least_once", 0, 0, 0, 0, kill_times=[]),
                              mode_doc("exactly_once", 1, 0, 0, 0)]}
    alo, eo = semantics.verdict(quiet)
    assert "no kill landed mid-stream in this run" in alo
    assert "no duplicate in read_committed, no stock drift" in eo and "read_uncommitted" not in eo


def test_report_section_has_the_table_and_the_verdicts():
    text = report.semantics_section(SEM)
    assert "a burst of 150 orders into one consumer at 20 ms/event" in text
    assert "duplicates (read_committed)" in text and "stock drift" in text
    assert "at_least_once: 1 kill, 7 duplicate records" in text
    assert "exactly_once: kills at 1.5s after the burst; lag 0 at 14.2s" in text
    assert "(not recorded: run notebooks/04-delivery-semantics.ipynb" in report.semantics_section(None)


def test_chart_is_a_picture_of_every_mode(tmp_path):
    png = plots.semantics_chart(SEM, tmp_path / "figures" / "semantics_chart.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1000 and pixels.std() > 0.05
