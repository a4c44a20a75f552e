"""A task that emits an Asset, cleared after it succeeded and run again, does not announce the same thing twice."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest

from tests.unit.dags.nightly_dag import dag_task, nightly_task

RUN = "scheduled__2026-11-25T02:00:00+00:00"


class Events(list):
    """The events of one Asset, as a task reads them through ``inlet_events[asset]``."""

    def after(self, moment):
        return self


def event(task_id: str, extra: dict, run_id: str = RUN, dag_id: str = "crack_nightly_scoring") -> SimpleNamespace:
    return SimpleNamespace(source_dag_id=dag_id, source_run_id=run_id, source_task_id=task_id, extra=extra)


@pytest.fixture()
def running(monkeypatch):
    """The task instance of the task under test, in run ``RUN``."""
    import airflow.sdk

    ti = SimpleNamespace(try_number=1, max_tries=3, dag_id="crack_nightly_scoring", run_id=RUN, task_id="")
    dag = SimpleNamespace(dag_id=ti.dag_id, params={})  # the settings a run may be triggered with: none here
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": ti, "dag": dag})
    return ti


def test_a_finalize_cleared_after_it_succeeded_does_not_announce_its_batches_again(tmp_path, monkeypatch, running):
    """The second try merges the same parts again; only a batch no earlier try of this run announced is news (the
    same batch announced by another run, or by another task, does not count)."""
    from airflow.sdk.exceptions import AirflowSkipException

    import crack_model.pipelines.nightly as nightly

    running.task_id = "finalize_batches"
    monkeypatch.setattr(nightly, "finalize_batches", lambda store, reports, **options: [
        {"batch_id": item["batch_id"]} for item in reports])  # fmt: skip
    finalize = nightly_task("finalize_batches")
    params = {"store": str(tmp_path / "store"), "aws_conn_id": "aws_default"}
    reports = [{"batch_id": batch_id, "shard": "0/1", "already_complete": False} for batch_id in ("a", "b")]
    earlier = Events([event("finalize_batches", {"batches": ["a", "b"]})])
    with pytest.raises(AirflowSkipException, match="announced by an earlier try of this run"):
        finalize(reports=reports, params=params, outlet_events=defaultdict(SimpleNamespace),
                 inlet_events=defaultdict(lambda: earlier))  # fmt: skip
    earlier = Events([event("finalize_batches", {"batches": ["a"]}),
                      event("finalize_batches", {"batches": ["b"]}, run_id="manual__2026-11-25T09:00:00+00:00"),
                      event("publish_run_summary", {"batches": ["b"]})])  # fmt: skip
    events: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    finalize(reports=reports, params=params, outlet_events=events, inlet_events=defaultdict(lambda: earlier))
    [announced] = events.values()
    assert announced.extra["batches"] == ["b"]


def test_a_promotion_cleared_after_it_succeeded_does_not_announce_the_champion_again(running):
    """The gate cleared after it promoted reuses its report (promoted: True) and the branch runs the announcement
    again: every DAG scheduled on the champion Asset ran again for the same champion."""
    from airflow.sdk.exceptions import AirflowSkipException

    running.dag_id, running.task_id = "crack_retraining", "announce_promotion"
    announce = dag_task("crack_retraining", "announce_promotion")
    decision = {"candidate_version": "v2", "champion_version": "v1", "decision": "promote", "promoted": True}
    params = {"model_name": "crack"}
    earlier = Events([event("announce_promotion", {"model": "crack", "version": "v2"}, dag_id="crack_retraining")])
    with pytest.raises(AirflowSkipException, match="champion v2 was announced by an earlier try of this run"):
        announce(decision=decision, params=params, outlet_events=defaultdict(SimpleNamespace),
                 inlet_events=defaultdict(lambda: earlier))  # fmt: skip
    events: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    assert announce(decision=decision, params=params, outlet_events=events,
                    inlet_events=defaultdict(lambda: Events()))["outcome"] == "promoted"  # fmt: skip
    [announced] = events.values()
    assert announced.extra == {"model": "crack", "version": "v2", "previous": "v1"}


def test_a_rollback_cleared_after_it_succeeded_does_not_announce_the_champion_again(monkeypatch, running):
    """The registry keeps the rollback once per run (already_done on the second try); the Asset event went out again.
    A try killed after the registry moved announced nothing: then the next one announces it."""
    from airflow.sdk.exceptions import AirflowSkipException

    from crack_model.pipelines import rollback

    running.dag_id, running.task_id = "crack_champion_rollback", "roll_back_champion"
    entry = {"from": "v2", "to": "v1", "already_done": True}
    monkeypatch.setattr(rollback, "roll_back_champion", lambda *args, **kwargs: entry)
    roll_back = dag_task("crack_champion_rollback", "roll_back_champion")
    params = {"model_name": "crack", "reason": "false alarms", "expected_champion": None, "store": None,
              "aws_conn_id": "aws_default"}  # fmt: skip
    earlier = Events([event("roll_back_champion", {"model": "crack", "version": "v1", "event": "rollback"},
                            dag_id="crack_champion_rollback")])  # fmt: skip
    with pytest.raises(AirflowSkipException, match="rollback to v1 was announced by an earlier try"):
        roll_back(params=params, run_id=RUN, outlet_events=defaultdict(SimpleNamespace),
                  inlet_events=defaultdict(lambda: earlier))  # fmt: skip
    events: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    assert roll_back(params=params, run_id=RUN, outlet_events=events, inlet_events=defaultdict(Events)) == entry
    [announced] = events.values()
    assert announced.extra["version"] == "v1"


def test_a_batch_merged_again_with_other_uploads_in_the_same_run_is_announced_again(tmp_path, monkeypatch, running):
    """The run cleared after late uploads came into a batch it had merged: the batch is validated again and merged
    with other rows. That is news, not the same merge again: skipped, the consumers never heard of the new rows, and
    no later night merges the batch again. The same merge again (finalize_batches alone cleared) is still skipped."""
    from airflow.sdk.exceptions import AirflowSkipException

    import crack_model.pipelines.nightly as nightly

    running.task_id = "finalize_batches"
    manifest = {"a": "digest-1"}
    monkeypatch.setattr(nightly, "finalize_batches", lambda store, reports, **options: [
        {"batch_id": "a", "validated_manifest": manifest["a"], "model_version": "v1", "max_tiles": 64}])  # fmt: skip
    finalize = nightly_task("finalize_batches")
    params = {"store": str(tmp_path / "store"), "aws_conn_id": "aws_default"}
    reports = [{"batch_id": "a", "shard": "0/1", "already_complete": False}]
    first: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    finalize(reports=reports, params=params, outlet_events=first, inlet_events=defaultdict(Events))
    [announced] = first.values()
    earlier = Events([event("finalize_batches", announced.extra)])
    with pytest.raises(AirflowSkipException, match="announced by an earlier try of this run"):
        finalize(reports=reports, params=params, outlet_events=defaultdict(SimpleNamespace),
                 inlet_events=defaultdict(lambda: earlier))  # fmt: skip
    manifest["a"] = "digest-2"  # validated again with the late uploads
    again: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    finalize(reports=reports, params=params, outlet_events=again, inlet_events=defaultdict(lambda: earlier))
    [announced] = again.values()
    assert announced.extra["batches"] == ["a"]
