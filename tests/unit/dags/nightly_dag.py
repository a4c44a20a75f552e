"""The nightly DAG's tasks as Airflow parses them, for calling their functions directly."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "crack_nightly_scoring.py"


def nightly_task(task_id: str) -> Callable[..., Any]:
    """The function of one task of ``crack_nightly_scoring``, from the DAG file."""
    spec = importlib.util.spec_from_file_location("crack_nightly_scoring_under_test", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: Callable[..., Any] = module.crack_nightly_scoring().get_task(task_id).python_callable
    return function
