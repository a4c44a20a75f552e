"""A batch's rows: the shards' part files, which of their rows still stand, and the merge into
``predictions.csv``, ``summary.json`` and ``_SUCCESS``.

Parts are only ever added to. An upload scored again (its bytes changed and the batch was validated
again, or it could not be read last time) gets a row in a later part, and the later row wins. A
row stands only while it scored the bytes of the latest validation; an upload validation now holds
back gets its quarantine row, and one no longer in the validated manifest (deleted) gets none. One the
listing shows written again since validation is ``changed`` at the merge, whatever its shard scored.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.csv_text import csv_bytes
from crack_model.core.documents import BatchSummary, ShardStats, quarantined_objects
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectInfo, ObjectStore
from crack_model.core.storage import listed_spelling, open_store
from crack_model.core.tiling import DEFAULT_MAX_TILES
from crack_model.core.uploads import (
    ManifestEntry,
    ObjectChangedError,
    list_uploads,
    manifest_digest,
    read_manifest,
)

log = module_logger(__name__)

RESULT_COLUMNS = (
    "key", "size", "sha256", "width", "height", "status", "error", "crack_probability", "label",
    "threshold", "model_version", "runtime", "tile_count", "scored_at", "note",
)  # fmt: skip


class ShardsIncompleteError(CrackModelError):
    """Some shards of the batch have not finished; ``blocked``: one must be scored again (waiting will not do)."""

    def __init__(self, message: str, *, blocked: bool = False) -> None:
        super().__init__(message)
        self.blocked = blocked


def shard_parts_prefix(batch_id: str, model_version: str, shard: layout.Shard) -> str:
    """``results/<batch_id>/_parts/<model_version>/<shard>``: where one shard's parts go."""
    return layout.parts_key(batch_id, model_version, shard.name)


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    return csv_bytes(RESULT_COLUMNS, rows)


def read_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def latest_rows(store: ObjectStore, part_keys: Iterable[str]) -> dict[str, dict[str, str]]:
    """Each key's row from the last part (in name order) that holds one: parts are numbered as written."""
    rows: dict[str, dict[str, str]] = {}
    for key in sorted(part_keys):
        for row in read_rows(store.read(key)):
            rows[row["key"]] = row
    return rows


def scored_what_was_validated(row: dict[str, str], manifest: dict[str, ManifestEntry] | None) -> bool:
    """Does this row score the bytes the latest validation saw? A row of other bytes (the upload was
    replaced and the batch validated again), or of none (it could not be read, or had changed), does not."""
    if manifest is None:  # validated before manifests existed, or never: nothing to compare with
        return True
    entry = manifest.get(row["key"])
    if entry is None:
        return False
    return not entry.sha256 or row.get("sha256") == entry.sha256


