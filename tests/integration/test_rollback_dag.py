"""The ``crack_champion_rollback`` DAG run for real with dag.test(), on a local store promoted twice.

The run's triggering user (``dag_test`` under dag.test(); the logged-in user when the ops view
triggers it through the REST API) and its run id land in the registry's audit entry.
"""

from __future__ import annotations

import pytest

from crack_model.registry.versions import Registry
from demo.airflow_env import airflow_environment, migrate, run_dag
from tests.unit.pipelines.promotions import FIRST, SECOND, two_promotions

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on the same store: a rollback from SECOND to FIRST, then one with nothing left to roll back to."""
    store = two_promotions(tmp_path_factory.mktemp("rollback"))
    environment = airflow_environment(tmp_path_factory.mktemp("airflow-home"))
    migrate(environment)
    conf = {"store": store.uri, "model_name": "crack", "reason": "false alarms on site b",
            "expected_champion": SECOND}  # fmt: skip
    first = run_dag("crack_champion_rollback", conf, environment)
    history_after_first = Registry(store).history("crack")
    again = run_dag("crack_champion_rollback", {**conf, "expected_champion": None, "reason": "once more"}, environment)
    return {"store": store, "first": first, "history": history_after_first, "again": again}


def test_the_run_rolls_the_champion_back_and_the_audit_names_its_user_and_run(runs):
    """The champion is FIRST again; the audit entry holds the triggering user, the run id and the reason."""
    assert runs["first"]["state"] == "success", runs["first"]["failures"]
    assert runs["first"]["tasks"] == {"roll_back_champion": "success"}
    entry = runs["history"][-1]
    assert (entry.event, entry.from_version, entry.to_version) == ("rollback", SECOND, FIRST)
    assert entry.actor == "dag_test"  # dag.test()'s triggering_user_name; the REST API stores the caller's name
    assert entry.run_id == runs["first"]["run_id"] and entry.reason == "false alarms on site b"


def test_a_rollback_with_nowhere_to_go_fails_at_once_and_changes_nothing(runs):
    """The second run finds no earlier champion: the task fails without retrying; the champion stays FIRST."""
    assert runs["again"]["state"] == "failed"
    (failure,) = runs["again"]["failures"]
    assert failure["task"] == "roll_back_champion" and failure["state"].endswith("failed")
    assert "no previous champion" in failure["error"]
    registry = Registry(runs["store"])
    assert registry.aliases("crack").get("champion") == FIRST
    assert len(registry.history("crack")) == len(runs["history"])
