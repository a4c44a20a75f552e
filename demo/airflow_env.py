"""Run the project's DAGs with ``dag.test()`` in a private Airflow home (SQLite), for the demo and tests.

Each DAG run happens in a child process so that its Airflow configuration (AIRFLOW_HOME,
folders, connections) never leaks into the caller.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
bag = DagBag(dag_folder=sys.argv[3])
if bag.import_errors:
    raise SystemExit(f"DAG import errors: {bag.import_errors}")
run = bag.get_dag(dag_id).test(run_conf=conf)
states = {}
for ti in run.get_task_instances():
    name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    states[name] = str(ti.state)
print("DAG-RESULT " + json.dumps({"state": str(run.state), "tasks": states}))
"""


def airflow_environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an embedded Airflow: SQLite in ``home``, this project's DAGs.

    The crack_ops plugin comes from the installed ``crack-model`` package (its ``airflow.plugins``
    entry point); the plugins folder is an empty one in ``home``.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "plugins").mkdir(exist_ok=True)
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH", "")])),
    }
    environment.update(extra or {})
    return environment


def migrate(environment: dict[str, str]) -> None:
    """Create (or upgrade) the metadata database."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=environment, check=True, capture_output=True, timeout=600)


def run_dag(dag_id: str, conf: dict[str, Any], environment: dict[str, str], *, echo: bool = False) -> dict[str, Any]:
    """``dag.test()`` one run; returns {"state": ..., "tasks": {task: state}}."""
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, dag_id, json.dumps(conf), environment["AIRFLOW__CORE__DAGS_FOLDER"]],
        env=environment, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if echo:
        sys.stderr.write(result.stderr[-20000:])
    lines = [line for line in result.stdout.splitlines() if line.startswith("DAG-RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"dag.test({dag_id}) failed (exit {result.returncode}):\n{result.stderr[-6000:]}")
    return dict(json.loads(lines[-1].removeprefix("DAG-RESULT ")))
