"""DagBag: every DAG imports cleanly and cheaply, with tags, owners, retries, timeouts and docs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from demo.airflow_env import airflow_environment

DAG_IDS = {"crack_nightly_scoring", "crack_retraining", "crack_labeled_pool_watch"}
# boto3 is not listed: Airflow's Amazon provider imports it whenever any Asset is defined.
HEAVY = ("tensorflow", "keras", "pandas", "great_expectations", "sklearn", "PIL")

PROBE = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
heavy = sorted({name.split(".")[0] for name in set(sys.modules) - before} & set(sys.argv[2].split(",")))
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags), "doc_md": bool(dag.doc_md), "catchup": dag.catchup,
        "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None}
                  for t in dag.tasks},
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags,
                  "seconds": seconds, "heavy": heavy}))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    environment = airflow_environment(tmp_path_factory.mktemp("airflow-home"))
    result = subprocess.run(
        [sys.executable, "-c", PROBE, environment["AIRFLOW__CORE__DAGS_FOLDER"], ",".join(HEAVY)],
        env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dags_import_without_errors(dagbag):
    """All three DAGs load and nothing fails to import."""
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == DAG_IDS


def test_dag_parsing_imports_nothing_heavy(dagbag):
    """Parsing never imports TensorFlow, pandas, GX, scikit-learn or Pillow (that is what keeps it fast)."""
    assert dagbag["heavy"] == []
    print(f"DagBag of {len(dagbag['dags'])} DAGs filled in {dagbag['seconds']:.2f} s")


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_dag_conventions(dagbag, dag_id):
    """Tags, docs, no catchup; every task has an owner, retries and a timeout."""
    dag = dagbag["dags"][dag_id]
    assert "crack" in dag["tags"]
    assert dag["doc_md"]
    assert dag["catchup"] is False
    for task_id, task in dag["tasks"].items():
        assert task["owner"] == "inspection-ml", task_id
        assert task["timeout"], task_id
        if task_id != "validate_labeled_pool":  # bad training data will not fix itself: no retries
            assert task["retries"] >= 1, task_id
