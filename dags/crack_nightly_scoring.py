"""
### Nightly crack scoring

Every night: find upload batches under `incoming/` that have no `results/<batch_id>/_SUCCESS`,
validate each with the *incoming* Great Expectations suite (a failed batch is skipped and
reported; a few bad objects are quarantined and the rest scored), score the valid batches
with the champion model fanned out over shards (one mapped task per batch shard, bounded),
merge each batch's results next to its uploads, and publish a run summary plus an Asset
event for the results.

Re-running a night never duplicates results (a complete batch has `_SUCCESS`; shards resume
from their parts). A failed shard retries alone. One batch's failure never holds back another:
planning, merging and the run summary run whatever happened upstream (`all_done`), and the run
summary (`runs/<run_id>.json`) names each failed batch and the step that stopped it. A batch the store
keeps failing on while merging is retried; the last try announces the batches merged and leaves that one
to the next night (the run summary names it, and the run fails).

**Params**: `store` (default: Variable `crack_store`, else env `CRACK_STORE`, else a local folder in AIRFLOW_HOME),
`model` (default `models:/crack@champion`), `runtime` (default: Variable `crack_runtime`, else
`auto`, the first the gate approved of int8, fp32, Keras; or one of those named), `max_tiles` (tiles per
photo, 64-2048; default: Variable `crack_max_tiles`, else 512; a larger photo is scored downscaled to fit, so a
site whose 50 MP photos are at the training patches' scale raises it; validation measures at that scale too, and
a shard scored before with another budget is scored again), `aws_conn_id`
(the AWS connection whose session reaches s3:// stores; its `endpoint_url` extra points at MinIO),
`batch_ids` (score just these), `release_batches` (score these even though they failed
validation: every object still gets a row; each must be in `batch_ids` too), shard sizing; alerts:
`notify_http_conn_id`, `notify_smtp_conn_id` (the Connections alerts go out through; missing ones are skipped with a
warning) and `error_rate_alert` (alert when more than this share of a finished batch's scored
objects failed).

**Alerts** (`crack_model.pipelines.alerts`, sent by `publish_run_summary` once per run, recorded in
`alerts/<run_id>.json`): a batch that failed validation (`batch_failed_validation`), a batch whose PSI is above
the drift threshold (`drift`), a finished batch whose error rate is above `error_rate_alert` (`scoring_errors`), a
batch merged with another model version than the rows it replaced (`batch_rescored`), a merged batch whose uploads
are all gone, settled with no rows (`batch_settled`), a batch document that cannot
be read (`unreadable_document`: an `outcome.json` or `summary.json`, or a `_SUCCESS` or `outcome.json` that left the
batch out of the night), an `incoming` that cannot be listed (`unusable_incoming`: a symbolic link; the run fails
too), a folder under `incoming/` that is no batch id (`unusable_batch_folder`) and uploads in no batch folder
(`upload_outside_batch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from crack_ops.announcements import announced_in_this_run, merge_of, unannounced
from crack_ops.assets import SCORING_RESULTS
from crack_ops.hooks import (
    RUNTIME_VARIABLE,
    last_try,
    pinned_model,
    refuse_backfill,
    refuse_unknown_settings,
    run_params,
    run_runtime,
    run_store,
    run_tile_budget,
    succeeded_in_this_run,
)

# The "type: ignore[arg-type]" / "[index]" below mark DAG wiring: task calls take XComArgs, and operators take
# Jinja templates rendered to native values at run time, where the functions declare the run-time types.
from crack_ops.sensors import NewBatchesSensor


@dag(
    dag_id="crack_nightly_scoring",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["crack", "scoring", "nightly"],
    default_args={
        "owner": "inspection-ml",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "store": Param(None, type=["null", "string"], description="s3://bucket[/prefix] or a folder"),
        "model": Param("models:/crack@champion", type="string", description="registry model or model folder"),
        "aws_conn_id": Param("aws_default", type="string"),
        "runtime": Param(
            None,
            type=["null", "string"],
            enum=[None, "auto", "litert-int8", "litert-fp32", "keras"],
            values_display={"null": "Variable crack_runtime, else auto"},  # "null": "None" would relabel them all
            description="default: Variable crack_runtime, else auto (the first approved of int8, fp32, Keras); "
            "name an approved one where int8 is no faster (README, Runtimes)",
        ),
        # The range of tiling.MIN_TILE_BUDGET and MAX_TILE_BUDGET (test_dagbag checks they agree): the library is
        # not imported where the DAG is parsed.
        "max_tiles": Param(
            None,
            type=["null", "integer"],
            minimum=64,
            maximum=2048,
            values_display={"null": "Variable crack_max_tiles, else 512"},
            description="tiles per photo, 64-2048 (default: Variable crack_max_tiles, else 512: a 12 MP photo at "
            "full size); a larger photo is scored downscaled to fit. 2048 keeps a 50 MP drone photo at its own "
            "scale, at about 4 times the time (README, Memory on giant, thin and phone-size uploads)",
        ),
        "batch_ids": Param([], type="array", items={"type": "string"}, description="score only these (default: new)"),
        "max_batches": Param(100, type="integer", minimum=1),
        "objects_per_shard": Param(2000, type="integer", minimum=1),
        "max_shards_per_batch": Param(16, type="integer", minimum=1, maximum=64),
        "release_batches": Param(
            [],
            type="array",
            items={"type": "string"},
            description="failed batches to score anyway: decodable, allowed objects are scored, the rest get rows",
        ),
        "notify_http_conn_id": Param("crack_notify_http", type=["null", "string"], description="HTTP webhook"),
        "notify_smtp_conn_id": Param("crack_notify_smtp", type=["null", "string"], description="SMTP mail"),
        "error_rate_alert": Param(
            0.05, type="number", minimum=0, exclusiveMaximum=1, description="alert above this share of errors"
        ),
    },
)
def crack_nightly_scoring() -> None:
    batches = NewBatchesSensor(  # its templated fields render as native values: a list, an int
        task_id="wait_for_new_batches",
        store="{{ params.store }}",
        aws_conn_id="{{ params.aws_conn_id }}",
        batch_ids="{{ params.batch_ids }}",
        max_batches="{{ params.max_batches }}",  # type: ignore[arg-type]
        mode="reschedule",
        poke_interval=timedelta(minutes=10),
        timeout=timedelta(hours=3),
        soft_fail=True,  # a night without uploads skips the run instead of failing it
        execution_timeout=timedelta(hours=4),
    )

    @task(execution_timeout=timedelta(minutes=10))
    def resolve_model(params: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Check the run's settings, and pin the exact model version, runtime and tile budget once, so every shard of
        the night uses the same ones."""
        params = run_params(params)
        refuse_unknown_settings()
        refuse_backfill()
        from airflow.sdk.exceptions import AirflowFailException

        from crack_model.pipelines.nightly import check_requested_batches, pin_model
        from crack_model.pipelines.stores import CrackModelError, RuntimeChoiceError

        runtime = run_runtime(params)
        try:
            store = run_store(params)
            max_tiles = run_tile_budget(params)
            check_requested_batches(store, params.get("batch_ids") or [], params.get("release_batches") or [])
            return pin_model(store, params["model"], runtime, max_tiles)
        except CrackModelError as error:  # no such model or alias, a runtime not approved: retrying changes nothing
            from_variable = isinstance(error, RuntimeChoiceError) and not params.get("runtime")
            source = f" (runtime {runtime!r} from Variable {RUNTIME_VARIABLE})" if from_variable else ""
            raise AirflowFailException(f"{error}{source}") from None

    @task(map_index_template="{{ batch_id }}", execution_timeout=timedelta(minutes=30))
    def validate_batch(batch_id: str, model: dict[str, str], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Incoming suite: passed, passed_with_quarantine (scoring skips the quarantined) or failed."""
        from crack_model.pipelines.nightly import pinned_tile_budget, validate_incoming

        model = pinned_model(model)
        # At the budget the batch is scored with: blur and contrast are measured at the scale its tiles are cut at.
        return validate_incoming(run_store(params), batch_id, model.get("drift_reference"),
                                 retry_unanswered=not last_try(), max_tiles=pinned_tile_budget(model))  # fmt: skip

    # all_done from here on: one batch whose validation or scoring failed never holds back the others.
    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=10))
    def plan_shards(validations: list[dict[str, Any]], params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """One work item per (valid or released batch, shard); batches that failed validation are left out."""
        params = run_params(params)
        from crack_model.pipelines.nightly import batches_to_score
        from crack_model.pipelines.nightly import plan_shards as plan

        chosen = batches_to_score(list(validations or []), params["release_batches"])
        return plan(run_store(params), chosen, objects_per_shard=params["objects_per_shard"],
                    max_shards_per_batch=params["max_shards_per_batch"])  # fmt: skip

    @task(map_index_template="{{ work_item }}", execution_timeout=timedelta(hours=2), max_active_tis_per_dagrun=16)
    def score_shard(
        item: dict[str, Any], model: dict[str, str], params: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Score one shard of one batch; resumes from its parts if a previous try died."""
        import socket

        from airflow.sdk import get_current_context

        from crack_model.pipelines.nightly import pinned_tile_budget, score_work_item

        model = pinned_model(model)
        # map_index_template reads this from the context: the grid shows "<batch> <shard>", not a number.
        get_current_context()["work_item"] = f"{item['batch_id']} {item['shard']}"  # type: ignore[typeddict-unknown-key]
        report = score_work_item(run_store(params), item, model["uri"], runtime=model.get("runtime", "auto"),
                                 retry_unanswered=not last_try(), max_tiles=pinned_tile_budget(model))  # fmt: skip
        return {**report, "hostname": socket.gethostname()}

    # The results Asset is an inlet too: the events this run emitted already are read back (announcements).
    @task(outlets=[SCORING_RESULTS], inlets=[SCORING_RESULTS], trigger_rule="all_done",
          execution_timeout=timedelta(minutes=30))  # fmt: skip
    def finalize_batches(
        reports: list[dict[str, Any]],
        params: Mapping[str, Any] | None = None,
        outlet_events: Any = None,
        inlet_events: Any = None,
    ) -> list[dict[str, Any]]:
        """Merge each batch's shards into predictions.csv + summary.json, _SUCCESS last (idempotent)."""
        from crack_model.pipelines.nightly import batches_merged
        from crack_model.pipelines.nightly import finalize_batches as finalize

        store = run_store(params)
        # The last try does not raise for a batch the store kept failing on: a failed task emits no Asset event, and
        # the batches it did merge were never announced (complete, no later night finds them). The run summary
        # names that batch, publish_run_summary fails the run, and the next night merges it.
        summaries = finalize(store, list(reports or []), retry_unanswered=not last_try())
        # Every batch failed validation, no shard finished, or every batch was complete before: nothing new to
        # announce (publish_run_summary reads the stored summaries of complete batches itself).
        merged = sorted(set(batches_merged(list(reports or []))) & {summary["batch_id"] for summary in summaries})
        # Cleared after it succeeded, this task merges the same parts again: a batch announced as merged so is no
        # news. Merged again with other rows (the run cleared after late uploads came) it is (merge_of).
        merges = {summary["batch_id"]: merge_of(summary) for summary in summaries if summary["batch_id"] in merged}
        news = unannounced(merges, announced_in_this_run(inlet_events, SCORING_RESULTS))
        if not news:
            from airflow.sdk.exceptions import AirflowSkipException

            why = "announced by an earlier try of this run" if merged else "merged in this run"
            raise AirflowSkipException(f"no batch was {why}: the results Asset is not updated")
        outlet_events[SCORING_RESULTS].extra = {"store": store.uri, "batches": sorted(news),
                                                "merges": {batch: merges[batch] for batch in sorted(news)}}  # fmt: skip
        return summaries

    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=10))
    def publish_run_summary(
        model: dict[str, str] | None,
        batch_ids: list[str] | None,
        validations: list[dict[str, Any]] | None,
        work_items: list[dict[str, Any]] | None,
        summaries: list[dict[str, Any]] | None,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """One JSON document per run under runs/, always written: it names each failed batch and why; then the
        run's alerts go out (once each, through the notify connections that exist)."""
        params = run_params(params)
        from airflow.sdk.exceptions import AirflowFailException
        from crack_ops.notifications import NotificationError, notify_run

        from crack_model.pipelines.alerts import UNUSABLE_INCOMING
        from crack_model.pipelines.nightly import publish_run_summary as publish
        from crack_model.pipelines.stores import CrackModelError, refuse_an_empty_store

        store = run_store(params)
        try:  # a mistyped store: writing the summary there would make it a store that holds something, and hide it
            refuse_an_empty_store(store)
        except CrackModelError as error:
            raise AirflowFailException(f"{error}; no run summary is written there") from None
        planned = sorted({item["batch_id"] for item in work_items or []})
        summary = publish(store, run_id or "manual", list(validations or []), list(summaries or []),
                          batch_ids=list(batch_ids or []), planned=planned,
                          released=list(params["release_batches"]), model_pinned=model is not None)  # fmt: skip
        undelivered, alerts = None, []
        try:
            # None (finalize skipped: every batch complete before): the alerts read the stored summaries.
            alerts = notify_run(store, run_id or "manual", summary, None if summaries is None else list(summaries),
                       error_rate_alert=params["error_rate_alert"], http_conn_id=params["notify_http_conn_id"],
                       smtp_conn_id=params["notify_smtp_conn_id"])  # fmt: skip
        except NotificationError as error:  # reported below, after the batches' own state
            undelivered = error
        problems = []  # the summary is written; the run still shows red for the on-call
        if summary["incomplete_batches"]:
            failures = "; ".join(
                f"{batch}: {summary['failed_batches'][batch]}" for batch in summary["incomplete_batches"]
            )
            problems.append(f"batches not finished tonight (the others are done): {failures}")
        if model is None:  # a quiet night too: a wrong model or runtime must not wait for the next uploads to show
            problems.append(
                "no model was pinned tonight: see the resolve_model task log (or clear it if it was "
                "marked success without running)"
            )
        # The sensor pushes a non-empty list whenever it runs and succeeds: none means it was marked success by hand,
        # and nothing was looked for; a green run would pass for a quiet night.
        if batch_ids is None and succeeded_in_this_run("wait_for_new_batches"):
            problems.append("wait_for_new_batches succeeded without listing batches (marked success without "
                            "running?): nothing was validated or scored; clear it to look for new batches")  # fmt: skip
        # Nothing under incoming/ can be scored until it is mended: not to be taken for a quiet night.
        problems += [alert["title"] for alert in alerts if alert["kind"] == UNUSABLE_INCOMING]
        if undelivered is not None:  # retried: the summary is rewritten and only the undelivered alerts are sent
            raise NotificationError("; ".join([str(undelivered), *problems])) from undelivered
        if problems:
            raise AirflowFailException("; ".join(problems))
        return summary

    model = resolve_model()
    validations = validate_batch.partial(model=model).expand(batch_id=batches.output)
    work_items = plan_shards(validations)  # type: ignore[arg-type]
    reports = score_shard.partial(model=model).expand(item=work_items)
    summaries = finalize_batches(reports)  # type: ignore[arg-type]
    publish_run_summary(model, batches.output, validations, work_items, summaries)  # type: ignore[arg-type]


crack_nightly_scoring()
