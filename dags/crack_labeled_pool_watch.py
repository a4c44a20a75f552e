"""
### Watch the labeled pool

Hourly: digest what training reads from `labeled/` (keys, sizes and ETags of the images in class
folders). When it differs from the digest last recorded, emit the `crack_labeled_pool` Asset, which
triggers `crack_retraining`, and then record the digest (`labeled/_DIGEST`) in a second task, so a
run that dies in between announces the change again rather than losing it. No change, no event
(both tasks are skipped). A store that holds other things (uploads, models) but no `labeled` at
all, as one that only scores does, skips both tasks too; the skip's reason says where to put a pool.
A store that holds nothing (a mistyped path or bucket), a `labeled` that cannot be listed (a symbolic
link, a file) or a pool without class folders fails the run, announcing and recording nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from crack_ops.assets import LABELED_POOL
from crack_ops.hooks import refuse_unknown_settings, run_store, upstream_output


@dag(
    dag_id="crack_labeled_pool_watch",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["crack", "training"],
    default_args={
        "owner": "inspection-ml",
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=15),
    },
    params={
        "store": Param(None, type=["null", "string"], description="s3://bucket[/prefix] or a folder"),
        "aws_conn_id": Param("aws_default", type="string"),
    },
)
def crack_labeled_pool_watch() -> None:
    @task(outlets=[LABELED_POOL])
    def detect_pool_change(params: Mapping[str, Any] | None = None, outlet_events: Any = None) -> str:
        """Announce a changed pool; a store or pool that is not there fails the task (not retried), announcing
        nothing: it digested as an empty pool, and the retraining it started failed."""
        refuse_unknown_settings()
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from crack_model.pipelines.pool_watch import NoLabeledPoolError, labeled_pool_changed
        from crack_model.pipelines.stores import CrackModelError

        store = run_store(params)
        try:
            digest = labeled_pool_changed(store)
        except NoLabeledPoolError as error:  # a store that only scores: failing each hour paged people for nothing
            raise AirflowSkipException(str(error)) from None
        except CrackModelError as error:  # a mistyped store or a linked labeled/: retrying changes nothing
            raise AirflowFailException(str(error)) from None
        if digest is None:
            raise AirflowSkipException("the labeled pool has not changed")
        outlet_events[LABELED_POOL].extra = {"store": store.uri, "digest": digest}
        return digest

    @task
    def record_pool_digest(digest: str, params: Mapping[str, Any] | None = None) -> None:
        """Runs only once the Asset event is recorded (its upstream succeeded): a change is never lost between
        being recorded and being announced; at worst, announced twice."""
        from crack_model.pipelines.pool_watch import record_pool_digest as record

        # Marked success, detect_pool_change announced nothing (Airflow emits no Asset event for a task marked
        # success): recording nothing leaves the change for the next run to announce.
        digest = upstream_output(digest, "detect_pool_change", "pool digest to record (nothing was announced)")
        record(run_store(params), digest)

    record_pool_digest(detect_pool_change())  # type: ignore[arg-type]


crack_labeled_pool_watch()
