"""lab.lagstatus: the Burrow-like OK/WARN/STALL/STOP rules over windows of readings."""
from __future__ import annotations

import pytest

from lab.lagstatus import Reading, Status, evaluate, group_idle_s, group_status, partition_status


def window(*rows):
    """Readings one second apart from (committed, lag) pairs."""
    return [Reading(float(i), c, lag) for i, (c, lag) in enumerate(rows)]


@pytest.mark.parametrize("rows, idle, expected, words", [
    ([(10, 0)], 0, Status.OK, "caught up"),
    ([(10, 5), (10, 5), (15, 0)], 0, Status.OK, "caught up"),
    ([(10, 90), (20, 80), (30, 70)], 0, Status.OK, "falling 90 -> 70"),
    ([(10, 50), (20, 50), (30, 50)], 0, Status.OK, "steady at 50"),
    ([(10, 50), (20, 60), (30, 70)], 0, Status.WARN, "rising 50 -> 70"),
    ([(10, 50), (10, 50), (10, 50)], 2, Status.STALL, "stuck at 10"),
    ([(10, 50), (10, 60), (10, 70)], 2, Status.STALL, "stuck at 10"),
    ([(10, 50), (10, 50), (10, 50)], 30, Status.STOP, "no commit in the group for 30s"),
    ([(None, 50), (None, 50)], 30, Status.STOP, "no commit"),
    ([(None, 50), (None, 50)], 1, Status.STALL, "stuck at None"),
    ([(None, 50), (0, 49)], 0, Status.OK, "falling"),
    ([(10, 50)], 0, Status.WARN, "no trend yet"),
])
def test_partition_status(rows, idle, expected, words):
    verdict = partition_status(window(*rows), idle_s=idle, stop_after_s=15)
    assert verdict.status == expected
    assert words in verdict.reason


def test_partition_status_needs_a_reading():
    with pytest.raises(ValueError):
        partition_status([], idle_s=0, stop_after_s=15)


def test_group_is_its_worst_partition_and_names_it():
    windows = {
        0: window((10, 50), (10, 50), (10, 50)),   # starved while partition 2 is worked on
        1: window((10, 50), (10, 50), (10, 50)),
        2: window((10, 50), (20, 40), (30, 30)),
    }
    verdict = group_status(windows, stop_after_s=15)
    assert verdict.status == Status.STALL
    assert verdict.reason.startswith("partitions 0, 1:")
    assert verdict.partitions[2].status == Status.OK
    assert verdict.as_dict()["partitions"]["0"]["status"] == "STALL"


def test_group_with_no_commits_anywhere_for_long_is_stopped():
    windows = {p: [Reading(float(t), 10, 50) for t in range(0, 21, 5)] for p in range(3)}
    assert group_idle_s(windows) == 20
    assert group_status(windows, stop_after_s=15).status == Status.STOP


def test_idle_counts_from_the_last_move_anywhere_in_the_group():
    windows = {0: window((1, 5), (2, 4), (2, 4), (2, 4)), 1: window((7, 9), (7, 9), (7, 9), (7, 9))}
    assert group_idle_s(windows) == 2.0


def test_ok_group_reason_lists_every_partition():
    verdict = group_status({0: window((1, 0)), 1: window((1, 3), (4, 0))}, stop_after_s=15)
    assert verdict.status == Status.OK
    assert verdict.reason == "p0 caught up; p1 caught up"


def samples(*lags_per_sample, start_committed=100):
    """Recorded sample dicts (as LagSampler writes them) for three partitions draining by 10/s each."""
    out = []
    for i, lags in enumerate(lags_per_sample):
        out.append({"t": float(i), "phase": 1, "partitions": [
            {"partition": p, "committed": start_committed + 10 * i, "lag": lag} for p, lag in enumerate(lags)]})
    return out


def test_evaluate_uses_only_the_window_before_the_chosen_sample():
    recorded = samples((0, 0, 0), (50, 50, 50), (40, 40, 40), (30, 30, 30), (20, 20, 20))
    # Over the whole run lag rose from 0 (the burst); over the last three seconds it falls.
    assert evaluate(recorded, window_s=10, stop_after_s=15).status == Status.WARN
    assert evaluate(recorded, window_s=3, stop_after_s=15).reason.startswith("p0 lag falling 50 -> 20")
    assert evaluate(recorded, window_s=10, stop_after_s=15, at=1).reason.endswith(
        "rising 0 -> 50 while offsets advance")


def test_evaluate_needs_samples():
    with pytest.raises(ValueError):
        evaluate([], window_s=10, stop_after_s=15)