def finalize_batch(
    store: ObjectStore | str,
    batch_id: str,
    model_version: str,
    shard_count: int,
    *,
    threshold: float | None = None,
    exclude: Collection[str] = (),
) -> dict[str, Any]:
    """Merge the shards' parts into predictions.csv and summary.json, then write _SUCCESS.

    Idempotent: running it again rewrites the same files. Raises ShardsIncompleteError if a
    shard has no ``_DONE`` marker yet, or a validated upload no row. ``exclude``: keys the shards were
    told to leave out (``score_shard``'s), which have none.
    """
    store = open_store(store) if isinstance(store, str) else store
    shards = [layout.Shard(index, shard_count) for index in range(shard_count)]
    validated = manifest_digest(store, batch_id)
    stats = []
    for shard in shards:
        done = ShardStats.read(store, f"{shard_parts_prefix(batch_id, model_version, shard)}/{layout.DONE}")
        if done is not None and done.validated_manifest != validated:
            msg = (f"{shard.name} of batch {batch_id} was scored against an earlier validation of the batch: score "
                   "it again")  # fmt: skip
            raise ShardsIncompleteError(msg, blocked=True)
        if done is None:
            message = f"{shard.name} of batch {batch_id} (model {model_version}) has not finished"
            if others := _finished_by_other_versions(store, batch_id, model_version, shard, validated):
                message += (
                    f"; it was scored by model version {', '.join(others)} instead (the model moved between shards?): "
                    f"score it again with version {model_version}, or every shard with one version"
                )
            raise ShardsIncompleteError(message, blocked=bool(others))
        stats.append(done)
    if len({done.runtime for done in stats if done.runtime}) > 1:  # the nightly DAG pins one; runs by hand may not
        used = "; ".join(f"{shard.name}: {done.runtime}" for shard, done in zip(shards, stats, strict=True))
        msg = f"the shards of batch {batch_id} were scored with different runtimes ({used}): score them with one"
        raise ShardsIncompleteError(msg, blocked=True)
    _refuse_mixed_tile_budgets(batch_id, shards, stats)
    rows: dict[str, dict[str, str]] = {}
    for shard in shards:
        listed = store.list(shard_parts_prefix(batch_id, model_version, shard) + "/")
        rows.update(latest_rows(store, [info.key for info in listed if info.key.endswith(".csv")]))
    manifest = read_manifest(store, batch_id)
    held_back = quarantined_objects(store, batch_id)
    if manifest is not None:  # an upload deleted before the batch was validated again is no upload any more
        rows = {key: row for key, row in rows.items() if key in manifest}
        unscored = set(manifest) - set(rows) - set(exclude) - {item["key"] for item in held_back}
        _refuse_missing_rows(batch_id, shards, unscored)

    # Held back by the latest validation: one row each, with the reasons, whatever an earlier run scored.
    stamp = utc_now()
    for item in held_back:
        rows[item["key"]] = quarantined_row(item, model_version, stamp, (manifest or {}).get(item["key"]))
    uploads = list_uploads(store, batch_id)  # the one listing of the merge: rewritten uploads, and late ones
    if manifest is not None:
        _withhold_rewritten(rows, manifest, uploads, stamp)
    ordered = [rows[key] for key in sorted(rows)]
    budget = stats[0].max_tiles or DEFAULT_MAX_TILES  # one for every shard (refused above otherwise)
    rescore = _rescore_record(store, batch_id, (model_version, budget), validated, ordered)  # before its rows go
    store.write(layout.results_key(batch_id, layout.PREDICTIONS), rows_to_csv(ordered), content_type="text/csv")
    _drop_overlays_of_unscored(store, batch_id, rows)
    summary = summarize(batch_id, ordered, model_version, stats, shard_count, threshold)
    summary.validated_manifest, summary.max_tiles = validated, budget
    summary.rescored_from, summary.rescored_from_max_tiles, summary.rows_rescored, summary.labels_flipped = rescore
    # Uploads no shard saw: after validation, or (a batch scored unvalidated) after the shard that owns them ran.
    seen = manifest if manifest is not None else rows
    summary.late_objects = sum(1 for info in uploads if info.key not in seen and info.key not in exclude)
    summary.write(store, layout.results_key(batch_id, layout.SUMMARY))
    summary.write(store, layout.results_key(batch_id, layout.SUCCESS))
    log.info(
        "batch %s complete: %d rows, results at %s", batch_id, len(ordered), store.url(layout.results_key(batch_id))
    )
    return summary.as_dict()


def _refuse_mixed_tile_budgets(batch_id: str, shards: list[layout.Shard], stats: list[ShardStats]) -> None:
    """Shards tiled within different budgets scored the same photo at different scales: one batch, one budget (a
    shard resumed with another is started over; shards run by hand with different ones end here)."""
    if len({done.max_tiles or DEFAULT_MAX_TILES for done in stats}) > 1:
        used = "; ".join(f"{shard.name}: {done.max_tiles or DEFAULT_MAX_TILES}"
                         for shard, done in zip(shards, stats, strict=True))  # fmt: skip
        msg = (f"the shards of batch {batch_id} were scored with different tile budgets ({used}): score them with "
               "one --max-tiles")  # fmt: skip
        raise ShardsIncompleteError(msg, blocked=True)


def _withhold_rewritten(
    rows: dict[str, dict[str, str]], manifest: dict[str, ManifestEntry], uploads: Iterable[ObjectInfo], stamp: str
) -> None:
    """Uploads the listing shows written again since validation, after their shard scored them (another shard
    still running): the row is of bytes the store no longer holds. It becomes ``changed``, which brings the
    batch back the next night to score the new bytes; kept ``ok``, the batch closed on the old photo's score."""
    for info in uploads:
        entry, row = manifest.get(info.key), rows.get(info.key)
        if entry is None or row is None or row["status"] == ObjectChangedError.row_status:
            continue
        if entry.relisted(info):
            rows[info.key] = rewritten_row(row, stamp)


