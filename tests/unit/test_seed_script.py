"""The seed's test command's own logic (tests/test_kafka.py): options, defaults, which stack, the tables."""
from __future__ import annotations

import socket

import pytest

from tests import test_kafka as seed
from tests.conftest import free_port


def test_defaults_are_the_seeds_numbers_and_ports():
    a = seed.parse_args(["--stack", "embedded"], {})
    assert (a.events, a.batches, a.burst, a.throttle_ms) == (10_000, 4, 3_000, 100)
    assert (a.producer, a.analytics, a.bootstrap) == \
        ("http://127.0.0.1:7001", "http://127.0.0.1:7002", "127.0.0.1:9092")
    assert a.report == seed.DEFAULT_REPORT and a.report.parent.name == "tests"
    assert a.report.name == "kafka_metrics_report.txt"


def test_the_environment_run_all_uses_moves_the_defaults():
    env = {"PRODUCER_PORT": "8001", "ANALYTICS_PORT": "8002", "KAFKA_PORT": "19092", "LAB_STACK": ""}
    a = seed.parse_args(["--stack", "embedded"], env)
    assert (a.producer, a.analytics, a.bootstrap) == \
        ("http://127.0.0.1:8001", "http://127.0.0.1:8002", "127.0.0.1:19092")
    assert seed.parse_args([], {"KAFKA_BOOTSTRAP": "broker:9092"}).bootstrap == "broker:9092"


def test_options_win_over_the_environment(tmp_path):
    a = seed.parse_args(["--events", "200", "--batches", "3", "--burst", "60", "--throttle-ms", "50",
                         "--producer", "http://h:1/", "--analytics", "http://h:2", "--bootstrap", "h:3",
                         "--report", str(tmp_path / "r.txt")], {"PRODUCER_PORT": "8001", "KAFKA_BOOTSTRAP": "x:1"})
    assert (a.events, a.batches, a.burst, a.throttle_ms) == (200, 3, 60, 50)
    assert (a.producer, a.analytics, a.bootstrap, a.report) == ("http://h:1", "http://h:2", "h:3", tmp_path / "r.txt")


@pytest.mark.parametrize("argv", [["--events", "0"], ["--burst", "-1"], ["--throttle-ms", "0"]])
def test_bad_sizes_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        seed.parse_args([*argv, "--stack", "embedded"], {})
    assert exc.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_compose_is_picked_from_lab_stack_or_the_only_broker_port_that_answers():
    assert seed.pick_stack("auto", {"LAB_STACK": "compose"}) == "compose"
    assert seed.pick_stack("auto", {"KAFKA_BOOTSTRAP": "h:1"}) == "embedded"
    assert seed.parse_args(["--stack", "compose"], {}).bootstrap == "127.0.0.1:9094"
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        answers, silent = listening.getsockname()[1], free_port()
        assert seed.pick_stack("auto", {"KAFKA_PORT": str(silent), "KAFKA_EXTERNAL_PORT": str(answers)}) == "compose"
        assert seed.pick_stack("auto", {"KAFKA_PORT": str(answers), "KAFKA_EXTERNAL_PORT": str(answers)}) == "embedded"


@pytest.mark.parametrize("n, parts, sizes", [(10_000, 4, [2500] * 4), (10, 3, [4, 3, 3]), (2, 4, [1, 1])])
def test_split(n, parts, sizes):
    assert seed.split(n, parts) == sizes


def test_the_before_after_table():
    rows = seed.before_after_rows({"orders_total": 5, "by": {"a": 1}, "phase": "live"},
                                  {"orders_total": 7, "by": {"a": 1, "b": 2}, "phase": "live"})
    assert rows == [("orders_total", 5, 7, 2), ("by.a", 1, 1, 0), ("phase", "live", "live", None),
                    ("by.b", None, 2, None)]
    lines = seed.table(("metric", "before", "after", "delta"), rows)
    assert lines[0].split() == ["metric", "before", "after", "delta"]
    assert lines[2].split() == ["orders_total", "5", "7", "2"] and lines[-1].split() == ["by.b", "-", "2", "-"]
