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
