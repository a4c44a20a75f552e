"""Heat-map overlays on demand, drawn from the tile scores a night stored, and kept once drawn.

The nightly run stores each image's tile boxes and probabilities (``part-N.tiles.jsonl`` beside
its rows) and draws no overlay: drawing one costs a re-read, a decode and a PNG per crack image
on the scoring path (measured 116 vs 575 images/s on 20,000 patches with 48% cracks). Instead:

- ``overlay_for_key(store, key)``: what the ops view's ``/files/{key}`` route calls for an overlay
  key that has no object yet; draws it, stores it at that key (the next view reads the file) and
  returns the PNG bytes, or None when the key is not an overlay or there is nothing to draw from;
- ``overlay_png(store, batch_id, object_key)``: the same for one upload of a batch;
- ``draw_overlays(store, batch_id)``: every crack image's overlay at once (``crack-model overlays``).

Batches scored before tile scores existed keep the overlays they were given.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field

from crack_model.core import layout
from crack_model.core.concurrency import map_bounded
from crack_model.core.documents import BatchSummary
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import listed_spelling, open_store
from crack_model.core.uploads import UnservableObjectError, read_upload
from crack_model.serving.overlay import render_overlay
from crack_model.serving.tile_scores import TileScores, find_tile_scores, iter_tile_scores, tile_score_files

log = module_logger(__name__)


@dataclass
class OverlayReport:
    """What ``draw_overlays`` did: overlays drawn, already there, crack images it could not draw (each warned
    about), and crack rows without tile scores to draw from (scored before they were kept, or their parts lost)."""

    batch_id: str
    drawn: int = 0
    kept: int = 0
    failed: int = 0
    without_tile_scores: list[str] = field(default_factory=list)


def _summary(store: ObjectStore, batch_id: str) -> BatchSummary:
    summary = BatchSummary.read(store, layout.results_key(batch_id, layout.SUMMARY))
    if summary is None:
        msg = f"batch {batch_id} has no {layout.SUMMARY} in {store.url(layout.results_key(batch_id))}: score it first"
        raise CrackModelError(msg)
    return summary


def _shard_files(store: ObjectStore, batch_id: str, summary: BatchSummary, object_key: str) -> list[str]:
    """The tile-score files of the shard that scored ``object_key`` (shards split keys by hash)."""
    shard = next(
        shard
        for shard in (layout.Shard(index, max(summary.shards, 1)) for index in range(max(summary.shards, 1)))
        if shard.owns(object_key)
    )
    return tile_score_files(store, layout.parts_key(batch_id, summary.model_version, shard.name) + "/")


def has_tile_scores(store: ObjectStore, batch_id: str) -> bool:
    """Can overlays of this batch be drawn on demand? (The shards its summary was merged from left tile scores.)"""
    summary = BatchSummary.read(store, layout.results_key(batch_id, layout.SUMMARY))
    if summary is None:
        return False
    return any(tile_score_files(store, prefix) for prefix in _merged_shard_prefixes(batch_id, summary))


def _merged_shard_prefixes(batch_id: str, summary: BatchSummary) -> list[str]:
    """The parts folders of the shards the summary was merged from: a batch scored again with another shard
    count keeps the old layout's parts, whose lines would win the last-line order by their folder's name."""
    count = max(summary.shards, 1)
    return [
        layout.parts_key(batch_id, summary.model_version, layout.Shard(index, count).name) + "/"
        for index in range(count)
    ]


def _draw(store: ObjectStore, batch_id: str, scores: TileScores, threshold: float, *, must_keep: bool = True) -> bytes:
    """Draw an overlay and keep it in the store. ``must_keep=False`` (a view's request): a store the view may not
    write to (read-only credentials or mount) still gets the picture served, drawn again next time."""
    png = render_overlay(_scored_bytes(store, scores), scores.boxes, scores.probabilities, threshold)
    try:
        store.write(layout.overlay_key(batch_id, scores.key), png, content_type="image/png")
    except Exception as error:
        if must_keep:
            raise
        log.warning("overlay of %s drawn but not kept: %s: %s", scores.key, type(error).__name__, error)
    return png


def _scored_bytes(store: ObjectStore, scores: TileScores) -> bytes:
    """The upload's bytes, if they are still those scored: its tile boxes drawn on others would mark another photo."""
    cannot = f"cannot draw the overlay of {scores.key}"
    try:
        data = read_upload(store, scores.key)  # over the upload limit (replaced since?): refused unread
    except UnservableObjectError as error:
        raise CrackModelError(f"{cannot}: {error}") from None
    except CrackModelError as error:
        raise CrackModelError(f"{cannot}: the upload cannot be read ({error})") from None
    if scores.sha256 and hashlib.sha256(data).hexdigest() != scores.sha256:
        msg = f"{cannot}: the upload changed after it was scored; run the batch again to validate and score it"
        raise CrackModelError(msg)
    return data


def overlay_png(
    store: ObjectStore | str, batch_id: str, object_key: str, *, refresh: bool = False, must_keep: bool = True
) -> bytes:
    """The overlay PNG of one scored upload: the stored one, else drawn from its tile scores and stored.

    Args:
        store: the workflow's store (URI or open store).
        batch_id: the batch; ``object_key`` is the upload's key (``incoming/<batch_id>/...``).
        refresh: draw it again even if one is stored.
        must_keep: fail if the drawn overlay cannot be stored (False: return it all the same).

    Raises:
        CrackModelError: the batch is not scored, the upload has no tile scores (scored before they were
            kept, or not scored), or the upload cannot be read any more.
    """
    store = open_store(store) if isinstance(store, str) else store
    if not refresh:
        for key in layout.overlay_keys(batch_id, object_key):
            if store.exists(key):
                return store.read(key)
    summary = _summary(store, batch_id)
    if not store.exists(object_key):  # before reading the shard's tile scores through: a name nobody uploaded
        raise CrackModelError(f"cannot draw the overlay of {object_key}: the upload cannot be read (not in the store)")
    scores = find_tile_scores(store, _shard_files(store, batch_id, summary, object_key), object_key)
    if scores is None:
        msg = f"{object_key} has no tile scores in batch {batch_id} (model {summary.model_version}): nothing to draw"
        raise CrackModelError(msg)
    threshold = summary.threshold if summary.threshold is not None else 0.5
    return _draw(store, batch_id, scores, threshold, must_keep=must_keep)


def overlay_for_key(store: ObjectStore | str, key: str) -> bytes | None:
    """For the ops view: the PNG at an overlay key, drawn and stored now if need be; None if there is none.

    None when ``key`` is not ``results/<batch>/overlays/<upload>.png`` (or, for an upload whose key is too long for
    that, ``results/<batch>/overlays/long-keys.png/<digest>.png``: the batch's crack rows say whose) or the overlay
    cannot be drawn (the reason is logged); the view answers 404 then.
    """
    try:
        source = layout.overlay_source(key) or _long_key_source(store, key)
        if source is None:
            return None
        return overlay_png(store, *source, must_keep=False)
    except (CrackModelError, ValueError) as error:  # ValueError: tile scores damaged (not UTF-8, NaN)
        log.info("no overlay at %s: %s", key, error)
        return None


def _long_key_source(store: ObjectStore | str, key: str) -> tuple[str, str] | None:
    """(batch id, upload key) of the digest-named overlay of a long key: the crack row of the batch that it is of."""
    batch_id = layout.long_key_overlay_batch(key)
    if batch_id is None:
        return None
    store = open_store(store) if isinstance(store, str) else store
    uploads = layout.long_key_overlays(batch_id, crack_keys(store, batch_id, _summary(store, batch_id)))
    return (batch_id, uploads[key]) if key in uploads else None


def crack_keys(store: ObjectStore, batch_id: str, summary: BatchSummary) -> set[str]:
    """Keys of the rows of ``predictions.csv`` labeled as the crack class."""
    text = store.read(layout.results_key(batch_id, layout.PREDICTIONS)).decode("utf-8")
    return {
        row["key"]
        for row in csv.DictReader(io.StringIO(text))
        if row.get("status") == "ok" and row.get("label") == summary.crack_class
    }


def draw_overlays(store: ObjectStore | str, batch_id: str, *, workers: int = 2, refresh: bool = False) -> OverlayReport:
    """Draw and store the overlay of every image of a scored batch labeled crack (those stored are kept).

    Args:
        workers: threads drawing (Pillow decodes, composites and encodes outside the GIL).
        refresh: draw again overlays already stored.
    """
    store = open_store(store) if isinstance(store, str) else store
    summary = _summary(store, batch_id)
    report = OverlayReport(batch_id)
    wanted = crack_keys(store, batch_id, summary)
    if not refresh:
        stored = {info.key for info in store.list(layout.results_key(batch_id, layout.OVERLAYS) + "/")}
        kept = {key for key in wanted if any(listed_spelling(store, overlay) in stored
                                             for overlay in layout.overlay_keys(batch_id, key))}  # fmt: skip
        report.kept, wanted = len(kept), wanted - kept
    files = [file for prefix in _merged_shard_prefixes(batch_id, summary) for file in tile_score_files(store, prefix)]
    threshold = summary.threshold if summary.threshold is not None else 0.5

    found: set[str] = set()

    def draw(scores: TileScores) -> bool:
        found.add(scores.key)
        try:
            _draw(store, batch_id, scores, threshold)
        except Exception as error:  # one unreadable upload must not stop the others
            log.warning("no overlay for %s: %s: %s", scores.key, type(error).__name__, error)
            return False
        return True

    for drawn in map_bounded(draw, iter_tile_scores(store, files, wanted), workers=workers, thread_name_prefix="draw"):
        report.drawn += drawn
        report.failed += not drawn
    report.without_tile_scores = sorted(wanted - found)
    log.info("overlays of batch %s: %d drawn, %d kept, %d failed, %d without tile scores", batch_id, report.drawn,
             report.kept, report.failed, len(report.without_tile_scores))  # fmt: skip
    return report
