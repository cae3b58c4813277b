"""lab.pipeline: parameters and their precedence, the notebooks' parameter cells, the kernel's environment."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lab import paths, pipeline
from lab.stack import Stack

DECLARED = {
    "01-load-10k": {"n_events": {"inferred_type_name": "int", "default": "10_000", "help": "orders"},
                    "item": {"inferred_type_name": "str", "default": '"mixed"', "help": "item"}},
    "02-consumer-lag": {"phase1_s": {"inferred_type_name": "float", "default": "30.0", "help": "phase 1"},
                        "item": {"inferred_type_name": "str", "default": '"mixed"', "help": "item"}},
}


def test_later_layers_win_and_names_go_to_every_notebook_that_declares_them():
    resolved = pipeline.resolve(DECLARED, [
        ("params/lab.yaml", {"n_events": 5000, "item": "pizza"}),
        ("quick.yaml", {"n_events": 400}),
        ("-p", {"item": "taco"}),
    ])
    assert resolved == {"01-load-10k": {"n_events": 400, "item": "taco"}, "02-consumer-lag": {"item": "taco"}}


def test_an_int_is_taken_where_a_float_is_declared():
    resolved = pipeline.resolve(DECLARED, [("-p", {"phase1_s": 3})])
    assert resolved["02-consumer-lag"]["phase1_s"] == 3.0
    assert isinstance(resolved["02-consumer-lag"]["phase1_s"], float)


@pytest.mark.parametrize("values, message", [
    ({"n_event": 5}, "quick.yaml: unknown parameter 'n_event'; the notebooks declare item, n_events, phase1_s"),
    ({"n_events": "many"}, "quick.yaml: n_events='many' is not a int"),
    ({"n_events": 2.5}, "n_events=2.5 is not a int"),
    ({"n_events": True}, "n_events=True is not a int"),
    ({"phase1_s": "soon"}, "phase1_s='soon' is not a float"),
    ({"item": 7}, "item=7 is not a str"),
])
def test_wrong_names_and_types_are_refused(values, message):
    with pytest.raises(pipeline.ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pipeline.resolve(DECLARED, [("quick.yaml", values)])


@pytest.mark.parametrize("text, expected", [
    ("n_events=400", ("n_events", 400)),
    ("sample_interval_s=0.5", ("sample_interval_s", 0.5)),
    ("item=pizza", ("item", "pizza")),
    ("report_title=a: b", ("report_title", "a: b")),
    (" burst = 150", ("burst", 150)),
    ("item=", ("item", "")),
])
def test_parse_assignment(text, expected):
    assert pipeline.parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["n_events", "=3"])
def test_parse_assignment_needs_a_name_and_a_value(text):
    with pytest.raises(pipeline.ParameterError):
        pipeline.parse_assignment(text)


@pytest.mark.parametrize("content, expected", [
    ("# only comments\n", {}),
    ("n_events: 400\nitem: mixed\n", {"n_events": 400, "item": "mixed"}),
])
def test_load_param_file(tmp_path, content, expected):
    f = tmp_path / "p.yaml"
    f.write_text(content)
    assert pipeline.load_param_file(f) == expected


@pytest.mark.parametrize("content", ["- a\n- b\n", "n_events: [\n"])
def test_load_param_file_refuses_what_is_not_a_mapping(tmp_path, content):
    f = tmp_path / "p.yaml"
    f.write_text(content)
    with pytest.raises(pipeline.ParameterError):
        pipeline.load_param_file(f)


def test_load_param_file_names_a_missing_file(tmp_path):
    with pytest.raises(pipeline.ParameterError, match="does not exist"):
        pipeline.load_param_file(tmp_path / "nope.yaml")


def test_every_notebook_has_one_typed_commented_parameters_cell():
    declared = pipeline.declared_parameters()
    assert list(declared) == list(pipeline.NOTEBOOKS)
    for name in pipeline.NOTEBOOKS:
        nb = nbformat.read(paths.NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), name
        assert all(c.get("outputs") in (None, []) for c in nb.cells), f"{name} is committed with outputs"
        for pname, spec in declared[name].items():
            assert spec["inferred_type_name"] in ("int", "float", "str", "bool"), (name, pname)
            assert spec["help"], (name, pname)


def test_the_spec_figures_are_the_notebook_defaults():
    declared = pipeline.declared_parameters()
    defaults = {k: v["default"] for params in declared.values() for k, v in params.items()}
    assert (defaults["n_events"], defaults["batches"], defaults["item"]) == ("10_000", "4", '"mixed"')
    # 04 declares burst and throttle_ms too, with its own defaults: the spec's are 02's.
    lag = {k: v["default"] for k, v in declared["02-consumer-lag"].items()}
    assert (lag["throttle_ms"], lag["burst"], lag["sample_interval_s"]) == ("100", "3_000", "1.0")


@pytest.mark.parametrize("name", ["lab.yaml", "quick.yaml"])
def test_shipped_parameter_files_fit_the_notebooks(name):
    pipeline.resolve(pipeline.declared_parameters(), [(name, pipeline.load_param_file(paths.PARAMS_DIR / name))])


def test_plan_applies_standing_file_then_params_files_then_p(tmp_path):
    standing = tmp_path / "lab.yaml"
    standing.write_text("n_events: 5000\nburst: 500\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("n_events: 700\n")
    args, declared, overrides, layers = pipeline.plan(
        ["--keep", "--params", str(extra), "-p", "burst=50", "-p", "item=pizza"], standing=standing)
    assert args.keep
    assert overrides["01-load-10k"] == {"n_events": 700, "item": "pizza"}
    assert overrides["02-consumer-lag"] == {"burst": 50}
    assert [src for src, _ in layers] == [str(standing), str(extra), "-p"]
    shown = pipeline.effective(declared, overrides)
    assert shown["01-load-10k"] == {"n_events": "700", "batches": "4", "item": "'pizza'"}


def test_kernel_environment_points_stack_from_env_at_the_same_stack(tmp_path):
    stack = Stack(home=tmp_path / "state", kafka_port=19001, controller_port=19002, producer_port=19003,
                  analytics_port=19004, env={"INITIAL_STOCK": 1_000_000})
    env = pipeline.kernel_environment(stack, reports_dir=tmp_path / "reports")
    seen = Stack.from_env({k: v for k, v in env.items() if v})
    assert (seen.home, seen.kafka_port, seen.controller_port, seen.producer_port, seen.analytics_port,
            seen.external_bootstrap) == (stack.home, 19001, 19002, 19003, 19004, None)
    assert env["LAB_REPORTS_DIR"] == str(tmp_path / "reports")
    assert env["INITIAL_STOCK"] == "1000000"
    assert str(paths.ROOT) in env["PYTHONPATH"].split(os.pathsep)


def test_kernel_environment_of_an_external_cluster(tmp_path):
    env = pipeline.kernel_environment(Stack(home=tmp_path, external_bootstrap="kafka.example:9092"))
    assert Stack.from_env(env).bootstrap == "kafka.example:9092"


def test_environment_sets_removes_and_restores(monkeypatch):
    monkeypatch.setenv("LAB_TEST_KEEP", "1")
    monkeypatch.setenv("LAB_TEST_GONE", "x")
    with pipeline.environment({"LAB_TEST_NEW": "2", "LAB_TEST_GONE": ""}):
        assert os.environ["LAB_TEST_NEW"] == "2" and "LAB_TEST_GONE" not in os.environ
    assert "LAB_TEST_NEW" not in os.environ and os.environ["LAB_TEST_GONE"] == "x"


def test_kernel_runs_this_interpreter_from_a_fresh_process(tmp_path):
    # A fresh process, as run_all.sh starts one: the kernelspec it resolves must run the venv's python.
    env = {**os.environ, **pipeline.kernel_environment(Stack(home=tmp_path), tmp_path)}
    code = ("import json, sys; from jupyter_client.kernelspec import KernelSpecManager; from lab.pipeline import "
            "check_kernel; s = KernelSpecManager().get_kernel_spec('python3'); "
            "print(json.dumps([check_kernel(), s.argv, sys.executable]))")
    out = subprocess.run([sys.executable, "-c", code], env={k: v for k, v in env.items() if v}, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    described, argv, executable = json.loads(out.stdout)
    assert executable in described
    assert argv[0] in ("python", "python3") or Path(argv[0]).resolve() == Path(sys.executable).resolve()


def test_indented_prefixes_every_line_across_writes():
    out = io.StringIO()
    w = pipeline._Indented(out, prefix="> ")
    w.write("one\ntw")
    w.write("o\nthree\n")
    assert out.getvalue() == "> one\n> two\n> three\n"
