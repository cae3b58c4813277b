"""Every path the lab reads or writes, in one place."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = ROOT / "kafka"
POM = KAFKA_DIR / "pom.xml"
NOTEBOOKS_DIR = ROOT / "notebooks"
PARAMS_DIR = ROOT / "params"
REPORTS_DIR = Path(os.environ.get("LAB_REPORTS_DIR", ROOT / "reports"))
FIGURES_DIR = REPORTS_DIR / "figures"
RESULTS_DIR = REPORTS_DIR / "results"          # named values the notebooks record
EXECUTED_DIR = REPORTS_DIR / "notebooks"       # papermill's executed copies
# Run-time state (broker data, logs, pid files, the jar cache); git-ignored.
STATE_DIR = Path(os.environ.get("LAB_HOME", ROOT / ".lab"))
JARS_DIR = ROOT / ".lab" / "kafka-jars"        # shared by every LAB_HOME: jars never change per stack
