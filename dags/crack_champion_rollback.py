"""
### Roll the crack champion back

By hand only (no schedule): point the model's `champion` alias back at the champion before it
(the registry's audit log knows which), for a reason. The ops view's "Roll back the champion"
button triggers this DAG through Airflow's REST API with the operator's own login, so Airflow
records the run and who triggered it; the registry's audit entry records the same: the triggering
user as actor, this run's id, the reason. On success the `crack_champion_model` Asset is emitted,
as a promotion emits it.

A retry never rolls back twice: an audit entry of this run means done. A rollback that cannot be
made (no earlier champion, a blank reason, the champion moved since the operator looked) fails at
once without retries: retrying would not change the answer.

The step is `crack_model.pipelines.rollback.roll_back_champion`, the same one
`crack-model registry rollback` reaches through the registry.

**Params**: `reason` (required), `model_name`, `expected_champion` (refuse unless this version is
still the champion), `store` (default: Variable `crack_store`), `aws_conn_id`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from crack_ops.announcements import announced_in_this_run
from crack_ops.assets import CHAMPION_MODEL
from crack_ops.hooks import refuse_unknown_settings, run_params, run_store

DAG_ID = "crack_champion_rollback"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    # Nothing runs it but a trigger, so it may start unpaused: the ops view's button works on a new deployment.
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["crack", "registry", "rollback"],
    default_args={
        "owner": "inspection-ml",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=10),
    },
    params={
        "reason": Param(
            type="string", minLength=1, pattern=r"\S", maxLength=500, description="why (goes into the audit log)"
        ),
        "model_name": Param("crack", type="string"),
        "expected_champion": Param(
            None, type=["null", "string"], description="refuse unless this version is still the champion"
        ),
        "store": Param(None, type=["null", "string"], description="s3://bucket[/prefix] or a folder"),
        "aws_conn_id": Param("aws_default", type="string"),
    },
)
def crack_champion_rollback() -> None:
    @task(outlets=[CHAMPION_MODEL], inlets=[CHAMPION_MODEL])  # an inlet: this run's events are read back
    def roll_back_champion(
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        dag_run: Any = None,
        outlet_events: Any = None,
        inlet_events: Any = None,
    ) -> dict[str, Any]:
        """Champion back to the previous one; the audit entry names the triggering user and this run."""
        params = run_params(params)
        refuse_unknown_settings()
        from airflow.sdk.exceptions import AirflowFailException

        from crack_model.pipelines.rollback import roll_back_champion as roll_back
        from crack_model.pipelines.stores import CrackModelError

        # The REST API stores the user whose token triggered the run; a run without one says which DAG acted.
        actor = getattr(dag_run, "triggering_user_name", None) or f"airflow:{DAG_ID}"
        try:
            entry = roll_back(run_store(params), params["model_name"], reason=params["reason"], actor=actor,
                              run_id=run_id, expected_champion=params["expected_champion"] or None)  # fmt: skip
        except CrackModelError as error:
            raise AirflowFailException(str(error)) from None
        # Cleared after it succeeded, the task finds its rollback done (already_done): announced once is enough. A
        # try killed after the registry moved announced nothing, and this one does.
        earlier = announced_in_this_run(inlet_events, CHAMPION_MODEL)
        if any((extra.get("event"), extra.get("version")) == ("rollback", entry["to"]) for extra in earlier):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"the rollback to {entry['to']} was announced by an earlier try of this run")
        outlet_events[CHAMPION_MODEL].extra = {
            "model": params["model_name"],
            "version": entry["to"],
            "previous": entry["from"],
            "event": "rollback",
        }
        return entry

    roll_back_champion()


crack_champion_rollback()
