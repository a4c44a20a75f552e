"""crack_retraining and crack_labeled_pool_watch when an operator marks a task success without running it: the
tasks after it find no output, and say which task to clear instead of failing on ``None`` on every try."""

from __future__ import annotations

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
