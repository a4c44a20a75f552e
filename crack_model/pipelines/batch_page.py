"""One batch in detail, for the ops view's batch page: summary, validation, cracks found, quarantine.

``batch_page`` returns a JSON-ready dict: the overview's row for the batch (state, counts, crack
rate, drift, links), its validation outcome with every reason and failed check and the PSI of each
drift feature, the crack overlays of the most probable cracks (``predictions.csv`` rows labeled
crack, highest probability first, each with its overlay key when one was written) and the objects
validation held back, with their reasons. Links are store keys the view serves (``ops_files``).
"""

from __future__ import annotations

import codecs
import csv
import heapq
from collections.abc import Iterator
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.documents import FORMAT_VERSION, QuarantineManifest
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import open_store
from crack_model.pipelines.document_shapes import BATCH_SUMMARY, VALIDATION_OUTCOME
from crack_model.pipelines.ops_files import iter_object
from crack_model.pipelines.overlays import has_tile_scores
from crack_model.pipelines.overview import DEFAULT_NAME, batch_row
from crack_model.pipelines.store_reader import StoreReader

MAX_REASONS = 50
MAX_OFFENDERS = 10  # offending objects shown per failed check


def batch_page(
    store_uri: str | ObjectStore,
    batch_id: str,
    name: str = DEFAULT_NAME,
    *,
    thumbnails: int = 24,
    quarantined: int = 200,
) -> dict[str, Any] | None:
    """Everything the store knows about one batch; None if it knows nothing (no uploads, validation or results).

    Args:
        store_uri: the workflow's store or an open store.
        batch_id: the batch (``incoming/<batch_id>/``); an invalid id is a CrackModelError.
        name: the registered model (for the link to the version that scored the batch).
        thumbnails: at most this many cracks with overlays, most probable first.
        quarantined: at most this many quarantined objects listed (``quarantined_total`` counts all).

    Returns:
        ``{"format_version", "store", "model_name", "generated_at", "batch", "validation", "cracks",
        "cracks_total", "quarantined", "quarantined_total", "problems"}``.
    """
    layout.validate_batch_id(batch_id)
    if thumbnails < 0 or quarantined < 0:
        raise CrackModelError(f"thumbnails and quarantined must not be negative (got {thumbnails}, {quarantined})")
    store = open_store(store_uri) if isinstance(store_uri, str) else store_uri
    reader = StoreReader(store)
    row = batch_row(reader, batch_id, overlays=0)
    outcome = reader.json(layout.validation_key(batch_id, layout.OUTCOME), VALIDATION_OUTCOME)
    if row["state"] == "waiting" and not row["objects"] and outcome is None:
        return None
    # Scored (its predictions written), whether or not late uploads now await its revalidation.
    scored = row["links"]["predictions"] is not None
    cracks, cracks_total = _cracks(reader, batch_id, row, thumbnails) if scored else ([], 0)
    held_back, held_back_total = _quarantined(reader, batch_id, quarantined)
    return {
        "format_version": FORMAT_VERSION,
        "store": store.uri,
        "model_name": name,
        "generated_at": utc_now(),
        "batch": row,
        "validation": _validation(outcome),
        "cracks": cracks,
        "cracks_total": cracks_total,
        "quarantined": held_back,
        "quarantined_total": held_back_total,
        "problems": reader.problems,
    }


