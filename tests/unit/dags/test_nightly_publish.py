"""The nightly DAG's publish_run_summary task: when the run turns red, and when its failure is retried."""

from __future__ import annotations

import pytest

from crack_model.core.local_store import LocalStore
from tests.unit.dags.nightly_dag import nightly_task
from tests.unit.plugins.test_notifications import no_connections, webhook  # noqa: F401

MODEL = {"uri": "models:/crack/v1", "version": "v1", "drift_reference": None, "runtime": "auto"}
VALIDATIONS = [{"batch_id": "blank", "outcome": "failed", "reasons": ["every image is blank"]},
               {"batch_id": "unplanned", "outcome": "passed", "reasons": []}]  # fmt: skip


@pytest.fixture(scope="module")
def publish():
    return nightly_task("publish_run_summary")


def params(store: LocalStore) -> dict:
    """The run's params, on ``store`` made a deployment's (a registry in it): a store that holds nothing is refused."""
    store.write("models/crack/aliases.json", b"{}")
    return {"store": str(store.root), "aws_conn_id": "aws_default", "release_batches": [], "error_rate_alert": 0.05,
            "notify_http_conn_id": "crack_notify_http", "notify_smtp_conn_id": "crack_notify_smtp"}  # fmt: skip


def test_a_quiet_night_without_a_model_is_red(tmp_path, publish, no_connections):  # noqa: F811
    """No upload came, but resolve_model failed: the run must not look fine until the next batch."""
    from airflow.sdk.exceptions import AirflowFailException

    store = LocalStore(tmp_path)
    quiet = {"batch_ids": None, "validations": None, "work_items": None, "summaries": None}
    assert publish(model=MODEL, **quiet, params=params(store), run_id="r1")["failed_batches"] == {}
    with pytest.raises(AirflowFailException, match="no model was pinned tonight"):
        publish(model=None, **quiet, params=params(store), run_id="r2")


def test_an_undelivered_alert_is_retried_even_when_batches_did_not_finish(tmp_path, publish, webhook):  # noqa: F811
    """A retryable error first (the retry sends what is missing), naming the unfinished batch; once the alerts are
    out, a failure without retries for the batch."""
    from airflow.sdk.exceptions import AirflowFailException
    from crack_ops.notifications import NotificationError

    store = LocalStore(tmp_path)
    night = {"model": MODEL, "batch_ids": ["blank", "unplanned"], "validations": VALIDATIONS, "work_items": None,
             "summaries": []}  # fmt: skip
    webhook.status = 500
    with pytest.raises(NotificationError) as undelivered:
        publish(**night, params=params(store), run_id="r1")
    assert "batch_failed_validation:blank" in str(undelivered.value)
    assert "unplanned: scoring did not finish" in str(undelivered.value)
    webhook.status = 204
    with pytest.raises(AirflowFailException, match="unplanned: scoring did not finish: see the plan_shards"):
        publish(**night, params=params(store), run_id="r1")
    assert [alert["kind"] for alert in webhook.received] == ["batch_failed_validation"]


def test_a_night_whose_incoming_is_a_symbolic_link_is_red_and_alerts(tmp_path, publish, no_connections):  # noqa: F811
    """The sensor finds nothing under a linked incoming/: the run looked like a quiet night, green and silent."""
    from airflow.sdk.exceptions import AirflowFailException

    store = LocalStore(tmp_path / "store")
    store.write("runs/.keep", b"")
    (tmp_path / "upload-disk" / "2026-11-24").mkdir(parents=True)
    (store.root / "incoming").symlink_to(tmp_path / "upload-disk")
    quiet = {"batch_ids": None, "validations": None, "work_items": None, "summaries": None}
    with pytest.raises(AirflowFailException, match=r"no night finds a batch under incoming/: .*symbolic link"):
        publish(model=MODEL, **quiet, params=params(store), run_id="r1")
    assert '"unusable_incoming:incoming/"' in store.read("alerts/r1.json").decode()


def test_a_run_whose_batches_were_all_complete_before_still_alerts_on_their_errors(
    tmp_path,
    publish,
    no_connections,  # noqa: F811
):
    """finalize_batches is skipped when it merged nothing (a cleared run), and the scoring_errors alert of a batch
    merged by the first try went unsent: publish got no summaries and read none."""
    from tests.unit.pipelines.ops_store import _scored_batch, outcome, write_validation

    store = LocalStore(tmp_path / "store")
    _scored_batch(store, "2026-11-24", "v1", [("a.jpg", "error", "", ""), ("b.jpg", "ok", "Negative", "0.1")])
    write_validation(store, outcome("2026-11-24", "passed", [], 2, None))
    night = {"model": MODEL, "batch_ids": ["2026-11-24"], "work_items": [{"batch_id": "2026-11-24"}],
             "validations": [{"batch_id": "2026-11-24", "outcome": "passed", "reasons": []}]}  # fmt: skip

    publish(**night, summaries=None, params=params(store), run_id="r1")

    assert '"scoring_errors:2026-11-24"' in store.read("alerts/r1.json").decode()
