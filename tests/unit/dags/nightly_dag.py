"""The DAGs' tasks as Airflow parses them, for calling their functions directly."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

DAGS = Path(__file__).resolve().parents[3] / "dags"


def dag_task(dag_id: str, task_id: str) -> Callable[..., Any]:
    """The function of one task of the DAG ``dag_id``, from its file ``dags/<dag_id>.py``."""
    spec = importlib.util.spec_from_file_location(f"{dag_id}_under_test", DAGS / f"{dag_id}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: Callable[..., Any] = getattr(module, dag_id)().get_task(task_id).python_callable
    return function


def nightly_task(task_id: str) -> Callable[..., Any]:
    """The function of one task of ``crack_nightly_scoring``."""
    return dag_task("crack_nightly_scoring", task_id)
