"""Score a batch of uploads where they landed and write the results next to them.

A batch is ``incoming/<batch_id>/`` in a store. It may be split into N shards by key hash
(what Airflow fans out over workers); each shard writes its rows in parts under
``results/<batch_id>/_parts/<model_version>/<shard>/`` and a ``_DONE`` marker when finished.
Each part's ``.tiles.jsonl`` keeps every image's tile boxes and probabilities: heat-map overlays
are drawn from them on demand (``crack_model.pipelines.overlays``), not during the night, unless
``overlays=True`` asks for them inline.
A restarted shard skips the keys its parts already hold a row of what validation saw, so a killed
run loses nothing and scores nothing twice; an upload replaced since (and validated again) or not
readable last time is scored again. When every shard is done, the parts are merged into
``predictions.csv`` and ``summary.json``, and ``_SUCCESS`` is written last (``batch_results``).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.documents import (
    PartStats,
    ShardStats,
    quarantined_keys,
    read_success_marker,
)
from crack_model.core.errors import CrackModelError, StoreUnansweredError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import fetch_threads, listed_spelling, open_store
from crack_model.core.tiling import DEFAULT_MAX_TILES, TileConfig, check_tile_budget
from crack_model.core.uploads import (
    list_uploads,
    manifest_digest,
    read_manifest,
    read_upload,
    upload_fetch,
    validated_fetch,
)
from crack_model.serving import tile_scores
from crack_model.serving.batch_results import (
    ShardsIncompleteError,
    finalize_batch,
    latest_rows,
    read_rows,
    rows_to_csv,
    scored_what_was_validated,
    shard_parts_prefix,
)
from crack_model.serving.inference import ImageScore, score_images
from crack_model.serving.overlay import render_overlay
from crack_model.serving.scorer import Scorer, load_scorer

log = module_logger(__name__)


@dataclass
class ShardReport:
    batch_id: str
    shard: layout.Shard
    model_version: str
    images: int
    skipped_already_done: int
    seconds: float
    finalized: bool
    already_complete: bool = False
    waiting_for: str = ""  # why the batch is not finalized yet (another shard, or one scored by another version)
    blocked: bool = False  # a shard must be scored again for the batch to complete (waiting for the others will not)


_PART_NUMBER = re.compile(r"/part-(\d+)(?:-[0-9a-f]+)?\.csv$")


def _earlier_runtimes(store: ObjectStore, parts_prefix: str, done: ShardStats | None) -> set[str]:
    """The runtimes an earlier attempt at this shard scored with (its marker's, or its parts' rows')."""
    if done is not None:
        return {done.runtime} if done.runtime else set()
    parts = [info.key for info in store.list(parts_prefix + "/") if info.key.endswith(".csv")]
    return {row["runtime"] for key in parts for row in read_rows(store.read(key)) if row.get("runtime")}


def result_row(score: ImageScore, scorer: Scorer) -> dict[str, Any]:
    ok = score.status == "ok"
    return {
        "key": score.key,
        "size": score.size if score.size is not None else "",
        "sha256": score.sha256 or "",
        "width": score.width or "",
        "height": score.height or "",
        "status": score.status,
        "error": score.error,
        "crack_probability": f"{score.crack_probability:.6f}" if ok and score.crack_probability is not None else "",
        "label": score.label,
        "threshold": f"{scorer.card.threshold:.6f}",
        "model_version": scorer.version,
        "runtime": scorer.runtime.name,
        "tile_count": score.tile_count,
        "scored_at": utc_now(),
        "note": score.note,
    }


def score_shard(
    store_uri: str,
    batch_id: str,
    model: str | Scorer,
    shard: layout.Shard | None = None,
    *,
    exclude: Collection[str] = (),
    part_rows: int = 500,
    batch_size: int | None = None,
    workers: int | None = None,
    overlays: bool = False,
    force: bool = False,
    progress: bool = False,
    finalize: bool = True,
    runtime: str = "auto",
    retry_unanswered: bool = False,
    max_tiles: int = DEFAULT_MAX_TILES,
) -> ShardReport:
    """Score the keys of one shard of a batch, resuming where an earlier run stopped.

    Args:
        exclude: keys to leave out, besides those validation quarantined (always skipped).
        part_rows: rows per part file: the most a killed run has to redo.
        workers: threads fetching objects (default: what suits the store, ``storage.fetch_threads``).
        overlays: also draw each crack image's overlay now (a decode, blend and PNG per crack image, on the
            scoring path); by default only tile scores are stored and overlays are drawn when asked for.
        force: rescore even if the batch already has ``_SUCCESS`` (removed first: the batch is incomplete until
            this run, or a resumed one, completes it again).
        finalize: merge the results if this was the last shard to finish.
        runtime: the runtime to load ``model`` with when it is a URI or folder (``load_scorer``; default: the
            fastest approved).
        retry_unanswered: objects the store did not answer get no row; once the others' are written,
            ``StoreUnansweredError`` is raised and a retry reads just them (False, the last try: error rows).
        max_tiles: the tile budget per photo (``tiling.MIN_TILE_BUDGET`` to ``MAX_TILE_BUDGET``); a larger photo is
            scored downscaled to fit. A shard scored before with another budget is scored again with this one.
    """
    from tqdm import tqdm

    shard = shard or layout.Shard()
    check_tile_budget(max_tiles)  # before anything is read or deleted
    store = open_store(store_uri)
    manifest = read_manifest(store, batch_id)
    validated = manifest_digest(store, batch_id)
    if not force and _is_complete(store, batch_id, validated):
        log.info("batch %s is already complete (%s exists); nothing to do", batch_id, layout.SUCCESS)
        return ShardReport(batch_id, shard, "", 0, 0, 0.0, False, already_complete=True)
    scorer = model if isinstance(model, Scorer) else load_scorer(model, runtime, registry=store_uri)
    parts_prefix = shard_parts_prefix(batch_id, scorer.version, shard)
    done_key = f"{parts_prefix}/{layout.DONE}"
    done = ShardStats.read(store, done_key)
    earlier = _earlier_runtimes(store, parts_prefix, done) - {scorer.runtime.name}
    # A shard already done is read again rather than trusted: a part lost since (a restart killed midway, a zombie
    # try writing the same part names) leaves keys without a row, which this run scores; the merge refuses them.
    if earlier:
        log.warning("%s of batch %s was scored with %s before: scoring it again with %s, so that the batch has one "
                    "runtime", shard.name, batch_id, ", ".join(sorted(earlier)), scorer.runtime.name)  # fmt: skip
    # Likewise for the tile budget: a photo's score depends on the scale it was tiled at, and one batch's rows
    # must be comparable (the summary's crack rate, the alerts); its boxes are kept with each image's tile scores.
    other_budgets = tile_scores.budgets_used(store, parts_prefix, done) - {max_tiles}
    if other_budgets:
        log.warning(
            "%s of batch %s was scored with a tile budget of %s before: scoring it again with %d, so that the "
            "batch has one",
            shard.name,
            batch_id,
            ", ".join(map(str, sorted(other_budgets))),
            max_tiles,
        )
    if force:  # the completion marker goes first: a run stopped while the parts go must leave a batch that resumes,
        # not one still marked complete whose rows have lost their tile scores
        store.delete(layout.results_key(batch_id, layout.SUCCESS))
    if force or earlier or other_budgets:  # start this shard over: stale parts of an earlier run must not be merged
        for info in list(store.list(parts_prefix + "/")):
            store.delete(info.key)

    uploads = list_uploads(store, batch_id)
    if not uploads and not manifest:  # a mistyped batch id (validated or not) must not leave a _SUCCESS to miss uploads
        where = store.url(layout.incoming_prefix(batch_id))
        raise CrackModelError(f"no uploads in {where}: nothing to score; check the batch id (or the store)")
    fetch = upload_fetch(store, uploads)
    if manifest is not None:  # score what validation saw: later uploads wait, changed bytes are refused
        fetch = validated_fetch(fetch, manifest)
        candidates = sorted(manifest)
    else:
        candidates = [info.key for info in uploads]
    # Objects validation quarantined are skipped: they have their reasons in quarantine/.
    excluded = set(exclude) | quarantined_keys(store, batch_id)
    keys = [key for key in candidates if shard.owns(key) and key not in excluded]
    existing_parts = sorted(info.key for info in store.list(parts_prefix + "/") if info.key.endswith(".csv"))
    # A row of bytes since replaced, or of none (unreadable, changed), is scored again; the later row wins.
    standing = latest_rows(store, existing_parts)
    already = {key for key, row in standing.items() if scored_what_was_validated(row, manifest)}
    # An upload scored before and written again since validation (a batch reopened for another upload, a
    # shard resumed) is read again: the check on its bytes then gives it ``changed``, not its old row.
    if manifest is not None:
        already -= {info.key for info in uploads if info.key in manifest and manifest[info.key].relisted(info)}
    todo = [key for key in keys if key not in already]
    log.info("%s of batch %s: %d objects, %d already scored, %d to score", shard.name, batch_id,
             len(keys), len(keys) - len(todo), len(todo))  # fmt: skip

    _drop_stale_overlays(store, batch_id, todo)

    started = time.perf_counter()
    # After the highest part there is: a run killed while starting the shard over leaves a later part or two, and
    # counting parts would write over them.
    next_part = 1 + max((int(match[1]) for key in existing_parts if (match := _PART_NUMBER.search(key))), default=-1)
    pending: list[dict[str, Any]] = []
    pending_scores: list[ImageScore] = []
    part_started = started
    # Two tries of one shard at once (a worker lost to Airflow but still running, and its retry) number their
    # parts alike: the try's own id in the name keeps one from writing over the other's rows.
    attempt = uuid.uuid4().hex[:8]

    def write_part() -> None:
        nonlocal next_part, pending, pending_scores, part_started
        name = f"{parts_prefix}/part-{next_part:06d}-{attempt}"
        # Tile scores first: a part's rows (what a resumed run skips) always have theirs.
        lines = tile_scores.encode(pending_scores, max_tiles)
        store.write(f"{name}{layout.TILE_SCORES_SUFFIX}", lines, content_type="application/x-ndjson")
        store.write(f"{name}.csv", rows_to_csv(pending), content_type="text/csv")
        # Each part records its own count and time, so a summary counts every attempt, killed ones too.
        now = time.perf_counter()
        PartStats(images=len(pending), seconds=round(now - part_started, 3)).write(store, f"{name}.json")
        next_part, pending, pending_scores, part_started = next_part + 1, [], [], now

    sizes = {info.key: info.size for info in uploads if info.size and not info.problem}  # bounds fetched bytes
    workers = workers or fetch_threads(store)
    tiles = TileConfig(tile_size=scorer.card.tile_size, max_tiles=max_tiles)
    scores = score_images(todo, fetch, scorer, tiles=tiles, batch_size=batch_size, workers=workers,
                          object_sizes=sizes)  # fmt: skip
    unanswered: list[ImageScore] = []
    with closing(scores):  # a failed write stops scoring here and now, not when the garbage collector gets to it
        for score in tqdm(scores, total=len(todo), unit="img", desc=shard.name, disable=not progress):
            if retry_unanswered and score.unanswered:
                unanswered.append(score)
                continue
            if overlays and score.status == "ok" and score.label == scorer.card.crack_class:
                _write_overlay(store, batch_id, score, scorer.card.threshold)
            pending.append(result_row(score, scorer))
            pending_scores.append(score)
            if len(pending) >= part_rows:
                write_part()
    if pending:
        write_part()
    if unanswered:
        raise StoreUnansweredError(f"the store did not answer for {len(unanswered)} object(s) of {shard.name} of "
                                   f"batch {batch_id} ({unanswered[0].key}: {unanswered[0].error}); the rest is kept: "
                                   "a retry reads just them")  # fmt: skip
    seconds = time.perf_counter() - started
    listed = [info.key for info in store.list(parts_prefix + "/")]
    timings = [PartStats.read(store, key) for key in listed if key.endswith(".json")]
    # Rows are counted from the parts themselves: a kill between a part and its stats loses only that time.
    parts = [read_rows(store.read(key)) for key in sorted(key for key in listed if key.endswith(".csv"))]
    rows = sum(len(part) for part in parts)
    standing = {row["key"]: row for part in parts for row in part}  # parts are numbered as written: later wins
    unsettled = sum(1 for key in keys if key in standing and not scored_what_was_validated(standing[key], manifest))
    stats = ShardStats(
        images=rows,
        seconds=round(sum(timing.seconds for timing in timings if timing), 3),
        finished_at=utc_now(),
        runtime=scorer.runtime.name,
        crack_class=scorer.card.crack_class,
        threshold=scorer.card.threshold,
        validated_manifest=validated,
        unsettled=unsettled,
        max_tiles=max_tiles,
    )
    stats.write(store, done_key)
    report = ShardReport(batch_id, shard, scorer.version, len(todo), len(keys) - len(todo), seconds, False)
    return _finalized(report, store, scorer, finalize, exclude)


def _is_complete(store: ObjectStore, batch_id: str, validated: str | None) -> bool:
    """``_SUCCESS`` exists and covers the current validated manifest (a batch validated again is not complete),
    and counted no late or ``changed`` upload: the night those bring the batch back on must settle them, even
    when the manifest reads as before (a late upload deleted, changed bytes put back)."""
    marker = read_success_marker(store, batch_id)
    if marker is None:
        return False
    summary = marker.summary
    if summary is not None and summary.objects == 0:  # settled with no rows, its uploads all gone: any now are new
        return False
    if summary is None or validated is None:
        return True
    if summary.awaits_revalidation:
        return False
    return summary.validated_manifest in (None, validated)


def _drop_stale_overlays(store: ObjectStore, batch_id: str, keys: list[str]) -> None:
    """Delete the overlays of keys about to be scored again: the ops view would show the old picture.

    One listing of the batch's overlays (empty on a first run), not one request per key.
    """
    if not keys:
        return
    wanted = {listed_spelling(store, overlay) for key in keys for overlay in layout.overlay_keys(batch_id, key)}
    for info in list(store.list(layout.results_key(batch_id, layout.OVERLAYS) + "/")):
        if info.key in wanted:
            store.delete(info.key)


def _write_overlay(store: ObjectStore, batch_id: str, score: ImageScore, threshold: float) -> None:
    try:
        png = render_overlay(read_upload(store, score.key), score.boxes, score.tile_probabilities, threshold)
        store.write(layout.overlay_key(batch_id, score.key), png, content_type="image/png")
    except Exception as error:  # the score stands even if the picture cannot be drawn or stored
        log.warning("no overlay for %s: %s: %s", score.key, type(error).__name__, error)


def _finalized(
    report: ShardReport, store: ObjectStore, scorer: Scorer, finalize: bool, exclude: Collection[str] = ()
) -> ShardReport:
    """The report, with the batch finalized if ``finalize`` and every shard is done (else why not, if asked)."""
    if not finalize:
        return report
    try:
        finalize_batch(store, report.batch_id, scorer.version, report.shard.count, threshold=scorer.card.threshold,
                       exclude=exclude)  # fmt: skip
    except ShardsIncompleteError as error:
        log.info("not finalizing yet: %s", error)
        report.waiting_for, report.blocked = str(error), error.blocked
        return report
    report.finalized = True
    return report


def score_batch(store_uri: str, batch_id: str, model: str | Scorer, *, shards: int = 1, **options: Any) -> ShardReport:
    """Score every shard of a batch in this process, then finalize (the single-machine path)."""
    if shards < 1:
        raise CrackModelError(f"shards must be at least 1, got {shards}")
    scorer = model if isinstance(model, Scorer) else load_scorer(model, registry=store_uri)
    reports = []
    for index in range(shards):
        reports.append(score_shard(store_uri, batch_id, scorer, layout.Shard(index, shards), **options))
        if reports[-1].already_complete:
            break
    return reports[-1]
