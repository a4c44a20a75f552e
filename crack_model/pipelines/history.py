"""Trends over the last nightly runs: volume, crack rate, error and quarantine rates, throughput, drift, champion.

``history`` reads ``runs/*.json`` (one ``RunSummary`` per nightly run), the ``BatchSummary`` of each
batch a run scored, the validation outcome of each batch it validated (the worst drift PSI) and
the registry's audit log (which version was champion when), and returns one JSON-ready point
per night, oldest first, plus the champion's reign as bands over those points. The ops view
draws them as inline SVG. A missing or unreadable document leaves a gap (None) and a line in
``problems``, never an error.

A batch's summary is the one in the store now: a batch scored again later (late or replaced uploads) shows
its latest figures on the night that first scored it, and is named under ``scored_again`` on the later one.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.concurrency import map_bounded
from crack_model.core.documents import FORMAT_VERSION, BatchSummary, RunSummary
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import open_store
from crack_model.pipelines.document_shapes import BATCH_SUMMARY, RUN_SUMMARY, VALIDATION_OUTCOME
from crack_model.pipelines.overview import DEFAULT_NAME, run_keys
from crack_model.pipelines.store_reader import StoreReader
from crack_model.registry.audit_log import CHAMPION
from crack_model.registry.versions import Registry

DEFAULT_NIGHTS = 14
READ_WORKERS = 16
MAX_NIGHTS = 366


def history(store_uri: str | ObjectStore, name: str = DEFAULT_NAME, nights: int = DEFAULT_NIGHTS) -> dict[str, Any]:
    """One point per nightly run of the last ``nights`` runs, oldest first.

    Args:
        store_uri: the workflow's store (a folder, ``file://`` or ``s3://bucket/prefix``) or an open store.
        name: the registered model whose champion the bands show.
        nights: how many of the latest runs (by logical date), 1 to ``MAX_NIGHTS``.

    Returns:
        ``{"format_version", "store", "model_name", "generated_at", "nights", "runs_total", "points",
        "bands", "drift_threshold", "problems"}``. Each point: ``run_id``, ``finished_at``, ``night``
        (its date), ``objects``, ``scored``, ``cracks``, ``crack_rate``, ``errors``, ``error_rate``,
        ``quarantined``, ``quarantine_rate``, ``throughput_images_per_second``, ``max_psi``,
        ``drifted``, ``champion`` and ``batches`` (the same figures per batch). Each band:
        ``version``, ``first`` and ``last`` (point indexes), ``since`` (when it became champion).
    """
    if not 1 <= nights <= MAX_NIGHTS:
        raise CrackModelError(f"nights must be between 1 and {MAX_NIGHTS} (got {nights})")
    store = open_store(store_uri) if isinstance(store_uri, str) else store_uri
    reader = StoreReader(store)
    keys = run_keys(reader)
    reigns = _champion_changes(reader, name)
    thresholds: set[float] = set()
    # Every night's documents at once, not night after night: a night holds a batch or two, and the 366 nights a
    # page may show were 2,300 requests one after another on S3 (22 s on moto, about a minute on S3).
    shown = keys[-nights:]
    documents = map_bounded(lambda key: reader.json(key, RUN_SUMMARY), shown, workers=READ_WORKERS,
                            thread_name_prefix="history")  # fmt: skip
    nights_read: list[tuple[RunSummary, list[str], list[str]]] = []
    counted: set[str] = set()  # batches scored on an earlier night of these: counted there, once
    for key, document in zip(shown, documents, strict=True):
        if document is None:
            continue
        try:
            run = RunSummary.from_dict(document, source=key)
        except (CrackModelError, TypeError, ValueError) as error:  # e.g. a format_version that is no number
            reader.note(str(error))
            continue
        nights_read.append((run, *_night_batches(reader, run, counted)))
        counted.update(run.batches_scored)
    wanted = [(run, batch_id) for run, named, _ in nights_read for batch_id in named]

    def read_batch(item: tuple[RunSummary, str]) -> dict[str, Any]:
        run, batch_id = item
        validations = {str(entry.get("batch_id")): entry for entry in run.validations if entry.get("batch_id")}
        return _batch(reader, batch_id, validations.get(batch_id), batch_id in run.batches_scored, thresholds)

    batches = iter(map_bounded(read_batch, wanted, workers=READ_WORKERS, thread_name_prefix="history"))
    points = [_night(run, [next(batches) for _ in named], again, reigns) for run, named, again in nights_read]
    points.sort(key=lambda point: point["finished_at"] or "")
    return {
        "format_version": FORMAT_VERSION,
        "store": store.uri,
        "model_name": name,
        "generated_at": utc_now(),
        "nights": nights,
        "runs_total": len(keys),
        "points": points,
        "bands": _bands(points, reigns),
        "drift_threshold": min(thresholds) if thresholds else None,
        "problems": reader.problems,
    }


def _champion_changes(reader: StoreReader, name: str) -> list[tuple[str, str]]:
    """(when, version) of every change of the champion alias, oldest first (empty without a registry)."""
    try:
        entries = Registry(reader.store).history(name)
    except Exception as error:  # an inconsistent audit log: the bands fall back to the scoring model
        reader.note(f"cannot read the audit log of model {name}: {error}")
        return []
    return sorted((entry.at, entry.to_version) for entry in entries if entry.alias == CHAMPION and entry.at)


def _champion_at(reigns: list[tuple[str, str]], moment: str | None) -> str | None:
    if not moment or not reigns:
        return None
    index = bisect.bisect_right([at for at, _ in reigns], moment)
    return reigns[index - 1][1] if index else None


def _night_batches(reader: StoreReader, run: RunSummary, counted: set[str]) -> tuple[list[str], list[str]]:
    """The batches of one night's point, and those an earlier night of these scored (brought back by late or
    replaced uploads): that night shows their latest figures; counted on both, their objects would count twice."""
    validations = {str(entry.get("batch_id")) for entry in run.validations if entry.get("batch_id")}
    again = sorted(batch_id for batch_id in set(run.batches_scored) if batch_id in counted)
    named = []
    for batch_id in sorted((validations | set(run.batches_scored)) - set(again)):
        try:
            named.append(layout.validate_batch_id(batch_id))
        except CrackModelError:
            reader.note(f"run {run.run_id} names an invalid batch id {batch_id!r}")
    return named, again


def _night(
    run: RunSummary, batches: list[dict[str, Any]], again: list[str], reigns: list[tuple[str, str]]
) -> dict[str, Any]:
    """One night's point, of its batches' figures (``_batch``)."""
    totals: Counter[str] = Counter()
    seconds = 0.0
    for batch in batches:
        for field in ("objects", "scored", "ok", "cracks", "errors", "quarantined"):
            totals[field] += batch[field] or 0
        if batch["scored"] is not None:  # errors are a share of what went to scoring, not of failed batches
            totals["objects_in_scored_batches"] += batch["objects"] or 0
        seconds += batch.pop("scoring_seconds") or 0.0
    psi = [batch["max_psi"] for batch in batches if batch["max_psi"] is not None]
    versions = Counter(batch["model_version"] for batch in batches if batch["model_version"])
    return {
        "run_id": run.run_id,
        "finished_at": run.finished_at,
        "night": run.finished_at[:10] if run.finished_at else None,
        "objects": totals["objects"],
        "scored": totals["scored"],
        "cracks": totals["cracks"],
        "crack_rate": _ratio(totals["cracks"], totals["ok"]),
        "errors": totals["errors"],
        "error_rate": _ratio(totals["errors"], totals["objects_in_scored_batches"]),
        "quarantined": totals["quarantined"],
        "quarantine_rate": _ratio(totals["quarantined"], totals["objects"]),
        "throughput_images_per_second": round(totals["scored"] / seconds, 2) if seconds > 0 else None,
        "max_psi": max(psi) if psi else None,
        "drifted": any(batch["drifted"] for batch in batches),
        "failed_batches": sorted(run.failed_batches),
        "scored_again": again,
        "champion": _champion_at(reigns, run.finished_at) or (versions.most_common(1)[0][0] if versions else None),
        "batches": batches,
    }


def _batch(
    reader: StoreReader, batch_id: str, validation: dict[str, Any] | None, scored: bool, thresholds: set[float]
) -> dict[str, Any]:
    summary = _summary(reader, batch_id) if scored else None
    outcome = (
        reader.json(layout.validation_key(batch_id, layout.OUTCOME), VALIDATION_OUTCOME)
        if validation is not None
        else None
    )
    drift = (outcome or {}).get("drift") or {}
    psi = [float(value) for value in (drift.get("psi") or {}).values() if value is not None]
    if drift.get("threshold") is not None:
        thresholds.add(float(drift["threshold"]))
    statuses = (summary.status_counts or {}) if summary else {}
    counts = (outcome or {}).get("counts") or {}
    validated = validation or {}
    objects = summary.objects if summary else validated.get("objects", counts.get("objects"))
    quarantined = statuses.get("quarantined") if summary else validated.get("quarantined", counts.get("quarantined"))
    return {
        "batch_id": batch_id,
        "outcome": validated.get("outcome"),
        "objects": objects,
        "scored": summary.objects_scored if summary else None,
        "ok": statuses.get("ok") if summary else None,
        "cracks": summary.cracks if summary else None,
        "crack_rate": summary.crack_rate if summary else None,
        "errors": statuses.get("error", 0) if summary else None,
        "quarantined": quarantined,
        "quarantine_rate": _ratio(quarantined, objects),
        "throughput_images_per_second": summary.throughput_images_per_second if summary else None,
        "scoring_seconds": summary.scoring_seconds if summary else None,
        "max_psi": max(psi) if psi else None,
        "drifted": bool(drift.get("drifted")) or bool(validated.get("drifted")),
        "model_version": summary.model_version if summary else None,
    }


def _summary(reader: StoreReader, batch_id: str) -> BatchSummary | None:
    key = layout.results_key(batch_id, layout.SUMMARY)
    document = reader.json(key, BATCH_SUMMARY)
    if document is None:
        reader.note(f"batch {batch_id} was scored but has no readable {key}")
        return None
    try:
        return BatchSummary.from_dict(document, source=key)
    except (CrackModelError, TypeError, ValueError) as error:  # e.g. a format_version that is no number
        reader.note(str(error))
        return None


def _bands(points: list[dict[str, Any]], reigns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Runs of consecutive points under one champion, each with when that version became champion."""
    bands: list[dict[str, Any]] = []
    for index, point in enumerate(points):
        version = point["champion"]
        if bands and bands[-1]["version"] == version:
            bands[-1]["last"] = index
            continue
        since = next((at for at, to_version in reversed(reigns) if to_version == version
                      and at <= (point["finished_at"] or "")), None)  # fmt: skip
        bands.append({"version": version, "first": index, "last": index, "since": since})
    return bands


def _ratio(part: int | None, whole: int | None) -> float | None:
    return round(part / whole, 6) if part is not None and whole else None
