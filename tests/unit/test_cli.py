"""lab/cli.py: the test command's lint step."""
from __future__ import annotations

import pytest

from lab import cli

CLEAN = "import os\n\nprint(os.sep)\n"


@pytest.mark.parametrize("source, rule", [
    ("import os\n", "F401"),                                             # pyflakes
    ("import sys\nimport os\n\nprint(os.sep, sys.argv)\n", "I001"),      # import order
    ("def f(x=[]):\n    return x\n", "B006"),                            # bugbear
    ("x = '" + "y" * 130 + "'\n", "E501"),                               # line length
])
def test_lint_fails_with_ruffs_report_on_a_finding(tmp_path, capfd, source, rule):
    (tmp_path / "bad.py").write_text(source)
    assert cli.lint(tmp_path, ["."]) != 0
    assert rule in capfd.readouterr().out


def test_lint_passes_a_clean_file(tmp_path, capfd):
    (tmp_path / "good.py").write_text(CLEAN)
    assert cli.lint(tmp_path, ["."]) == 0


def test_test_command_stops_before_pytest_when_lint_fails(tmp_path, capfd, monkeypatch):
    (tmp_path / "bad.py").write_text("import os\n")
    monkeypatch.setattr(cli, "LINTED", (str(tmp_path),))
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    assert cli.main(["test", "--collect-only", "-q", "tests/unit/test_cli.py"]) != 0
    out, err = capfd.readouterr()
    assert "F401" in out and "ruff check failed" in err and "collected" not in out


def test_typecheck_fails_with_mypys_report_on_a_type_error_and_passes_a_typed_file(tmp_path, capfd):
    (tmp_path / "bad.py").write_text("def f(x: int) -> str:\n    return x\n")
    assert cli.typecheck(tmp_path, ["bad.py"]) != 0
    assert "Incompatible return value type" in capfd.readouterr().out
    (tmp_path / "bad.py").write_text("def f(x: int) -> str:\n    return str(x)\n")
    assert cli.typecheck(tmp_path, ["bad.py"]) == 0


def test_test_command_stops_before_pytest_when_the_type_check_fails(tmp_path, capfd, monkeypatch):
    (tmp_path / "bad.py").write_text("x: int = 'one'\n")
    monkeypatch.setattr(cli, "LINTED", (str(tmp_path),))
    monkeypatch.setattr(cli, "TYPED", (str(tmp_path / "bad.py"),))
    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    assert cli.main(["test", "--collect-only", "-q", "tests/unit/test_cli.py"]) != 0
    out, err = capfd.readouterr()
    assert "Incompatible types in assignment" in out and "mypy failed" in err and "collected" not in out
