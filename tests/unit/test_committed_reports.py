"""The committed reference run (reports/) names no path of the machine it ran on."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lab import paths

# Where checkouts and temporary folders live; the charts' base64 is left out (any short string occurs there).
MACHINE_PATHS = re.compile(r"/(?:work|tmp|root|home|Users|private|var/folders)/|PosixPath\(")
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]+")


def committed_text_reports() -> list[str]:
    try:
        listed = subprocess.run(["git", "ls-files", "reports"], cwd=paths.ROOT, capture_output=True, text=True)
    except FileNotFoundError:  # no git: nothing to tell committed from generated
        return []
    return [f for f in listed.stdout.split() if Path(f).suffix in (".txt", ".html", ".json", ".md")]


@pytest.mark.parametrize("name", committed_text_reports() or ["(none committed)"])
def test_a_committed_report_names_no_path_of_the_machine(name):
    if name == "(none committed)":
        pytest.skip("no committed reports (not a git checkout?)")
    text = DATA_URI.sub("", (paths.ROOT / name).read_text())
    assert str(paths.ROOT) not in text
    found = MACHINE_PATHS.findall(text)
    assert not found, f"{name} names machine paths: {found[:5]}"
