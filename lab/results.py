"""Named results: each notebook records one JSON file in RESULTS_DIR; the report reads only these.

Nothing ever parses a notebook's printed output: what a later step needs, a notebook
records here by name (papermill's advice, and scrapbook's idea, without the extra package).
"""
from __future__ import annotations

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
NAMES = (LOAD, LAG, REPLAY)
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
        json.dump(body, f, indent=1, default=_jsonable)
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


def _jsonable(obj):
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    raise TypeError(f"cannot record {type(obj).__name__} as JSON")