def _validation(outcome: dict[str, Any] | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    drift = outcome.get("drift") or {}
    threshold = drift.get("threshold")
    features = [
        {"feature": feature, "psi": psi, "drifted": feature in (drift.get("drifted_features") or [])}
        for feature, psi in (drift.get("psi") or {}).items()
        if psi is not None
    ]
    failed = [
        {
            "name": check.get("name"),
            "reason": check.get("reason"),
            "report_only": bool(check.get("report_only")),
            "unexpected_count": check.get("unexpected_count"),
            "element_count": check.get("element_count"),
            "offenders": list(check.get("offenders") or [])[:MAX_OFFENDERS],
            # None: not recorded (outcomes written before the total was), or not a count; the list is a floor.
            "offenders_total": _first_known(check.get("offenders_total"), len(check.get("offenders") or [])),
        }
        for check in outcome.get("checks") or []
        if not check.get("success", True)
    ]
    return {
        "outcome": outcome.get("outcome"),
        "suite": outcome.get("suite"),
        "validated_at": outcome.get("validated_at"),
        "reasons": list(outcome.get("reasons") or [])[:MAX_REASONS],
        "reasons_total": len(outcome.get("reasons") or []),
        "counts": outcome.get("counts") or {},
        "failed_checks": failed,
        # Store key of the run's GX Data Docs index.html; None when they were not built (see data_docs.error).
        "data_docs": (outcome.get("data_docs") or {}).get("index"),
        "data_docs_error": (outcome.get("data_docs") or {}).get("error"),
        "drift": {
            "checked": bool(drift.get("checked")),
            "drifted": drift.get("drifted"),
            "threshold": threshold,
            "note": drift.get("note"),
            "features": sorted(features, key=lambda item: item["psi"], reverse=True),
        },
    }


def _lines(store: ObjectStore, key: str) -> Iterator[str]:
    """A stored CSV's lines, streamed: a night's predictions.csv is never held whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in iter_object(store, key):
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _cracks(reader: StoreReader, batch_id: str, row: dict[str, Any], count: int) -> tuple[list[dict[str, Any]], int]:
    """The ``count`` most probable cracks (rows labeled as the crack class), with their overlay keys.

    An overlay key is given when the PNG is stored, or when the batch kept tile scores to draw it from:
    the view draws it on the first request (``overlays.overlay_for_key``).
    """
    key = layout.results_key(batch_id, layout.PREDICTIONS)
    crack_class = _crack_class(reader, batch_id)
    best: list[tuple[float, int, dict[str, str]]] = []
    total = 0
    try:
        for index, prediction in enumerate(csv.DictReader(_lines(reader.store, key))):
            if prediction.get("status") != "ok" or not _is_crack(prediction, crack_class):
                continue
            total += 1
            probability = _float(prediction.get("crack_probability"))
            item = (probability if probability is not None else -1.0, -index, prediction)
            if len(best) < count:
                heapq.heappush(best, item)
            elif count:
                heapq.heappushpop(best, item)
    except Exception as error:  # a missing or broken predictions.csv leaves the rest of the page
        reader.note(f"cannot read {key}: {error}")
        return [], 0
    cracks = []
    drawable: bool | None = None  # asked once, and only if some overlay is not stored yet
    for probability, _, prediction in sorted(best, key=lambda item: (item[0], item[1]), reverse=True):
        object_key = prediction.get("key", "")
        overlay_key, *legacy = layout.overlay_keys(batch_id, object_key)
        overlay: str | None = overlay_key
        if not reader.exists(overlay_key):
            if legacy and reader.exists(legacy[0]):
                overlay = legacy[0]  # stored before folders named like overlay files were escaped (and not since)
            else:
                if drawable is None:
                    drawable = _can_draw(reader, batch_id)
                overlay = overlay_key if drawable else None
        cracks.append(
            {
                "key": object_key,
                "name": layout.relative_to_batch(object_key, batch_id),
                "crack_probability": probability if probability >= 0 else None,
                "threshold": _float(prediction.get("threshold")),
                "tile_count": prediction.get("tile_count") or None,
                "overlay": overlay,
            }
        )
    return cracks, total


def _can_draw(reader: StoreReader, batch_id: str) -> bool:
    try:
        return has_tile_scores(reader.store, batch_id)
    except Exception as error:  # an unreadable summary or listing leaves the rest of the page
        reader.note(f"cannot look for the tile scores of {batch_id}: {error}")
        return False


def _crack_class(reader: StoreReader, batch_id: str) -> str | None:
    summary = reader.json(layout.results_key(batch_id, layout.SUMMARY), BATCH_SUMMARY) or {}
    return summary.get("crack_class")


def _is_crack(prediction: dict[str, str], crack_class: str | None) -> bool:
    if crack_class:
        return prediction.get("label") == crack_class
    probability, threshold = _float(prediction.get("crack_probability")), _float(prediction.get("threshold"))
    return probability is not None and threshold is not None and probability >= threshold


def _quarantined(reader: StoreReader, batch_id: str, count: int) -> tuple[list[dict[str, Any]], int]:
    key = layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST)
    document = reader.json(key)
    if document is None:
        return [], 0
    try:
        entries = QuarantineManifest.from_dict(document, source=key).entries
    except (CrackModelError, KeyError, TypeError) as error:
        reader.note(f"cannot read {key}: {error}")
        return [], 0
    listed = [
        {
            "key": entry.key,
            "name": layout.relative_to_batch(entry.key, batch_id),
            "reasons": entry.reasons,
            "copy_key": entry.quarantine_key,
        }
        for entry in entries[:count]
    ]
    return listed, len(entries)


def _first_known(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
