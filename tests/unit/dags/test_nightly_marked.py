"""The nightly DAG when an operator marks a task success without running it: the tasks after it find no output,
and say which task to clear instead of failing on ``None`` on every try."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.dags.nightly_dag import nightly_task


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
