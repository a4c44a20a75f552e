"""crack_retraining and crack_labeled_pool_watch when an operator marks a task success without running it: the
tasks after it find no output, and say which task to clear instead of failing on ``None`` on every try."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.dags.nightly_dag import dag_task


def test_a_validate_labeled_pool_marked_success_fails_training_naming_it(tmp_path, monkeypatch):
    """Its XCom is empty, so train_candidate got pool=None: "'NoneType' object is not subscriptable", retried twice
    with backoff; now a failure without retries that names validate_labeled_pool, before the pool is downloaded."""
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setattr(
        "crack_model.pipelines.retraining.download_labeled", lambda *args, **kwargs: pytest.fail("pool downloaded")
    )
    train_candidate = dag_task("crack_retraining", "train_candidate")
    params = {"store": str(tmp_path), "model_name": "crack", "weights": "none"}
    with pytest.raises(AirflowFailException, match=r"validate_labeled_pool returned nothing .*clear validate_lab"):
        train_candidate(None, params=params, run_id="manual")


def test_an_evaluate_gate_marked_success_fails_the_branch_naming_it():
    """choose_outcome got decision=None: "'NoneType' object has no attribute 'get'", retried twice; marking the gate
    success promotes nothing, and the run now says so and which task to clear."""
    from airflow.sdk.exceptions import AirflowFailException

    choose_outcome = dag_task("crack_retraining", "choose_outcome")
    with pytest.raises(AirflowFailException, match=r"no gate decision .*evaluate_gate returned nothing .*clear"):
        choose_outcome(None)
    assert choose_outcome({"promoted": True}) == "announce_promotion"


def test_a_detect_pool_change_marked_success_fails_the_recording_naming_it(tmp_path):
    """record_pool_digest got digest=None: "'NoneType' object has no attribute 'encode'", retried twice. It now fails
    without retries naming detect_pool_change, and records nothing: the next run announces the change."""
    from airflow.sdk.exceptions import AirflowFailException

    record = dag_task("crack_labeled_pool_watch", "record_pool_digest")
    with pytest.raises(AirflowFailException, match=r"no pool digest to record .*detect_pool_change returned nothing"):
        record(None, params={"store": str(tmp_path), "aws_conn_id": "aws_default"})
    assert not (tmp_path / "labeled" / "_DIGEST").exists()


@pytest.mark.parametrize("run_type", ["scheduled", "manual", "asset_triggered"])
def test_a_backfill_of_the_retraining_fails_at_once_before_the_pool_is_read(tmp_path, monkeypatch, run_type):
    """Airflow 3 holds backfill runs to the backfill's own max_active_runs (10), not the DAG's 1: a month's backfill
    queued five runs that each trained on today's pool at once. They now fail in the first task saying to trigger one
    run; scheduled, manual and Asset-triggered runs go on to the pool."""
    import airflow.sdk
    from airflow.sdk.api.datamodels._generated import DagRunType
    from airflow.sdk.exceptions import AirflowFailException

    calls = []
    monkeypatch.setattr("crack_model.pipelines.retraining.validate_pool", lambda store, **options: calls.append(store))
    monkeypatch.setattr("crack_model.pipelines.retraining.check_settings", lambda *args, **kwargs: None)
    context = {"dag": SimpleNamespace(dag_id="crack_retraining", params={}),
               "dag_run": SimpleNamespace(run_type=DagRunType.BACKFILL, conf={})}  # fmt: skip
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
    validate = dag_task("crack_retraining", "validate_labeled_pool")
    params = {"store": str(tmp_path), "aws_conn_id": "aws_default", "model_name": "crack", "holdout": "elsewhere"}
    with pytest.raises(AirflowFailException, match=r"crack_retraining is not run per date: .*trigger one run instead"):
        validate(params=params)
    assert calls == []
    context["dag_run"] = SimpleNamespace(run_type=DagRunType(run_type), conf={})
    validate(params=params)
    assert len(calls) == 1
