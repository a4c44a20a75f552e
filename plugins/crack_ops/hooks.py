"""The workflow's object store, reached with an Airflow AWS connection: the one way a task gets its store.

Like the Amazon provider's S3Hook, ``CrackStoreHook`` is an ``AwsBaseHook``: the connection's
credentials (access keys, or a role it assumes, refreshed as they expire), region and
``endpoint_url`` extra (MinIO) stay in the boto3 session it builds and hands to the store.
Nothing is written to ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from crack_model.pipelines.stores import ObjectStore, open_run_store

STORE_VARIABLE = "crack_store"
# A deployment's lasting scoring runtime (README, Runtimes): int8 is not the fastest on every CPU.
RUNTIME_VARIABLE = "crack_runtime"
# A deployment's lasting tile budget per photo: a drone site's 50 MP photos are at the training patches' scale.
TILE_BUDGET_VARIABLE = "crack_max_tiles"
DEFAULT_CONNECTION = "aws_default"
# A deployment's store for when the Variable is unset (docker/docker-compose.yml sets it). A plain variable, not
# AIRFLOW_VAR_CRACK_STORE: Airflow reads that one before the metastore, so it hid the Variable set in the UI or CLI.
DEFAULT_STORE_ENVIRONMENT = "CRACK_STORE"


def default_store() -> str:
    """The store when neither a param nor the Variable ``crack_store`` names one: env ``CRACK_STORE`` (a
    deployment's default), else a folder in AIRFLOW_HOME (no cloud account needed)."""
    configured = os.environ.get(DEFAULT_STORE_ENVIRONMENT, "").strip()
    if configured:
        return configured
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return str(Path(home) / "crack-store")


class CrackStoreHook(AwsBaseHook):
    """Open the crack store: the ``store`` given, else the Variable ``crack_store``, else ``default_store()``.

    For an ``s3://`` store the AWS connection ``aws_conn_id`` supplies the boto3 session and the
    S3 endpoint (its ``endpoint_url`` extra, or ``service_config.s3.endpoint_url``). Without such
    a connection, boto3's own chain applies (environment, profile, instance role). A local store
    never looks the connection up.
    """

    hook_name = "Crack store"

    def __init__(self, store: str | None = None, aws_conn_id: str | None = DEFAULT_CONNECTION, **kwargs: Any) -> None:
        kwargs["client_type"] = "s3"
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)
        self.store = store

    def store_uri(self) -> str:
        """The store URI this hook opens (reads the Variable only when no store was given)."""
        if self.store:
            return self.store
        from airflow.sdk import Variable

        return str(Variable.get(STORE_VARIABLE, default=None) or default_store())

    def get_store(self) -> ObjectStore:
        """The store, open; an S3 store's client comes from this connection's session."""
        uri = self.store_uri()
        if not uri.startswith("s3://"):
            return open_run_store(uri)
        return open_run_store(
            uri,
            session=self.get_session(region_name=self.region_name),
            endpoint_url=self.conn_config.get_service_endpoint_url("s3"),
        )


