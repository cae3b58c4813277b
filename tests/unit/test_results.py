"""lab.results: what a notebook records is portable, so the committed report names no path of the machine."""
from __future__ import annotations

import json

import pytest

from lab import paths, results


@pytest.mark.parametrize("path, expected", [
    ("{reports}/figures/lag_chart.png", "figures/lag_chart.png"),       # generated output: relative to the reports dir
    ("{reports}", "."),
    ("{root}/params/quick.yaml", "params/quick.yaml"),                   # an input of the repository: relative to it
    ("params/quick.yaml", "params/quick.yaml"),                          # relative already: as typed
    ("/elsewhere/my.yaml", "/elsewhere/my.yaml"),                        # outside both: the user's own file, as given
])
def test_portable_paths(tmp_path, path, expected):
    reports = tmp_path / "reports"
    assert results.portable(path.format(reports=reports, root=paths.ROOT), reports) == expected


def test_portable_paths_in_the_repository_reports_dir():
    assert results.portable(paths.ROOT / "reports" / "figures" / "x.png", paths.ROOT / "reports") == "figures/x.png"


def test_portable_args_keep_the_command_line_as_typed_but_relative(tmp_path):
    quick = paths.ROOT / "params" / "quick.yaml"
    argv = ["--keep", "--params", str(quick), f"--params={quick}", "-p", "n_events=400", "-p", "item=/x"]
    assert results.portable_args(argv, tmp_path) == \
        ["--keep", "--params", "params/quick.yaml", "--params=params/quick.yaml", "-p", "n_events=400", "-p", "item=/x"]


def test_recorded_paths_are_relative(tmp_path):
    reports = tmp_path / "reports"
    out = results.record(results.LOAD, {"chart": reports / "figures" / "load_chart.png",
                                        "params": [paths.ROOT / "params" / "lab.yaml"]}, reports / "results")
    text = out.read_text()
    assert str(tmp_path) not in text and str(paths.ROOT) not in text
    doc = json.loads(text)
    assert doc["chart"] == "figures/load_chart.png" and doc["params"] == ["params/lab.yaml"]
    assert results.load(results.LOAD, reports / "results")["chart"] == "figures/load_chart.png"