def rewritten_row(row: Mapping[str, str], stamp: str) -> dict[str, str]:
    """The ``changed`` row of an upload written again after its row was made: no score of bytes that are gone, and
    for a row that scored nothing (quarantined, an error, missing), no word of a score withheld."""
    withheld = dict.fromkeys(RESULT_COLUMNS, "")
    if row["status"] == "ok":
        reason = (f"{row['key']} was written again after validation (after it was scored): its score of the earlier "
                  "bytes is withheld; the next nightly run validates the batch again and scores the new bytes (or "
                  "run validate and score again now)")  # fmt: skip
    else:
        reason = (f"{row['key']} was written again after validation (its row was {row['status']}): not scored; the "
                  "next nightly run validates the batch again and scores the new bytes (or run validate and score "
                  "again now)")  # fmt: skip
    withheld.update({name: row[name] for name in ("key", "threshold", "model_version", "runtime")})
    withheld.update(status=ObjectChangedError.row_status, error=reason, tile_count="0", scored_at=stamp)
    return withheld


def _rescore_record(
    store: ObjectStore, batch_id: str, scoring: tuple[str, int], validated: str | None, rows: list[dict[str, str]]
) -> tuple[str | None, int | None, int, int]:
    """What this merge replaces when its model version or tile budget (``scoring``) differs from the published
    rows': their version, their budget if it differs (else None), how many of their ``ok`` rows were scored again
    and how many of their labels flipped ((None, None, 0, 0): none replaced). The resume state is per version, and
    a shard scored with another budget starts over, so a batch reopened after a promotion or a budget change (one
    late upload) is scored again whole: the alert must say so."""
    nothing = (None, None, 0, 0)
    try:
        earlier = BatchSummary.read(store, layout.results_key(batch_id, layout.SUMMARY))
    except CrackModelError as error:  # damaged or newer: nothing to compare with
        log.warning("the earlier summary of batch %s is not read: %s", batch_id, error)
        return nothing
    if earlier is None:
        return nothing
    budget = scoring[1]
    earlier_budget = earlier.max_tiles or DEFAULT_MAX_TILES
    if (earlier.model_version, earlier_budget) == scoring:  # the same merge again (a retried task) keeps its record
        kept = (earlier.rescored_from, earlier.rescored_from_max_tiles, earlier.rows_rescored, earlier.labels_flipped)
        return kept if earlier.validated_manifest == validated else nothing
    published = layout.results_key(batch_id, layout.PREDICTIONS)
    before = read_rows(store.read(published)) if store.exists(published) else []
    labels = {row["key"]: row["label"] for row in before if row["status"] == "ok"}
    again = [row for row in rows if row["status"] == "ok" and row["key"] in labels]
    flipped = sum(1 for row in again if row["label"] != labels[row["key"]])
    if not again:
        return nothing
    return earlier.model_version, earlier_budget if earlier_budget != budget else None, len(again), flipped


def _refuse_missing_rows(batch_id: str, shards: list[layout.Shard], missing: set[str]) -> None:
    """Every validated upload a shard scores has a row: one without is a lost part (a run killed while it started the
    shard over), and a batch marked complete would hide it for good."""
    if missing:
        example = min(missing)
        owner = next(shard for shard in shards if shard.owns(example))
        msg = (f"{len(missing)} validated upload(s) of batch {batch_id} have no row (e.g. {example}, of {owner.name}): "
               "score their shards again")  # fmt: skip
        raise ShardsIncompleteError(msg, blocked=True)


def _finished_by_other_versions(
    store: ObjectStore, batch_id: str, model_version: str, shard: layout.Shard, validated: str | None
) -> list[str]:
    """Model versions whose parts of this shard finished against the same validation: shards scored by separate
    processes each resolve ``models:/<name>@champion``, and a promotion in between splits the batch."""
    versions = store.folders(layout.results_key(batch_id, layout.PARTS))
    return [
        version
        for version in versions
        if version != model_version
        and (done := ShardStats.read(store, f"{shard_parts_prefix(batch_id, version, shard)}/{layout.DONE}"))
        and done.validated_manifest == validated
    ]


