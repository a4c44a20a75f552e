"""The nightly DAG's finalize_batches task: the results Asset is updated only when results were merged."""

from __future__ import annotations

import pytest

from crack_model.core.local_store import LocalStore
from tests.unit.dags.nightly_dag import nightly_task


def test_a_night_that_merged_no_batch_does_not_announce_results(tmp_path):
    """Every batch failed validation: the Asset was emitted all the same, and whatever it schedules ran for nothing."""
    from airflow.sdk.exceptions import AirflowSkipException

    finalize = nightly_task("finalize_batches")
    store = LocalStore(tmp_path / "store")
    store.write("incoming/b1/a.jpg", b"jpeg")
    with pytest.raises(AirflowSkipException, match="no batch was merged in this run"):
        finalize(reports=[], params={"store": str(store.root), "aws_conn_id": "aws_default"}, outlet_events={})


def test_only_batches_merged_in_this_run_are_announced(tmp_path, monkeypatch):
    """A batch complete before (every shard already_complete) is no new result: a night of only those announced
    the Asset all the same, and what it schedules ran again on old results."""
    from collections import defaultdict
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowSkipException

    import crack_model.pipelines.nightly as nightly

    finalize = nightly_task("finalize_batches")
    params = {"store": str(tmp_path / "store"), "aws_conn_id": "aws_default"}
    monkeypatch.setattr(
        nightly, "finalize_batches", lambda store, reports: [{"batch_id": item["batch_id"]} for item in reports]
    )
    old = {"batch_id": "old", "shard": "0/1", "already_complete": True}
    new = {"batch_id": "new", "shard": "0/1", "already_complete": False}
    with pytest.raises(AirflowSkipException, match="no batch was merged in this run"):
        finalize(reports=[old], params=params, outlet_events=defaultdict(SimpleNamespace))
    events: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    summaries = finalize(reports=[old, new], params=params, outlet_events=events)
    assert summaries == [{"batch_id": "old"}, {"batch_id": "new"}]
    [event] = events.values()
    assert event.extra["batches"] == ["new"]
