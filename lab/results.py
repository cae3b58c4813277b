"""Named results: each notebook records one JSON file in RESULTS_DIR; the report reads only these.

Nothing ever parses a notebook's printed output: what a later step needs, a notebook
records here by name (papermill's advice, and scrapbook's idea, without the extra package).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from lab import paths

log = logging.getLogger(__name__)

LOAD = "01-load-10k"
LAG = "02-consumer-lag"
REPLAY = "03-replay"
SEMANTICS = "04-delivery-semantics"
NAMES = (LOAD, LAG, REPLAY, SEMANTICS)
RUN = "run"          # written by the pipeline: the command and the parameter sources


def path_of(name: str, results_dir: Path | None = None) -> Path:
    return (results_dir or paths.RESULTS_DIR) / f"{name}.json"


def record(name: str, doc: dict, results_dir: Path | None = None) -> Path:
    """Write doc as results/<name>.json (atomically, so a reader never sees half a file)."""
    out = path_of(name, results_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"name": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **doc}
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{name}.", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(body, f, indent=1, default=functools.partial(_jsonable, reports_dir=out.parent.parent))
    os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone who reads reports/
    os.replace(tmp, out)
    log.info("recorded %s", out)
    return out


def load(name: str, results_dir: Path | None = None) -> dict | None:
    """The recorded results of one notebook, or None when it has not recorded any."""
    try:
        return json.loads(path_of(name, results_dir).read_text())
    except FileNotFoundError:
        return None


def load_all(results_dir: Path | None = None) -> dict[str, dict | None]:
    return {name: load(name, results_dir) for name in NAMES}


def clear(results_dir: Path | None = None) -> None:
    """Forget earlier runs' results, so a report never mixes two runs."""
    for name in (*NAMES, RUN):
        path_of(name, results_dir).unlink(missing_ok=True)


def portable(path: str | Path, reports_dir: Path | None = None) -> str:
    """path as results record it: relative to the reports dir if inside it, else to the repository, else as given.

    Results feed the committed report: an absolute path would show the machine it ran on.
    """
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    resolved = p.resolve()
    for base in (Path(reports_dir or paths.REPORTS_DIR).resolve(), paths.ROOT):
        if resolved.is_relative_to(base):
            return resolved.relative_to(base).as_posix()
    return str(path)


def portable_args(argv: list[str], reports_dir: Path | None = None) -> list[str]:
    """A command line with its absolute paths (FILE or --opt=FILE) made portable."""
    out = []
    for arg in argv:
        opt, eq, value = arg.partition("=")
        out.append(f"{opt}={portable(value, reports_dir)}" if eq and opt.startswith("-")
                   else portable(arg, reports_dir))
    return out


def _jsonable(obj, reports_dir: Path | None = None):
    if isinstance(obj, Path):
        return portable(obj, reports_dir)
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    raise TypeError(f"cannot record {type(obj).__name__} as JSON")
