"""The steps of the nightly scoring and retraining workflows, as plain functions.

Airflow tasks (dags/) are thin wrappers around these: each takes the run's store (open, with
its credentials, or a URI; see ``crack_model.pipelines.stores``) and small values and returns
small JSON-ready dicts, so XCom stays tiny and every step can be run and tested without Airflow.
"""

from __future__ import annotations

import math
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.documents import BatchSummary, RunSummary, objects_scored, unsettled_reason
from crack_model.core.errors import CrackModelError, store_did_not_answer
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import folder_problem, open_store, refuse_an_empty_store
from crack_model.core.tiling import DEFAULT_MAX_TILES, TileConfig, check_tile_budget, parse_tile_budget
from crack_model.core.uploads import list_uploads, unusable_batch_folders
from crack_model.pipelines.batch_states import SETTLED, emptied_batches, new_batches, validated_before
from crack_model.pipelines.stores import StoreLike, step_store
from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.profile import ProfileConfig
from crack_model.registry.model_uri import is_model_uri, parse_model_uri
from crack_model.registry.versions import Registry
from crack_model.serving.batch import score_shard
from crack_model.serving.batch_results import finalize_batch, settle_emptied_batch
from crack_model.serving.scorer import load_scorer

log = module_logger(__name__)


def find_new_batches(store: StoreLike, *, limit: int | None = None) -> list[str]:
    """Batch folders under ``incoming/`` without ``results/<batch_id>/_SUCCESS`` (or awaiting revalidation), and
    merged batches awaiting revalidation whose folder is gone (``emptied_batches``), in name order; CrackModelError
    when ``incoming`` itself cannot be listed (a symbolic link, a file).

    Beyond ``limit``, batches never validated come first: batches that failed validation stay new (they are
    validated again each night until released or fixed) and must not keep fresh uploads waiting.
    """
    store = open_store(store)
    if problem := folder_problem(store, layout.INCOMING):  # not an empty incoming/: one nobody would hear of
        raise CrackModelError(f"no batch can be found: {problem}")
    unusable = unusable_batch_folders(store)
    for name, reason in unusable.items():
        log.warning("ignoring folder incoming/%s: %s", name, reason)  # and the run's alerts name it
    # A batch whose state cannot be read is left out with an error naming it (batch_states), not every batch.
    folders = store.folders(layout.INCOMING)
    new, _ = new_batches(store, [name for name in folders if name not in unusable])
    new = sorted([*new, *emptied_batches(store, set(folders))])
    if not limit or len(new) <= limit:
        return new
    seen, unreadable = validated_before(store, new)
    left_out = {state.batch_id for state in unreadable}
    new = [batch_id for batch_id in new if batch_id not in left_out]
    chosen = set(sorted(new, key=lambda batch_id: batch_id in seen)[:limit])  # stable: name order within each
    return [batch_id for batch_id in new if batch_id in chosen]


def check_requested_batches(store: StoreLike, batch_ids: list[str], release_batches: list[str]) -> None:
    """Batch ids named by hand: each must be a valid id with something under ``incoming/``, and each released one
    must be among ``batch_ids``. A mistyped one would leave a failed validation, and a batch offered for release, in
    the store; a released one the run does not validate (the night picks its own batches without ``batch_ids``)
    was never released, and the run said nothing.

    Raises:
        CrackModelError: naming every id that is not.
    """
    problems = []
    with step_store(store) as opened:
        for batch_id in dict.fromkeys([*batch_ids, *release_batches]):
            try:
                prefix = layout.incoming_prefix(batch_id)
            except CrackModelError as error:
                problems.append(str(error))
                continue
            if next(iter(opened.list(prefix)), None) is None:
                problems.append(f"batch {batch_id!r} has nothing under {opened.url(prefix)}")
            elif batch_id not in batch_ids:
                problems.append(f"batch {batch_id!r} is released but this run does not validate it: "
                                "add it to batch_ids")  # fmt: skip
    if problems:
        raise CrackModelError(f"batches named for this run: {'; '.join(problems)}; check batch_ids and release_batches")


