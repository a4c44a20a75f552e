"""
### Crack model retraining behind the holdout gate

Weekly, when the labeled pool changes (the `crack_labeled_pool` Asset, emitted by
`crack_labeled_pool_watch`), or by hand with params: validate the labeled pool with the
*training* suite (it also rejects images shared with the holdout), train a candidate
(MobileNetV2 transfer learning on cached base features; optional fine-tuning), register it as
`challenger`, then evaluate candidate and champion on the fixed holdout with the same code and
gate it. On `promote` the champion alias moves atomically and the `crack_champion_model` Asset
is emitted; on `reject` the run still succeeds, says "rejected", notifies, and the champion is
untouched.

The steps are `crack_model.pipelines.retraining`'s, the same ones `crack-model retrain` runs.

**Params**: `epochs`, `fine_tune_layers` (fine-tune the top N base layers), `fine_tune_epochs`,
`target_recall` (overall and on each validation slice), `slice_balance`, `crack_weight`, `seam_share` (seam
examples per training image, `TrainConfig.seam_share`), `zoom_factor` (augmented views zoomed in or out by up
to this fraction; 0 turns zoom off), `augmented_views`, `image_size` (the model's input size in pixels; a size
other than the champion's trains the candidate afresh), `start_from_champion` (the candidate's head starts from
the champion's: fewer false alarms, and fewer candidates that miss more cracks than it; false trains afresh),
`anchor_weight` (above 0, a pull toward the champion's head; off by default), `pooled_layers` (earlier base
layers pooled beside the last for the head; none by default; other layers than the champion's train afresh),
`promote` (false: evaluate only),
`store`, `model_name`, `aws_conn_id`, `policy` (a gate policy JSON; default: the versioned one),
`notify_http_conn_id` / `notify_smtp_conn_id` (the Connections a rejection is sent through; a missing one
is skipped with a warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from crack_ops.announcements import announced_in_this_run
from crack_ops.assets import CHAMPION_MODEL, LABELED_POOL
from crack_ops.hooks import refuse_backfill, refuse_unknown_settings, run_params, run_store, upstream_output

# The "type: ignore[arg-type]" / "[index]" below mark DAG wiring: task calls take XComArgs, and operators take
# Jinja templates rendered to native values at run time, where the functions declare the run-time types.
from crack_ops.operators import GateOperator


@dag(
    dag_id="crack_retraining",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 3 * * 0", timezone="UTC"), assets=LABELED_POOL),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["crack", "training", "gate"],
    default_args={
        "owner": "inspection-ml",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=3),
    },
    params={
        "store": Param(None, type=["null", "string"], description="s3://bucket[/prefix] or a folder"),
        "model_name": Param("crack", type="string"),
        "aws_conn_id": Param("aws_default", type="string"),
        "epochs": Param(30, type="integer", minimum=1, maximum=200),
        "fine_tune_layers": Param(0, type="integer", minimum=0, description="unfreeze the top N base layers"),
        "fine_tune_epochs": Param(5, type="integer", minimum=1, maximum=100, description="fine-tuning epochs"),
        "slice_balance": Param(
            1.0,
            type="number",
            minimum=0,
            maximum=1,
            description="balance labeled/<class>/<slice>/ in training: 0 none, 1 full",
        ),
        "crack_weight": Param(
            1.0, type="number", exclusiveMinimum=0, maximum=10, description="weight of a crack image (recall vs alarms)"
        ),
        "seam_share": Param(
            0.25, type="number", minimum=0, maximum=4, description="seam examples per training image (0: none)"
        ),
        "zoom_factor": Param(
            0.3,
            type="number",
            minimum=0,
            exclusiveMaximum=1,
            description="augmented views zoomed in or out by up to this fraction (0: off)",
        ),
        "image_size": Param(
            224,
            type="integer",
            minimum=32,
            maximum=1024,
            description="model input size in px (288: fewer false alarms, about 1.65x the compute)",
        ),
        "pooled_layers": Param(
            [],
            type="array",
            items={"type": "string"},
            description="base layers pooled beside the last for the head, e.g. block_13_expand_relu ([]: none)",
        ),
        "start_from_champion": Param(
            True, type="boolean", description="start the candidate's head from the champion's (false: afresh)"
        ),
        "anchor_weight": Param(
            0.0, type="number", minimum=0, maximum=1000, description="pull toward the champion's head (0: none)"
        ),
        "augmented_views": Param(
            2, type="integer", minimum=0, maximum=8, description="augmented copies of each image in the feature cache"
        ),
        "target_recall": Param(0.99, type="number", exclusiveMinimum=0, maximum=1),
        "weights": Param(
            None, type=["null", "string"], description="imagenet, none or a .h5 path (default: $CRACK_MODEL_WEIGHTS)"
        ),
        "promote": Param(True, type="boolean", description="false: gate and report, never promote"),
        "policy": Param(None, type=["null", "string"], description="gate policy JSON (default: versioned)"),
        "holdout": Param(None, type=["null", "string"], description="default: <store>/holdout"),
        "notify_http_conn_id": Param("crack_notify_http", type=["null", "string"], description="HTTP webhook"),
        "notify_smtp_conn_id": Param("crack_notify_smtp", type=["null", "string"], description="SMTP mail"),
    },
)
def crack_retraining() -> None:
    @task(execution_timeout=timedelta(minutes=30))
    def validate_labeled_pool(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Training suite on labeled/ (holdout overlap included); bad data fails at once, without retries (a store
        that did not answer is retried, as in every task)."""
        refuse_unknown_settings()
        params = run_params(params)
        refuse_backfill(
            "every run trains on the labeled pool as it is now, so a backfill only trains the same candidate several "
            "times at once (beside any other run), each racing the others to the champion",
            "with params to choose the training",
        )
        from airflow.sdk.exceptions import AirflowFailException

        from crack_model.pipelines.retraining import (
            PoolValidationError,
            SettingsError,
            check_settings,
            require_holdout,
            validate_pool,
        )

        try:  # settings first: a wrong one should cost seconds, not a pool validation and a training
            store = run_store(params)
            check_settings(params, name=params["model_name"], store=store)
            pool = validate_pool(store, holdout=params.get("holdout"))
            if not params.get("holdout"):  # the gate reads <store>/holdout
                require_holdout(pool)
            return pool
        except (PoolValidationError, SettingsError) as error:
            raise AirflowFailException(str(error)) from None

    @task(multiple_outputs=True, execution_timeout=timedelta(hours=3))
    def train_candidate(
        pool: dict[str, Any], params: Mapping[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Train on the validated pool and register the candidate as challenger."""
        params = run_params(params)
        # Neither an unvalidated pool nor the last validated one (its quarantine and judged photos are another's).
        pool = upstream_output(pool, "validate_labeled_pool", "validated labeled pool to train on")
        from airflow.sdk.exceptions import AirflowFailException

        from crack_model.pipelines.retraining import SettingsError, train_and_register

        try:  # a setting no training can run with (a layer name that does not exist) fails at once, no retries
            return train_and_register(run_store(params), pool, params, name=params["model_name"],
                                      actor="airflow:crack_retraining", run_id=run_id)  # fmt: skip
        except SettingsError as error:
            raise AirflowFailException(str(error)) from None

    candidate = train_candidate(validate_labeled_pool())  # type: ignore[arg-type]
    gate = GateOperator(  # its templated fields render as native values: promote is a boolean
        task_id="evaluate_gate",
        candidate_version=candidate["version"],  # type: ignore[index]
        store="{{ params.store }}",
        aws_conn_id="{{ params.aws_conn_id }}",
        model_name=candidate["model_name"],  # type: ignore[index]  # as registered: "{{ }}" would turn "2026" into 2026
        holdout="{{ params.holdout }}",
        policy="{{ params.policy }}",
        promote="{{ params.promote }}",  # type: ignore[arg-type]
        execution_timeout=timedelta(hours=1),
    )

    @task.branch
    def choose_outcome(decision: dict[str, Any]) -> str:
        decision = upstream_output(decision, "evaluate_gate", "gate decision (the champion is as it was)")
        return "announce_promotion" if decision.get("promoted") else "announce_rejection"

    @task(outlets=[CHAMPION_MODEL], inlets=[CHAMPION_MODEL])  # an inlet: this run's events are read back
    def announce_promotion(
        decision: dict[str, Any],
        params: Mapping[str, Any] | None = None,
        outlet_events: Any = None,
        inlet_events: Any = None,
    ) -> dict[str, Any]:
        """The new champion: emit the model Asset (consumers, e.g. a re-scoring DAG, can schedule on it), once: the
        gate cleared after it promoted reuses its report, and would announce the same champion again."""
        params = run_params(params)
        version = decision["candidate_version"]
        earlier = announced_in_this_run(inlet_events, CHAMPION_MODEL)
        if any((extra.get("model"), extra.get("version")) == (params["model_name"], version) for extra in earlier):
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"champion {version} was announced by an earlier try of this run")
        outlet_events[CHAMPION_MODEL].extra = {
            "model": params["model_name"],
            "version": version,
            "previous": decision.get("champion_version"),
        }
        return {"outcome": "promoted", **decision}

    @task
    def announce_rejection(
        decision: dict[str, Any], params: Mapping[str, Any] | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Rejected (or evaluate-only): the run succeeds, says so, and notifies; the champion is untouched."""
        params = run_params(params)
        from crack_ops.notifications import notify_gate_decision

        notify_gate_decision(run_store(params), decision, run_id, http_conn_id=params["notify_http_conn_id"],
                             smtp_conn_id=params["notify_smtp_conn_id"])  # fmt: skip
        outcome = "rejected" if decision["decision"] == "reject" else "passed, not promoted"
        return {"outcome": outcome, **decision}

    decision = gate.output
    choose_outcome(decision) >> [announce_promotion(decision), announce_rejection(decision)]  # type: ignore[arg-type]


crack_retraining()
