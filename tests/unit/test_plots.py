"""lab.plots draws real PNGs from recorded results; the captions say what each phase did."""
from __future__ import annotations

import matplotlib.image
import pytest

from lab import plots
from tests.unit.lab_fixtures import demo_result, lag_result, load_result


def assert_real_png(path, min_width):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[1] >= min_width
    assert pixels.std() > 0.05          # not a blank canvas


@pytest.mark.parametrize("draw, result, name", [
    (plots.lag_chart, lag_result, "lag_chart.png"),
    (plots.load_chart, load_result, "load_chart.png"),
    (plots.replay_chart, demo_result, "replay_chart.png"),
])
def test_charts_are_real_pngs(tmp_path, draw, result, name):
    out = draw(result(), tmp_path / "figures" / name)
    assert out == tmp_path / "figures" / name
    assert_real_png(out, min_width=800)


def test_phase_captions_name_the_stuck_partitions_and_the_catch_up():
    lag = lag_result()
    p1, _, p3 = lag["phases"]
    assert plots.phase_caption(p1, lag) == ["phase 1", "1 consumer, 100 ms/event", "drains 10.0 events/s",
                                            "100% of the model's 10/s", "status: STALL (p0, p1 stuck)"]
    assert plots.phase_caption(p3, lag)[2] == "caught up 2s after restart"
    assert plots.phase_caption({**p3, "lag_start": 0}, lag)[2] == "lag already 0"