def batches_to_score(validations: list[dict[str, Any]], release_batches: list[str] | None = None) -> list[str]:
    """Batches that passed validation, and failed ones an operator released with ``release_batches``."""
    released = set(release_batches or ())
    return [v["batch_id"] for v in validations
            if v["outcome"] != SETTLED and (v["outcome"] != "failed" or v["batch_id"] in released)]  # fmt: skip


def plan_shards(
    store: StoreLike,
    batch_ids: list[str],
    *,
    objects_per_shard: int = 2000,
    max_shards_per_batch: int = 16,
    max_total_shards: int = 256,
) -> list[dict[str, Any]]:
    """One work item per (batch, shard): enough shards to spread big batches, never one per image.

    The total stays bounded (Airflow's scheduler and grid view suffer beyond a few hundred
    mapped tasks): when there are too many, every batch gets fewer shards.
    """
    store = open_store(store)
    sizes = {batch_id: len(list_uploads(store, batch_id)) for batch_id in batch_ids}
    wanted = {b: max(1, min(max_shards_per_batch, math.ceil(n / objects_per_shard))) for b, n in sizes.items()}
    while sum(wanted.values()) > max_total_shards and max(wanted.values(), default=1) > 1:
        wanted = {batch_id: max(1, count // 2) for batch_id, count in wanted.items()}
    if sum(wanted.values()) > max_total_shards:
        raise CrackModelError(f"{len(batch_ids)} batches exceed {max_total_shards} work items: raise the limit")
    return [
        {"batch_id": batch_id, "shard": f"{index}/{count}", "objects": sizes[batch_id]}
        for batch_id, count in wanted.items()
        for index in range(count)
    ]


def score_work_item(
    store: StoreLike, item: dict[str, Any], model_uri: str, *, exclude: list[str] | None = None, **options: Any
) -> dict[str, Any]:
    """Score one planned shard; returns a small report (XCom-sized)."""
    shard = layout.Shard.parse(item["shard"])
    with step_store(store) as opened:
        report = score_shard(
            opened.uri, item["batch_id"], model_uri, shard, exclude=exclude or (), finalize=False, **options
        )
    return {
        "batch_id": item["batch_id"],
        "shard": item["shard"],
        "model_version": report.model_version,
        "images": report.images,
        "skipped_already_done": report.skipped_already_done,
        "seconds": round(report.seconds, 3),
        "already_complete": report.already_complete,
    }


def finalize_batches(
    store: StoreLike, shard_reports: list[dict[str, Any]], *, retry_unanswered: bool = True
) -> list[dict[str, Any]]:
    """Merge the shards of every batch scored in this run (idempotent); return their summaries.

    ``retry_unanswered``: a batch the store did not answer for is raised after the others are merged, for a retry
    (False, the last try: it is only logged, like a batch that cannot finish, and the merged batches' summaries are
    returned, so their results are announced; the run summary names it, and the next night merges it).
    """
    store = open_store(store)
    by_batch: dict[str, list[dict[str, Any]]] = {}
    for report in shard_reports:
        by_batch.setdefault(report["batch_id"], []).append(report)
    summaries = []
    unanswered: Exception | None = None
    for batch_id, reports in sorted(by_batch.items()):
        # One batch that cannot be merged (a shard failed for good) must not keep the others unfinished.
        try:
            summaries.append(_finalize_one(store, batch_id, reports))
        except Exception as error:  # this batch cannot finish tonight (the run summary names it), unless...
            log.error("batch %s not finalized: %s: %s", batch_id, type(error).__name__, error)
            # ...the store did not answer: raised after the others, and retried (but not from the last try)
            if retry_unanswered and store_did_not_answer(error):
                unanswered = unanswered or error
    if unanswered is not None:
        raise unanswered  # a retry merges again: batches finished already are merged to the same files
    return summaries


def batches_merged(shard_reports: list[dict[str, Any]]) -> list[str]:
    """The batches a run merges: those with a shard it scored. One whose every shard was ``already_complete`` was
    merged by an earlier run, and ``finalize_batches`` hands on its stored summary: no new results."""
    return sorted({report["batch_id"] for report in shard_reports if not report["already_complete"]})


def _finalize_one(store: ObjectStore, batch_id: str, reports: list[dict[str, Any]]) -> dict[str, Any]:
    if all(report["already_complete"] for report in reports):
        summary = BatchSummary.read(store, layout.results_key(batch_id, layout.SUMMARY))
        if summary is None:
            raise CrackModelError(f"batch {batch_id} is complete but has no {layout.SUMMARY}")
        return summary.as_dict()
    version = next(report["model_version"] for report in reports if report["model_version"])
    shard_count = layout.Shard.parse(reports[0]["shard"]).count
    return finalize_batch(store, batch_id, version, shard_count)


def validate_incoming(
    store: StoreLike,
    batch_id: str,
    drift_reference: str | None = None,
    *,
    retry_unanswered: bool = False,
    max_tiles: int = DEFAULT_MAX_TILES,
) -> dict[str, Any]:
    """Run the incoming suite on a batch; a small dict for XCom (the full report is in validation/).

    ``retry_unanswered``: an object the store did not answer for fails the step (to be retried) instead of being
    quarantined as unreadable (the last try's choice: every object still ends as a row). ``max_tiles``: the tile
    budget the batch will be scored with: blur and contrast are measured at the scale scoring tiles a photo at.
    """
    config = ProfileConfig(retry_unanswered=retry_unanswered, tiles=TileConfig(max_tiles=check_tile_budget(max_tiles)))
    with step_store(store) as opened:
        if (settled := settle_emptied_batch(opened, batch_id)) is not None:
            return _settled_validation(batch_id, settled)
        outcome = validate_batch(opened.uri, batch_id, "incoming", reference=drift_reference, profile_config=config)
    for line in outcome.summary().splitlines():  # a line each: the log escapes a line break inside a value
        log.info("%s", line)
    drift = outcome.drift or {}
    return {
        "batch_id": batch_id,
        "outcome": outcome.outcome,
        "reasons": list(outcome.reasons)[:10],
        "quarantined": len(outcome.quarantined),
        "objects": outcome.counts.get("objects", 0),
        "drifted": bool(drift.get("drifted")),
    }


def _settled_validation(batch_id: str, earlier: BatchSummary) -> dict[str, Any]:
    """The validation entry of a batch settled without validating: its uploads are all gone (``settle_emptied_batch``);
    not scored, and no failed validation (its ``batch_not_empty`` failure alerted every night), but an alert
    (``batch_settled``): rows dropped unseen looked like photos scored."""
    reason = (f"its uploads are all gone (deleted or moved away): its {earlier.objects} row(s) were dropped and the "
              "batch is settled; uploads put back in its folder are validated and scored the next night")  # fmt: skip
    log.info("batch %s: %s", batch_id, reason)
    return {"batch_id": batch_id, "outcome": SETTLED, "reasons": [reason], "quarantined": 0, "objects": 0,
            "drifted": False, "rows_dropped": earlier.objects}  # fmt: skip


def publish_run_summary(
    store: StoreLike,
    run_id: str,
    validations: list[dict[str, Any]],
    summaries: list[dict[str, Any]],
    *,
    batch_ids: list[str] | None = None,
    planned: list[str] | None = None,
    released: list[str] | None = None,
    model_pinned: bool = True,
) -> dict[str, Any]:
    """Write ``runs/<run_id>.json``: what this run validated, skipped, released, scored, and which batches failed.

    Written whatever happened upstream (the DAG runs it with ``all_done``): a batch the run found
    (``batch_ids``) with no validation result failed validating, or was never started when no model
    was pinned (``model_pinned`` False); a batch to be scored (passed validation or released, or
    planned) with no summary failed planning or scoring. Each gets a line in ``failed_batches`` with
    the step and where to look.

    A run cleared and run again (its sensor then finds only what the first try left) adds to the summary
    the first try wrote: the batches it validated, released, scored or saw fail stay in the run's record.
    """
    store = open_store(store)
    earlier = _earlier_try(store, run_id)
    if earlier is not None:
        redone = {v["batch_id"] for v in validations}
        validations = [v for v in earlier.validations if v.get("batch_id") not in redone] + list(validations)
        released = sorted(set(released or ()) | set(earlier.batches_released))
    validated = {v["batch_id"] for v in validations}
    wanted = set(planned or []) | set(batches_to_score(validations, released))
    # A batch merged before finalize_batches failed for good (the store stopped answering) is complete all the same.
    summaries = [*summaries, *_completed_summaries(store, wanted - {s["batch_id"] for s in summaries})]
    scored = {s["batch_id"] for s in summaries}
    failed: dict[str, str] = {}
    unvalidated = (
        "validation did not finish: see the validate_batch task log for this batch"
        if model_pinned
        else "not validated or scored: no model was pinned for tonight (resolve_model failed: e.g. no such model, "
        "alias or version, a runtime unknown or not approved, a setting or batch id that is not one; or it was marked "
        "success without running, and pinned none): see the resolve_model task log"
    )
    for batch_id in batch_ids or []:
        if batch_id not in validated:
            failed[batch_id] = unvalidated
    for batch_id in wanted:
        if batch_id not in scored:
            failed[batch_id] = "scoring did not finish: see the plan_shards / score_shard / finalize_batches task logs"
    incomplete = sorted(failed)
    for v in validations:
        if v["outcome"] == "failed" and v["batch_id"] not in set(released or ()):
            failed.setdefault(v["batch_id"], "failed validation: " + "; ".join(v.get("reasons") or [])[:500])
    if earlier is not None:  # what the first try saw fail, and this one neither validated nor scored
        for batch_id, reason in earlier.failed_batches.items():
            if batch_id not in validated and batch_id not in scored and batch_id not in set(batch_ids or ()):
                failed.setdefault(batch_id, reason)
                incomplete += [batch_id] if batch_id in earlier.incomplete_batches else []
    summary = RunSummary(
        run_id=run_id,
        finished_at=utc_now(),
        batches_validated=len(validations),
        batches_failed_validation=[v["batch_id"] for v in validations if v["outcome"] == "failed"],
        batches_with_quarantine=[v["batch_id"] for v in validations if v["outcome"] == "passed_with_quarantine"],
        batches_scored=sorted(scored),
        objects_scored=sum(objects_scored(s.get("status_counts") or {}) for s in summaries),
        cracks=sum(int(s.get("cracks") or 0) for s in summaries),
        validations=validations,
        batches_released=sorted(set(released or ()) & validated),
        failed_batches=dict(sorted(failed.items())),
        incomplete_batches=sorted(incomplete),
        batches_reopened={s["batch_id"]: why for s in summaries if (why := unsettled_reason(s))},
    )
    summary.write(store, layout.run_summary_key(run_id))
    log.info(
        "run %s: %d batch(es) scored, %d failed, %d objects, %d cracks",
        run_id, len(summary.batches_scored), len(summary.failed_batches), summary.objects_scored, summary.cracks,
    )  # fmt: skip
    for batch_id, reason in summary.failed_batches.items():
        log.warning("batch %s: %s", batch_id, reason)
    for batch_id, reason in summary.batches_reopened.items():
        log.info("batch %s: %s", batch_id, reason)
    return summary.as_dict()


def _earlier_try(store: ObjectStore, run_id: str) -> RunSummary | None:
    """The summary an earlier try of this run wrote, if any (a damaged one is replaced, with a warning)."""
    key = layout.run_summary_key(run_id)
    try:
        return RunSummary.read(store, key)
    except CrackModelError as error:
        log.warning("the summary of an earlier try of run %s is replaced: %s", run_id, error)
        return None


def _completed_summaries(store: ObjectStore, batch_ids: set[str]) -> list[dict[str, Any]]:
    """The stored summaries of those batches that are complete (``_SUCCESS`` without late uploads)."""
    found = []
    new, unreadable = new_batches(store, sorted(batch_ids))  # an unreadable _SUCCESS: not known to be complete
    for batch_id in sorted(batch_ids - set(new) - {state.batch_id for state in unreadable}):
        summary = BatchSummary.read(store, layout.results_key(batch_id, layout.SUMMARY))
        if summary is not None:
            found.append(summary.as_dict())
    return found


def chosen_tile_budget(param: object, variable: str | None = None, variable_name: str = "") -> int:
    """A run's tile budget: ``param`` (the DAG param ``max_tiles``; its schema takes 1000.0 for an integer, and so
    does this), else the text of the Variable ``variable_name`` (a deployment's lasting choice; blank: none), else
    ``DEFAULT_MAX_TILES``; checked either way (``tiling.parse_tile_budget``), a wrong one named with what to do."""
    if param is not None:
        try:
            return parse_tile_budget(param)
        except CrackModelError as error:
            default = f"Variable {variable_name}, else {DEFAULT_MAX_TILES}" if variable_name else DEFAULT_MAX_TILES
            msg = (f"param max_tiles is {param!r}: {error}; trigger the run with an integer number of tiles, or "
                   f"null for the default ({default})")  # fmt: skip
            raise CrackModelError(msg) from None
    text = (variable or "").strip()
    if not text:
        return DEFAULT_MAX_TILES
    try:
        return parse_tile_budget(text)
    except CrackModelError as error:
        msg = (f"Variable {variable_name} is {text!r}: {error}; set it to a number of tiles, or delete it for the "
               f"default, {DEFAULT_MAX_TILES}")  # fmt: skip
        raise CrackModelError(msg) from None


def pinned_tile_budget(model: dict[str, Any]) -> int:
    """The tile budget ``pin_model`` pinned for a run's validations and shards (a model pinned by a run started
    before the budget was: the default)."""
    return int(model.get("max_tiles") or DEFAULT_MAX_TILES)


def pin_model(
    store: StoreLike, model_uri: str, runtime: str = "auto", max_tiles: int = DEFAULT_MAX_TILES
) -> dict[str, Any]:
    """Resolve an alias (``models:/crack@champion``) to one exact version for the whole run.

    Returns the pinned URI, the version, the version's drift reference profile (if any), the runtime every
    shard loads it with and the tile budget every shard scores within. A named ``runtime`` is loaded once here and
    must be one the version is approved for (``auto``: each shard takes the fastest approved), and ``max_tiles``
    must be a budget a run may use (``tiling.check_tile_budget``), so a wrong choice fails the run before any
    shard starts.
    """
    check_tile_budget(max_tiles)
    with step_store(store) as opened:
        if not is_model_uri(model_uri):
            version = load_scorer(model_uri, runtime, approved_only=True).version
            return {"uri": model_uri, "version": version, "drift_reference": None, "runtime": runtime,
                    "max_tiles": max_tiles}  # fmt: skip
        reference = parse_model_uri(model_uri)
        refuse_an_empty_store(opened)  # a mistyped store: not "no champion, promote a version first"
        registry = Registry(opened)
        version = reference.version or registry.resolve(reference.name, reference.alias or "champion")
        registry.read_version(reference.name, version)  # a version that is not there fails now, not in every shard
        drift_key = registry.version_key(reference.name, version, layout.DRIFT_REFERENCE)
        drift_reference = registry.store.url(drift_key) if registry.store.exists(drift_key) else None
        pinned = f"models:/{reference.name}/{version}"
        if runtime != "auto":
            load_scorer(pinned, runtime, registry=opened.uri, approved_only=True)
    return {"uri": pinned, "version": version, "drift_reference": drift_reference, "runtime": runtime,
            "max_tiles": max_tiles}  # fmt: skip
