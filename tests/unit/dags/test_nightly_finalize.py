"""The nightly DAG's finalize_batches task: the results Asset is updated only when results were merged, and for
every batch merged even when another one could not be."""

from __future__ import annotations

import pytest

from crack_model.core.local_store import LocalStore
from tests.unit.dags.nightly_dag import nightly_task


@pytest.fixture(autouse=True)
def task_try(monkeypatch):
    """The task asks whether it is on its last try: the first of four, unless a test sets ``try_number``."""
    from types import SimpleNamespace

    import airflow.sdk

    context = {"ti": SimpleNamespace(try_number=1, max_tries=3)}
    monkeypatch.setattr(airflow.sdk, "get_current_context", lambda: context)
    return context["ti"]


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
        nightly,
        "finalize_batches",
        lambda store, reports, **options: [{"batch_id": item["batch_id"]} for item in reports],
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


@pytest.mark.parametrize(("try_number", "announced"), [(1, False), (4, True)])
def test_a_batch_the_store_keeps_failing_on_holds_back_the_announcement_only_until_the_last_try(
    tmp_path, monkeypatch, task_try, try_number, announced
):
    """A lasting 503 on one batch failed every try after merging the others: a failed task emits no Asset event, so
    the merged batches were never announced (complete, no later night finds them). The last try announces them."""
    from collections import defaultdict
    from types import SimpleNamespace

    import crack_model.pipelines.nightly as nightly

    def finalize_one(store, batch_id, reports):
        if batch_id == "c":
            raise ConnectionError("the store did not answer for results/c/summary.json")
        return {"batch_id": batch_id}

    task_try.try_number = try_number
    monkeypatch.setattr(nightly, "_finalize_one", finalize_one)
    finalize = nightly_task("finalize_batches")
    params = {"store": str(tmp_path / "store"), "aws_conn_id": "aws_default"}
    reports = [{"batch_id": batch_id, "shard": "0/1", "already_complete": False} for batch_id in "acd"]
    events: defaultdict[object, SimpleNamespace] = defaultdict(SimpleNamespace)
    if not announced:
        with pytest.raises(ConnectionError, match=r"results/c/summary\.json"):
            finalize(reports=reports, params=params, outlet_events=events)
        assert not events
        return
    assert finalize(reports=reports, params=params, outlet_events=events) == [{"batch_id": "a"}, {"batch_id": "d"}]
    [event] = events.values()
    assert event.extra["batches"] == ["a", "d"]
