"""The nightly DAG's validate_batch and score_shard tasks: objects the store did not answer for wait for a retry,
until the task's last try, when they become rows with the reason."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.dags.nightly_dag import nightly_task

MODEL = {"uri": "models:/crack/v1", "version": "v1", "drift_reference": None, "runtime": "auto"}


@pytest.mark.parametrize(("try_number", "max_tries", "retry"), [(1, 3, True), (3, 3, True), (4, 3, False),
                                                                (1, 0, False)])  # fmt: skip
def test_only_the_last_try_turns_an_unanswered_object_into_a_row(tmp_path, monkeypatch, try_number, max_tries, retry):
    import airflow.sdk

    from crack_model.pipelines import nightly

    context = {"ti": SimpleNamespace(try_number=try_number, max_tries=max_tries)}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
    calls = {}

    def score_work_item(store, item, model_uri, **options):
        calls["score_shard"] = options
        return {"batch_id": item["batch_id"]}

    def validate_incoming(store, batch_id, drift_reference, **options):
        calls["validate_batch"] = options
        return {"batch_id": batch_id}

    monkeypatch.setattr(nightly, "score_work_item", score_work_item)
    monkeypatch.setattr(nightly, "validate_incoming", validate_incoming)
    params = {"store": str(tmp_path), "aws_conn_id": "aws_default"}
    nightly_task("score_shard")(item={"batch_id": "b1", "shard": "0/1"}, model=MODEL, params=params)
    nightly_task("validate_batch")(batch_id="b1", model=MODEL, params=params)

    assert calls["score_shard"]["retry_unanswered"] is retry
    assert calls["validate_batch"]["retry_unanswered"] is retry


def test_the_pinned_tile_budget_reaches_validation_and_scoring(tmp_path, monkeypatch):
    """Every shard scores, and every validation measures, within the budget resolve_model pinned; a model pinned by
    a run started before the budget was pinned scores within 512."""
    import airflow.sdk

    from crack_model.pipelines import nightly

    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: {"ti": SimpleNamespace(try_number=1, max_tries=3)})
    calls: dict[str, list[int]] = {"score_shard": [], "validate_batch": []}
    monkeypatch.setattr(
        nightly,
        "score_work_item",
        lambda store, item, uri, **options: calls["score_shard"].append(options["max_tiles"]) or {},
    )
    monkeypatch.setattr(
        nightly,
        "validate_incoming",
        lambda store, batch, ref, **options: calls["validate_batch"].append(options["max_tiles"]) or {},
    )
    params = {"store": str(tmp_path), "aws_conn_id": "aws_default"}
    for model in ({**MODEL, "max_tiles": 2048}, MODEL):
        nightly_task("score_shard")(item={"batch_id": "b1", "shard": "0/1"}, model=model, params=params)
        nightly_task("validate_batch")(batch_id="b1", model=model, params=params)
    assert calls == {"score_shard": [2048, 512], "validate_batch": [2048, 512]}
