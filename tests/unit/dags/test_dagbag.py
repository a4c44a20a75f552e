"""DagBag: every DAG imports cleanly and cheaply, with tags, owners, retries, timeouts and docs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from demo.airflow_env import airflow_environment

DAGS = Path(__file__).resolve().parents[3] / "dags"

DAG_IDS = {"crack_nightly_scoring", "crack_retraining", "crack_labeled_pool_watch", "crack_champion_rollback"}
# boto3 is not listed: Airflow's Amazon provider imports it whenever any Asset is defined.
HEAVY = ("tensorflow", "keras", "pandas", "great_expectations", "sklearn", "PIL")

PROBE = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started

def templates(task):  # the Jinja strings among a (non-mapped) task's templated fields
    values = {}
    for field in getattr(task, "template_fields", ()):
        try:
            value = getattr(task, field)
        except Exception:  # mapped operators keep their arguments elsewhere
            continue
        if isinstance(value, str) and "{{" in value:
            values[field] = value
    return values

heavy = sorted({name.split(".")[0] for name in set(sys.modules) - before} & set(sys.argv[2].split(",")))
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tags": sorted(dag.tags), "doc_md": bool(dag.doc_md), "catchup": dag.catchup, "params": dag.params.dump(),
        "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner,
                              "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                              "upstream": sorted(t.upstream_task_ids),
                              "native": getattr(t, "render_template_as_native_obj", None),
                              "templates": templates(t)}
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
    """Every DAG loads and nothing fails to import."""
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
        # Bad data fails at once through AirflowFailException; a store that did not answer is retried everywhere.
        assert task["retries"] >= 1, task_id


def test_task_outputs_travel_as_xcomargs_not_jinja(dagbag):
    """No templated field pulls XCom through a Jinja string; the gate depends on train_candidate through its output,
    which also names the model (a "{{ params.model_name }}" of "2026" would render natively as the int 2026)."""
    for dag_id, dag in dagbag["dags"].items():
        for task_id, task in dag["tasks"].items():
            pulls = [field for field, value in task["templates"].items() if "xcom_pull" in value]
            assert pulls == [], f"{dag_id}.{task_id}"
    gate = dagbag["dags"]["crack_retraining"]["tasks"]["evaluate_gate"]
    assert gate["upstream"] == ["train_candidate"]
    assert "model_name" not in gate["templates"] and "candidate_version" not in gate["templates"]


def test_operators_fed_from_params_render_native_values(dagbag):
    """The sensor and the gate render "{{ params.x }}" as native values (an int, a list, a bool), not text."""
    for dag_id, task_id in (("crack_nightly_scoring", "wait_for_new_batches"), ("crack_retraining", "evaluate_gate")):
        task = dagbag["dags"][dag_id]["tasks"][task_id]
        assert task["templates"], task_id
        assert task["native"] is True, task_id


def test_the_retraining_dag_and_the_retrain_command_train_the_same_recipe_by_default(dagbag):
    """A param default that drifts from the CLI's would make the nightly candidate another model than a hand run."""
    from crack_model.cli.main import build_parser
    from crack_model.cli.retrain_command import retrain_settings

    command = retrain_settings(build_parser().parse_args(["retrain", "--store", "s"]))
    params = dagbag["dags"]["crack_retraining"]["params"]
    shared = set(command) & set(params) - {"weights"}  # None: the worker's $CRACK_MODEL_WEIGHTS
    assert {"zoom_factor", "seam_share", "crack_weight", "epochs", "image_size"} <= shared
    assert {"start_from_champion", "anchor_weight"} <= shared
    assert {key: params[key] for key in shared} == {key: command[key] for key in shared}


@pytest.mark.parametrize("path", sorted(DAGS.glob("*.py")), ids=lambda path: path.name)
def test_dag_files_define_no_asset_of_their_own(path):
    """Each Asset is defined once (crack_ops.assets): a DAG file only imports it."""
    assert not re.search(r"\bAsset\(", path.read_text(encoding="utf-8"))


def test_the_nightly_dags_page_names_every_alert_a_night_raises():
    """Its doc_md listed four kinds: unreadable_document and batch_rescored, raised every night they apply, were not."""
    import ast

    from crack_model.pipelines import alerts

    page = ast.get_docstring(ast.parse((DAGS / "crack_nightly_scoring.py").read_text(encoding="utf-8"))) or ""
    nightly = set(alerts.KINDS) - {alerts.CANDIDATE_REJECTED}  # the retraining DAG's
    assert {kind for kind in nightly if f"`{kind}`" not in page} == set()
