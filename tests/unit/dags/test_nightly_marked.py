"""The nightly DAG when an operator marks a task success without running it: the tasks after it find no output,
and say which task to clear instead of failing on ``None`` on every try."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.dags.nightly_dag import nightly_task
from tests.unit.plugins.test_notifications import no_connections  # noqa: F401

MODEL = {"uri": "models:/crack/v1", "version": "v1", "drift_reference": None, "runtime": "auto"}


@pytest.mark.parametrize(
    ("task_id", "arguments"),
    [("validate_batch", {"batch_id": "b1"}), ("score_shard", {"item": {"batch_id": "b1", "shard": "0/1"}})],
)
def test_a_resolve_model_marked_success_fails_the_batch_tasks_naming_it(tmp_path, monkeypatch, task_id, arguments):
    """Its XCom is empty, so the tasks get model=None: no AttributeError retried three times, but a failure without
    retries that names resolve_model and what to do."""
    import airflow.sdk
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": SimpleNamespace(try_number=1, max_tries=3)})
    params = {"store": str(tmp_path), "aws_conn_id": "aws_default"}
    with pytest.raises(AirflowFailException, match=r"resolve_model returned nothing .*clear resolve_model"):
        nightly_task(task_id)(**arguments, model=None, params=params)


class SensorState:
    """The task instance a task reads other tasks' states through: here, only the sensor's."""

    dag_id, run_id = "crack_nightly_scoring", "r1"

    def __init__(self, state: str) -> None:
        self.state = state

    def get_ti_count(self, *, dag_id, task_ids, run_ids, states):
        assert (dag_id, task_ids, run_ids) == (self.dag_id, ["wait_for_new_batches"], [self.run_id])
        return int(self.state in states)


def test_a_sensor_marked_success_turns_the_run_red_not_a_quiet_night(tmp_path, monkeypatch, no_connections):  # noqa: F811
    """Marked success, the sensor listed no batch: nothing was validated or scored, and the run must say so; a skipped
    sensor (no uploads tonight) still ends green."""
    import airflow.sdk
    from airflow.sdk.exceptions import AirflowFailException

    publish = nightly_task("publish_run_summary")
    (tmp_path / "models" / "crack").mkdir(parents=True)  # a deployment's store: a registry, no upload tonight
    (tmp_path / "models" / "crack" / "aliases.json").write_text("{}")
    params = {"store": str(tmp_path), "aws_conn_id": "aws_default", "release_batches": [], "error_rate_alert": 0.05,
              "notify_http_conn_id": None, "notify_smtp_conn_id": None}  # fmt: skip
    quiet = {"model": MODEL, "batch_ids": None, "validations": None, "work_items": None, "summaries": None}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": SensorState("skipped")})
    assert publish(**quiet, params=params, run_id="r1")["failed_batches"] == {}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": SensorState("success")})
    with pytest.raises(AirflowFailException, match="wait_for_new_batches succeeded without listing batches"):
        publish(**quiet, params=params, run_id="r1")


@pytest.mark.parametrize("run_type", ["scheduled", "manual"])
def test_a_backfill_of_the_nightly_scoring_fails_at_once_and_its_sensor_stops(tmp_path, monkeypatch, run_type):
    """Airflow 3 holds backfill runs to the backfill's own max_active_runs, not the DAG's 1: a week's backfill ran seven
    nights at once on the same new batches. Its runs now fail in resolve_model saying to trigger one run, and the
    sensor stops instead of waiting for uploads (soft_fail skips it); scheduled and manual runs go on."""
    import airflow.sdk
    from airflow.sdk.api.datamodels._generated import DagRunType
    from airflow.sdk.exceptions import AirflowFailException
    from crack_ops.sensors import NewBatchesSensor

    (tmp_path / "models" / "crack").mkdir(parents=True)  # a deployment's store: a registry, no upload yet
    (tmp_path / "models" / "crack" / "aliases.json").write_text("{}")
    dag = SimpleNamespace(dag_id="crack_nightly_scoring", params={})
    context = {"dag": dag, "dag_run": SimpleNamespace(run_type=DagRunType.BACKFILL, conf={})}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
    resolve, params = nightly_task("resolve_model"), {"store": str(tmp_path), "aws_conn_id": "aws_default"}
    with pytest.raises(AirflowFailException, match=r"not run per date.*trigger one run instead"):
        resolve(params=params)
    sensor = NewBatchesSensor(task_id="wait", store=str(tmp_path), soft_fail=True, mode="reschedule")
    with pytest.raises(AirflowFailException, match="not run per date"):
        sensor.poke(context)
    context["dag_run"] = SimpleNamespace(run_type=DagRunType(run_type), conf={})
    assert sensor.poke(context) is False  # past the check: no batch yet, it waits
    with pytest.raises(AirflowFailException, match="has no champion"):  # past the check: the registry's answer
        resolve(params={**params, "model": "models:/crack@champion", "max_tiles": None, "runtime": "auto"})


def test_a_night_on_a_store_that_holds_nothing_writes_nothing_there(tmp_path, no_connections):  # noqa: F811
    """The run summary of a night on a mistyped store went into it: the folder was created with runs/ in it, and the
    next night's sensor and resolve_model took it for a store without uploads or champion, and waited."""
    from airflow.sdk.exceptions import AirflowFailException

    publish = nightly_task("publish_run_summary")
    params = {"store": str(tmp_path / "nowhere"), "aws_conn_id": "aws_default", "release_batches": [],
              "error_rate_alert": 0.05, "notify_http_conn_id": None, "notify_smtp_conn_id": None}  # fmt: skip
    quiet = {"model": None, "batch_ids": None, "validations": None, "work_items": None, "summaries": None}
    with pytest.raises(AirflowFailException, match=r"holds nothing at all.*no run summary is written there"):
        publish(**quiet, params=params, run_id="r1")
    assert not (tmp_path / "nowhere").exists()
