"""./run_all.sh with no command: start the stack, execute the five notebooks with papermill, write reports/.

Parameters, lowest precedence first (a later source wins):

  1. the defaults in each notebook's `parameters` cell (the reference run: the spec's figures);
  2. params/lab.yaml, read on every run if it exists: your standing overrides;
  3. each --params FILE, in the order given (params/quick.yaml is a one-minute smoke run);
  4. each -p NAME=VALUE on the command line.

A name goes to every notebook whose parameters cell declares it; a name no notebook
declares is an error, and so is a value of the wrong type. Values are read as YAML
scalars: -p n_events=400, -p item=pizza, -p sample_interval_s=0.5.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import yaml
from traitlets.config import Config

from lab import paths, results
from lab.stack import LabStack, StackError, restore_services

NOTEBOOKS = ("01-load-10k", "02-consumer-lag", "03-replay", "04-delivery-semantics", "99-report")
STANDING_PARAMS = paths.PARAMS_DIR / "lab.yaml"
KERNEL = "python3"
# Set in the kernels papermill runs here: a notebook then writes only its final charts, and its
# progress goes to stderr, which the terminal shows indented (lab.experiments.under_papermill).
PAPERMILL_ENV = "LAB_PAPERMILL"
# CurveZMQ between papermill and the kernel when both sides support it (ipykernel declares it):
# the kernel's ports are on localhost, but on a shared machine nobody else should read them.
KERNEL_CONFIG = Config({"KernelManager": {"transport_encryption": "auto"}})


class ParameterError(ValueError):
    """A parameter source names an unknown parameter or gives a value of the wrong type."""


class KernelError(RuntimeError):
    """The notebooks' kernel is missing or would not run this virtualenv's python."""


# -- parameters --------------------------------------------------------------------------------
def declared_parameters(notebooks_dir: Path = paths.NOTEBOOKS_DIR) -> dict[str, dict[str, dict]]:
    """{notebook: {name: papermill's inspection (inferred_type_name, default, help)}} from the parameters cells."""
    import papermill

    return {name: papermill.inspect_notebook(notebooks_dir / f"{name}.ipynb") for name in NOTEBOOKS}


def parse_assignment(text: str) -> tuple[str, object]:
    """'n_events=400' -> ('n_events', 400): the value is a YAML scalar."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ParameterError(f"-p expects NAME=VALUE, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # A title such as "a: b" reads as a YAML mapping; parameters are scalars, so keep the text.
    return name.strip(), value if not isinstance(value, (dict, list)) else raw


def load_param_file(path: Path) -> dict:
    """A YAML mapping of parameter names to values; an empty (all comments) file is {}."""
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParameterError(f"parameter file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise ParameterError(f"{path} must be a mapping of parameter names to values")
    return doc


def _coerce(name: str, value, type_name: str, source: str):
    """value checked against the notebook's declared type; an int is accepted where a float is declared."""
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }.get(type_name, True)
    if not ok:
        raise ParameterError(f"{source}: {name}={value!r} is not a {type_name}")
    return float(value) if type_name == "float" else value


def resolve(declared: dict[str, dict[str, dict]], layers: list[tuple[str, dict]]) -> dict[str, dict]:
    """Apply the layers in order (later wins); {notebook: {name: value}} of the overrides for each notebook."""
    known = {name: spec for params in declared.values() for name, spec in params.items()}
    merged: dict[str, object] = {}
    for source, values in layers:
        for name, value in values.items():
            if name not in known:
                raise ParameterError(f"{source}: unknown parameter {name!r}; the notebooks declare "
                                     + ", ".join(sorted(known)))
            merged[name] = _coerce(name, value, known[name]["inferred_type_name"], source)
    return {nb: {k: v for k, v in merged.items() if k in params} for nb, params in declared.items()}


def effective(declared: dict[str, dict[str, dict]], overrides: dict[str, dict]) -> dict[str, dict[str, str]]:
    """{notebook: {name: value as shown}}: the overrides, and the notebook default for the rest."""
    return {nb: {name: repr(overrides[nb][name]) if name in overrides[nb] else spec["default"]
                 for name, spec in params.items()}
            for nb, params in declared.items()}


def parameter_help(declared: dict[str, dict[str, dict]]) -> str:
    lines = []
    for nb, params in declared.items():
        lines.append(f"  {nb}:")
        lines += [f"    {name} ({spec['inferred_type_name']}, default {spec['default']}): {spec['help']}"
                  for name, spec in params.items()]
    return "\n".join(lines)


# -- the kernel ----------------------------------------------------------------------------------
def kernel_environment(stack: LabStack, reports_dir: Path | None = None) -> dict[str, str]:
    """What a notebook kernel needs to find this very stack (lab.compose.stack_from_env) and write into reports_dir."""
    env = {
        **stack.child_environment(),
        "LAB_REPORTS_DIR": str(reports_dir or paths.REPORTS_DIR),
        # The notebooks import lab and services from the repository, wherever the kernel starts.
        "PYTHONPATH": os.pathsep.join(p for p in (str(paths.ROOT), os.environ.get("PYTHONPATH", "")) if p),
        # Kernelspecs come from this virtualenv first, before any in ~/.local/share/jupyter.
        "JUPYTER_PREFER_ENV_PATH": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    # The stack's extra service environment (e.g. INITIAL_STOCK in tests) must survive the
    # restarts that notebooks 02 and 03 make; services inherit it from the kernel.
    env.update({k: str(v) for k, v in stack.env.items()})
    return env


@contextlib.contextmanager
def environment(overrides: dict[str, str]):
    """os.environ with overrides (an empty value removes the variable), restored afterwards."""
    saved = dict(os.environ)
    for k, v in overrides.items():
        if v == "":
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_kernel(name: str = KERNEL) -> str:
    """The kernel papermill will start must run this interpreter (the venv's); returns where it comes from."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise KernelError(f"no Jupyter kernel named {name!r}: reinstall ipykernel in {sys.prefix}") from None
    argv0 = spec.argv[0]
    # jupyter_client runs a kernelspec's bare "python"/"python3" as the current interpreter.
    bare = {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}
    if argv0 not in bare and Path(argv0).resolve() != Path(sys.executable).resolve():
        raise KernelError(f"kernel {name!r} ({spec.resource_dir}) runs {argv0}, not {sys.executable}; "
                         f"remove that kernelspec or rerun ./run_all.sh to repair the virtualenv")
    return f"{name} from {spec.resource_dir}, running {sys.executable}"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM takes Ctrl-C's way out (restore the services, stop the stack) instead of dying on the spot."""
    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Indented:
    """A write-only stream that indents every line: the kernels' progress logs under the pipeline's lines."""

    def __init__(self, out, prefix: str = "    | "):
        self.out, self.prefix, self._bol = out, prefix, True

    def write(self, text: str) -> int:
        for line in text.splitlines(keepends=True):
            self.out.write((self.prefix if self._bol else "") + line)
            self._bol = line.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


# -- the run -------------------------------------------------------------------------------------
def _parser(declared) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="./run_all.sh", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole lab: start the stack, run notebooks 01, 02, 03, 04 and 99 with papermill into "
                    "reports/notebooks/, write reports/kafka_metrics_report.txt, reports/report.html and "
                    "reports/figures/, then stop the stack.",
        epilog=__doc__.split("\n", 2)[2] + "\nParameters:\n" + parameter_help(declared))
    p.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    p.add_argument("--params", action="append", default=[], metavar="FILE", type=Path,
                   help="a YAML file of parameters (repeatable; later files win)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="one parameter (repeatable; wins over every file)")
    return p


def plan(rest: list[str], notebooks_dir: Path = paths.NOTEBOOKS_DIR, standing: Path = STANDING_PARAMS):
    """Parse the command line and resolve every notebook's parameters: (args, declared, overrides, layers)."""
    declared = declared_parameters(notebooks_dir)
    args = _parser(declared).parse_args(rest)
    layers: list[tuple[str, dict]] = []
    if standing.exists():
        layers.append((str(standing.relative_to(paths.ROOT)) if standing.is_relative_to(paths.ROOT)
                       else str(standing), load_param_file(standing)))
    layers += [(str(f), load_param_file(f)) for f in args.params]
    layers.append(("-p", dict(parse_assignment(a) for a in args.param)))
    return args, declared, resolve(declared, layers), layers


def _clean_previous_run(reports_dir: Path) -> None:
    # A report must never mix this run with an earlier one.
    results.clear(reports_dir / "results")
    for name in NOTEBOOKS:
        (reports_dir / "notebooks" / f"{name}.ipynb").unlink(missing_ok=True)


def run_notebooks(overrides: dict[str, dict], reports_dir: Path, shown: dict[str, dict[str, str]]) -> int:
    """Execute the notebooks in order with papermill; stop at the first failure. Returns an exit code."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed_dir = reports_dir / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(NOTEBOOKS, 1):
        params = ", ".join(f"{k}={v}" for k, v in shown[name].items())
        print(f"[lab] {i}/{len(NOTEBOOKS)} {name}  {params}", flush=True)
        t0 = time.monotonic()
        out = executed_dir / f"{name}.ipynb"
        try:
            with environment({PAPERMILL_ENV: "1"}):
                papermill.execute_notebook(
                    paths.NOTEBOOKS_DIR / f"{name}.ipynb", out, parameters=overrides[name], kernel_name=KERNEL,
                    cwd=paths.NOTEBOOKS_DIR, progress_bar=False, log_output=False,
                    stderr_file=_Indented(sys.stdout), start_timeout=120, config=KERNEL_CONFIG)
        except PapermillExecutionError as exc:
            print(f"[lab] {name} FAILED in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                  f"[lab] the executed notebook, with the traceback, is {out}", file=sys.stderr, flush=True)
            return 1
        print(f"[lab] {i}/{len(NOTEBOOKS)} {name} done in {time.monotonic() - t0:.0f}s -> {out}", flush=True)
    return 0


def _findings(reports_dir: Path) -> list[str]:
    """What the recorded results say went wrong, for the final lines (the report has the details)."""
    out = []
    rec = results.load_all(reports_dir / "results")
    if rec[results.LOAD] and not rec[results.LOAD]["reconciliation"]["reconciled"]:
        out.append("the 10k load's counts do NOT reconcile")
    if rec[results.LAG] and not rec[results.LAG]["caught_up"]:
        out.append("consumer lag did NOT reach 0 in phase 3")
    if rec[results.REPLAY] and not (rec[results.REPLAY]["replay"]["after_matches_truth"]
                                    and rec[results.REPLAY]["replay_matters"]["replay_after_matches_truth"]):
        out.append("replay did NOT reproduce the counts read from the topics")
    for m in (rec[results.SEMANTICS] or {}).get("modes", ()):
        if m["mode"] == "exactly_once" and (m["kill_run"]["read_committed"]["duplicates"] or m["kill_run"]["missing"]):
            out.append("exactly-once output had duplicates or gaps after the kills")
    return out


def main(rest: list[str], stack: LabStack) -> int:
    """./run_all.sh [--keep] [--params FILE]... [-p NAME=VALUE]...: the whole lab, end to end."""
    try:
        args, declared, overrides, layers = plan(rest)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reports_dir = paths.REPORTS_DIR
    kernel_env = kernel_environment(stack, reports_dir)
    with environment(kernel_env):
        try:
            print(f"[lab] kernel {check_kernel()}", flush=True)
        except KernelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    started = time.monotonic()
    rc = 1
    up = False
    try:
        with environment(kernel_env), sigterm_as_interrupt():
            stack.up()
            up = True
            _clean_previous_run(reports_dir)
            results.record(results.RUN, {
                # As typed, but with no absolute path: the report shows these (results.portable).
                "command": " ".join(["./run_all.sh", *results.portable_args(rest, reports_dir)]),
                "param_files": [results.portable(src, reports_dir) for src, _ in layers if src != "-p"],
                "overrides": layers[-1][1],
                "parameters": effective(declared, overrides),
            }, reports_dir / "results")
            rc = run_notebooks(overrides, reports_dir, effective(declared, overrides))
    except KeyboardInterrupt:
        print("\n[lab] interrupted", file=sys.stderr)
        rc = 130
    finally:
        if up:
            try:
                # Notebook 02 restores the consumer itself; this covers a kernel that died mid-phase.
                for service in restore_services(stack):
                    print(f"[lab] restored {service} to normal", flush=True)
            except (StackError, OSError) as exc:
                print(f"[lab] could not restore the services: {exc}", file=sys.stderr)
                rc = rc or 1
        if args.keep:
            print("[lab] --keep: the stack keeps running (./run_all.sh down stops it)", flush=True)
        else:
            print("[lab] stopping the stack (--keep leaves it running)", flush=True)
            stack.down()
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    if rc == 0:
        print(f"[lab] done in {minutes}m{seconds:02d}s: {reports_dir / 'kafka_metrics_report.txt'}, "
              f"{reports_dir / 'report.html'}, {reports_dir / 'figures'}/", flush=True)
        for finding in _findings(reports_dir):
            print(f"[lab] WARNING: {finding}; see the report", flush=True)
    return rc
