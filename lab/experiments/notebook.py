"""Set-up in a notebook: progress logging, the stack this kernel is pointed at, the versions."""
from __future__ import annotations

import logging
import os
import platform
import re
import sys
from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from lab.broker import kafka_version
from lab.pipeline import PAPERMILL_ENV
from lab.stack import LabStack
from services.common import kafka_clients

PROGRESS_FORMAT = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
# A progress line as PROGRESS_FORMAT writes it: the report leaves such lines out of printed output.
PROGRESS_LINE = re.compile(r"^\d\d:\d\d:\d\d ")


def under_papermill() -> bool:
    """True in a kernel that ./run_all.sh executes with papermill (it sets PAPERMILL_ENV), False in JupyterLab."""
    return os.environ.get(PAPERMILL_ENV) == "1"


def show_progress(level: int = logging.INFO) -> None:
    """Show the lab's log lines while an experiment runs.

    In JupyterLab they go to stdout: stderr would paint every line as a red error box. Under
    papermill they go to stderr, which run_all.sh streams to the terminal, indented, and the
    HTML report leaves out.
    """
    logger = logging.getLogger("lab")
    logger.setLevel(level)
    if not any(getattr(h, "_lab_progress", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr if under_papermill() else sys.stdout)
        handler.setFormatter(PROGRESS_FORMAT)
        handler._lab_progress = True
        logger.addHandler(handler)


def lab_stack() -> LabStack:
    """The stack run_all.sh (or the test) points this kernel at.

    LAB_STACK picks compose; LAB_HOME and the ports pick the rest.
    """
    from lab.compose import stack_from_env
    return stack_from_env(progress=logging.getLogger("lab.stack").info)


def notebook_setup() -> LabStack:
    """A notebook's first call: progress logging, whole tables (they are the evidence), and the stack."""
    show_progress()
    pd.set_option("display.max_rows", 500)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 200)
    return lab_stack()


def versions(stack: LabStack) -> dict:
    """Kafka and client versions: the pinned broker, what the broker says it speaks, the Python side."""
    cfg = stack.service_config()
    admin = kafka_clients.admin(cfg, client_id="lab-versions")
    try:
        cluster = admin.describe_cluster()
        broker = admin.get_broker_version_data(cluster["brokers"][0]["broker_id"])
        probed = broker.broker_version_str
    finally:
        admin.close()

    def pkg(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        # The embedded broker runs the version pinned in kafka/pom.xml; an external one is only probed.
        "kafka": None if stack.external_bootstrap else kafka_version(),
        "broker_api_probe": probed,
        "broker": stack.describe(),
        "cluster_id": cluster["cluster_id"],
        "python": platform.python_version(),
        "clients": {name: pkg(name) for name in
                    ("kafka-python", "requests", "flask", "pandas", "matplotlib", "papermill", "nbconvert")},
    }