def run_params(params: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The run's params inside a task (Airflow injects them; the ``None`` default is only TaskFlow's signature)."""
    if params is None:
        raise RuntimeError("this task needs its DAG run's params: call it from a DAG run, not directly")
    return params


def pinned_model(model: dict[str, Any] | None) -> dict[str, Any]:
    """The model ``resolve_model`` pinned for the run, or a failure without retries: a ``resolve_model`` marked success
    without running pinned none (its XCom is empty), and every try of every batch would fail alike on ``None``."""
    if model is None:
        from airflow.sdk.exceptions import AirflowFailException

        msg = ("no model was pinned for this run: resolve_model returned nothing (marked success without running?); "
               "clear resolve_model, and the tasks after it, to pin the model and score")  # fmt: skip
        raise AirflowFailException(msg)
    return model


def upstream_output(value: Any, task_id: str, needed: str) -> Any:
    """What ``task_id`` returned, or a failure without retries naming it: marked success without running, it returned
    nothing (its XCom is empty), and every try would fail alike on ``None`` with an error that names neither."""
    if value is None:
        from airflow.sdk.exceptions import AirflowFailException

        msg = (f"no {needed}: {task_id} returned nothing (marked success without running?); clear {task_id}, and "
               "the tasks after it, to run it")  # fmt: skip
        raise AirflowFailException(msg)
    return value


def refuse_unknown_settings() -> None:
    """Fail the run, without retries, when it was triggered with a setting its DAG does not declare: Airflow takes
    any key into the params, and a misspelled ``release_batch`` would leave the batch unreleased without a word."""
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    try:
        context = get_current_context()
    except RuntimeError:  # called outside a task (a test calling the task's function): no run, no settings
        return
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    dag = context["dag"]
    declared = set(dag.params)
    unknown = sorted(set(conf) - declared)
    if unknown:
        msg = (
            f"this run was triggered with setting(s) {', '.join(map(repr, unknown))}, which DAG {dag.dag_id} does "
            f"not know (misspelled?): trigger it again with known ones: {', '.join(sorted(declared))}"
        )
        raise AirflowFailException(msg)


def succeeded_in_this_run(task_id: str) -> bool:
    """Did ``task_id`` end ``success`` in the running task's DAG run? A task whose output is ``None`` although it
    succeeded was marked success without running: what it would have found was never looked for."""
    from airflow.sdk import get_current_context

    try:
        ti = get_current_context()["ti"]
    except RuntimeError:  # called outside a task (a test calling the task's function): no run to ask
        return False
    return bool(ti.get_ti_count(dag_id=ti.dag_id, task_ids=[task_id], run_ids=[ti.run_id], states=["success"]))


NIGHTLY_NOT_DATED = (
    "every run scores every batch not scored yet, so a backfill only runs nights at once on the same batches",
    "with batch_ids to name batches",
)


def refuse_backfill(why: str = NIGHTLY_NOT_DATED[0], instead: str = NIGHTLY_NOT_DATED[1]) -> None:
    """Fail a backfill run, without retries, of a DAG whose runs are no date's slice (by default the nightly
    scoring's: one run catches up a missed week). Airflow 3 holds backfill runs to the backfill's own
    ``max_active_runs`` (10 unless given), not the DAG's 1: a week's backfill ran seven nights at once, each
    validating and scoring the same batches beside the scheduled night, and alerting on the same failed ones.

    Args:
        why: what a run does instead of a date's slice, and so what a backfill would do.
        instead: how to trigger the one run that is wanted (after "trigger one run instead (...), ").
    """
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    try:
        context = get_current_context()
    except RuntimeError:  # called outside a task (a test calling the task's function): no run
        return
    run = context.get("dag_run")
    if getattr(run, "run_type", None) == "backfill":  # a str Enum: equal to its value, str() is its name
        dag_id = context["dag"].dag_id
        msg = f"{dag_id} is not run per date: {why}; trigger one run instead (airflow dags trigger {dag_id}), {instead}"
        raise AirflowFailException(msg)


def last_try() -> bool:
    """Is the running task on its last try? Objects the store did not answer for wait for a retry until then, and
    then become rows with the reason (every upload ends as one row)."""
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    return bool(ti.try_number > ti.max_tries)


def run_runtime(params: Mapping[str, Any] | None) -> str:
    """The runtime this run scores with: its ``runtime`` param, else the Variable ``crack_runtime``, else ``auto``.

    Scheduled runs carry no param, so the Variable is how a deployment keeps, say, ``litert-fp32`` on CPUs
    where int8 is no faster. The name is checked where the model is pinned, like the param's.
    """
    chosen = run_params(params).get("runtime")
    if chosen:
        return str(chosen)
    from airflow.sdk import Variable

    return str(Variable.get(RUNTIME_VARIABLE, default=None) or "").strip() or "auto"


def run_tile_budget(params: Mapping[str, Any] | None) -> int:
    """The tile budget per photo this run scores with: its ``max_tiles`` param, else the Variable ``crack_max_tiles``,
    else the library's default (512); checked, the Variable named if it is wrong (``nightly.chosen_tile_budget``)."""
    from crack_model.pipelines.nightly import chosen_tile_budget

    chosen = run_params(params).get("max_tiles")
    if chosen is not None:
        return chosen_tile_budget(chosen, variable_name=TILE_BUDGET_VARIABLE)
    from airflow.sdk import Variable

    return chosen_tile_budget(None, Variable.get(TILE_BUDGET_VARIABLE, default=None), TILE_BUDGET_VARIABLE)


def run_store(params: Mapping[str, Any] | None) -> ObjectStore:
    """The store of this DAG run, from its ``store`` and ``aws_conn_id`` params: what every task works on."""
    params = run_params(params)
    return CrackStoreHook(params.get("store"), params.get("aws_conn_id", DEFAULT_CONNECTION)).get_store()