def _drop_overlays_of_unscored(store: ObjectStore, batch_id: str, rows: Mapping[str, Mapping[str, str]]) -> None:
    """Delete the overlays of uploads the latest validation held back or that are gone: the ops view would
    show a crack picture beside a row that is no score."""
    # A row's key as its overlay's is listed (a local store lists a decomposed name's overlay composed); the
    # exact key first: of a composed and a decomposed twin, the composed one owns the overlay.
    spelled = {listed_spelling(store, key): row for key, row in rows.items()}
    long_keys = layout.long_key_overlays(batch_id, rows)
    for info in list(store.list(layout.results_key(batch_id, layout.OVERLAYS) + "/")):
        source = layout.overlay_source(info.key)
        if layout.long_key_overlay_batch(info.key) == batch_id:  # named by a digest: its row tells whose it is
            source = (batch_id, long_keys.get(info.key, info.key))
        row = (rows.get(source[1]) or spelled.get(source[1])) if source else None
        if source and (row is None or row.get("status") != "ok"):
            log.info("dropping the overlay of %s: its row is %s", source[1], row["status"] if row else "gone")
            store.delete(info.key)


def settle_emptied_batch(store: ObjectStore, batch_id: str) -> BatchSummary | None:
    """Settle a merged batch awaiting revalidation whose uploads are all gone: rewrite its results with no rows.

    Validation of a batch with no uploads fails (``batch_not_empty``), so nothing merged again: its ``missing``
    rows stayed for good, and brought it back every night with a failed validation and an alert. Its uploads
    are no longer part of it, so their rows go, as those of a batch with uploads left do at its next merge.

    Returns:
        The summary replaced (its ``objects``: the rows dropped), or None (untouched) when the batch has uploads, or
        no merged summary awaiting them.
    """
    earlier = BatchSummary.read(store, layout.results_key(batch_id, layout.SUMMARY))
    if earlier is None or not earlier.awaits_revalidation or list_uploads(store, batch_id):
        return None
    store.write(layout.results_key(batch_id, layout.PREDICTIONS), rows_to_csv([]), content_type="text/csv")
    _drop_overlays_of_unscored(store, batch_id, {})
    summary = dataclasses.replace(
        earlier, objects=0, status_counts={}, label_counts={}, cracks=0, crack_rate=None, late_objects=0,
        finished_at=utc_now(), rescored_from=None, rows_rescored=0, labels_flipped=0,
    )  # fmt: skip
    summary.write(store, layout.results_key(batch_id, layout.SUMMARY))
    summary.write(store, layout.results_key(batch_id, layout.SUCCESS))
    log.warning("batch %s: its uploads are all gone; its %d row(s) are dropped and the batch is settled", batch_id,
                earlier.objects)  # fmt: skip
    return earlier


def quarantined_row(
    item: dict[str, Any], model_version: str, stamp: str, validated: ManifestEntry | None = None
) -> dict[str, str]:
    """The row of an upload validation held back; its size and SHA-256 as validation's manifest read them."""
    row = dict.fromkeys(RESULT_COLUMNS, "")
    row.update(key=item["key"], status="quarantined", error="; ".join(item.get("reasons", [])),
               model_version=model_version, tile_count="0", scored_at=stamp)  # fmt: skip
    if validated is not None:
        row.update(size="" if validated.size is None else str(validated.size), sha256=validated.sha256 or "")
    return row


def summarize(
    batch_id: str,
    rows: list[dict[str, str]],
    model_version: str,
    shard_stats: list[ShardStats],
    shard_count: int,
    threshold: float | None,
) -> BatchSummary:
    statuses = Counter(row["status"] for row in rows)
    labels = Counter(row["label"] for row in rows if row["status"] == "ok")
    scored = statuses.get("ok", 0)
    first = shard_stats[0] if shard_stats else None
    crack_class = first.crack_class if first else None
    if threshold is None and first:
        threshold = first.threshold
    cracks = labels.get(crack_class, 0) if crack_class else 0
    seconds = sum(stat.seconds for stat in shard_stats)
    images = sum(stat.images for stat in shard_stats)
    return BatchSummary(
        batch_id=batch_id,
        model_version=model_version,
        runtime=first.runtime if first else None,
        threshold=threshold,
        objects=len(rows),
        status_counts=dict(sorted(statuses.items())),
        label_counts=dict(sorted(labels.items())),
        crack_class=crack_class,
        cracks=cracks,
        crack_rate=round(cracks / scored, 6) if scored else None,
        shards=shard_count,
        scoring_seconds=round(seconds, 3),
        throughput_images_per_second=round(images / seconds, 2) if seconds > 0 else None,
        finished_at=utc_now(),
        max_tiles=first.max_tiles if first else None,
    )
