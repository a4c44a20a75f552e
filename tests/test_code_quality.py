"""The code base stays lint-clean and type-checked (what `make lint` runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SOURCES = [p for p in ("crack_model", "tests", "dags", "plugins", "bench", "demo") if (PROJECT / p).is_dir()]


def test_ruff_lint_and_format():
    """ruff finds nothing and the formatting is ruff's."""
    for command in (["check", *SOURCES], ["format", "--check", *SOURCES]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=PROJECT, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    """mypy passes on the library."""
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=PROJECT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_library_never_imports_airflow():
    """crack_model is plain Python: no Airflow import anywhere in it."""
    offenders = [
        str(path)
        for path in (PROJECT / "crack_model").rglob("*.py")
        if any(line.lstrip().startswith(("import airflow", "from airflow")) for line in path.read_text().splitlines())
    ]
    assert offenders == []
