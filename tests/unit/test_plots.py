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
                                            "100% of the model's 10/s", "260 left: drained in 26s at this rate",
                                            "status: STALL (p0, p1 stuck)"]
    assert plots.phase_caption(p3, lag)[2] == "caught up 2s after restart"
    assert plots.phase_caption({**p3, "lag_start": 0}, lag)[2] == "lag already 0"


def test_the_live_lag_chart_is_one_picture_redrawn_in_place():
    """In a real kernel (no broker needed): three frames of a running experiment leave one picture, the last."""
    import base64
    import textwrap

    import nbclient
    import nbformat

    from lab import paths

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent("""\
        from lab import plots
        from tests.unit.lab_fixtures import lag_result, lag_samples
        lag, (samples, phases) = lag_result(), lag_samples()
        live = plots.LiveLagChart()
        for n, open_phases in ((3, 1), (8, 2), (len(samples), 3)):
            # As run_lag_experiment hands it over: no burst at first, only the phases begun so far.
            live({**lag, "burst": None if n == 3 else lag["burst"], "samples": samples[:n], "live_t": n,
                  "phases": phases[:open_phases]})
        """))]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(paths.ROOT)}}).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"]     # updated in place, not appended
    png = base64.b64decode(outputs[0].data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert outputs[0].metadata["image/png"]["alt"] == plots.LiveLagChart.ALT


def test_a_running_experiment_draws_without_a_burst_or_closed_phases(tmp_path):
    from tests.unit.lab_fixtures import lag_samples
    samples, phases = lag_samples()
    lag = {**lag_result(), "burst": None, "burst_t": None, "samples": samples[:2], "phases": phases[:1],
           "live_t": 1.0}
    fig = plots.lag_figure(lag)
    assert fig.get_suptitle().startswith("live at t=1s: ")
