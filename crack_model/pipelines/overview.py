"""What an operator needs to see at a glance: the champion, recent candidates, batches and nightly runs.

``overview`` reads the store the workflow writes (see ``layout``) and returns one JSON-ready
dict; the Airflow ops view renders it and serves the files it links to. Everything is
optional: a store with no registry yet, a batch validated but never scored, a half-written
batch or an unreadable document gives a row with what is known (and a line in ``problems``),
never an error page.

Links are store keys (``validation/<batch>/report.html``, ``results/<batch>/predictions.csv``,
...); ``viewable`` says which keys the view may serve, and how.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from itertools import islice
from pathlib import PurePosixPath
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.errors import CrackModelError
from crack_model.core.storage import LocalStore, ObjectStore, S3Store, join_key, open_store, validate_key
from crack_model.registry.audit_log import AuditEntry
from crack_model.registry.versions import GATE_HTML, GATE_REPORT, VERSION_MARKER, Registry

log = logging.getLogger(__name__)

DEFAULT_NAME = "crack"
# Holdout figures shown for the champion, in this order (crack recall first: a missed crack costs most).
CHAMPION_METRICS = ("crack_recall", "crack_precision", "accuracy")
RUNS_PREFIX = "runs"
MAX_COUNTED_UPLOADS = 10_000  # a batch not validated yet: its uploads are counted up to this many
MAX_REASONS = 10

_GATE_HTML = re.compile(
    r"^models/[A-Za-z0-9][A-Za-z0-9._-]{0,63}/versions/[A-Za-z0-9][A-Za-z0-9._+=-]{0,127}/gate_report\.html$"
)
_VALIDATION_REPORT = re.compile(r"^validation/[^/]+/report\.html$")
_INLINE_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".txt": "text/plain; charset=utf-8",
}
HTML_TYPE = "text/html; charset=utf-8"
DOWNLOAD_TYPE = "application/octet-stream"


def viewable(key: str) -> tuple[str, bool] | None:
    """May the ops view serve this key, and how? ``(content type, inline)``, or None to refuse.

    Served: anything under ``results/``, ``validation/`` and ``quarantine/``, and a model version's
    ``gate_report.html``. HTML is shown inline only for the reports the workflow writes; any other
    HTML (an upload named ``x.html`` copied to quarantine) and unknown types are downloads.
    """
    try:
        validate_key(key)
    except CrackModelError:
        return None
    top = key.split("/", 1)[0]
    if _GATE_HTML.match(key) or _VALIDATION_REPORT.match(key):
        return HTML_TYPE, True
    if top not in (layout.RESULTS, layout.VALIDATION, layout.QUARANTINE) or "/" not in key:
        return None
    suffix = PurePosixPath(key).suffix.lower()
    if suffix in _INLINE_TYPES:
        return _INLINE_TYPES[suffix], True
    return DOWNLOAD_TYPE, False


def iter_object(store: ObjectStore, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The object's bytes in chunks, without holding a large ``predictions.csv`` in memory."""
    if isinstance(store, LocalStore):
        if not store.exists(key):
            raise CrackModelError(f"object not found: {store.url(key)}")
        with open(store.url(key), "rb") as handle:
            while chunk := handle.read(chunk_size):
                yield chunk
    elif isinstance(store, S3Store):
        bucket, _, full_key = store.url(key).removeprefix("s3://").partition("/")
        body = store.client.get_object(Bucket=bucket, Key=full_key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()
    else:
        yield store.read(key)


# ------------------------------------------------------------------------------------ overview


class _Reader:
    """Small JSON documents from the store; a missing one is None, a broken one a noted problem."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.problems: list[str] = []

    def json(self, key: str) -> dict[str, Any] | None:
        try:
            if not self.store.exists(key):
                return None
            document = json.loads(self.store.read(key))
        except Exception as error:  # one unreadable document must not take the whole page down
            self.note(f"cannot read {key}: {error}")
            return None
        if not isinstance(document, dict):
            self.note(f"{key} is not a JSON object")
            return None
        return document

    def note(self, problem: str) -> None:
        log.warning("ops overview: %s", problem)
        self.problems.append(problem)


def overview(
    store_uri: str | ObjectStore,
    name: str = DEFAULT_NAME,
    limit: int = 20,
    *,
    runs: int = 5,
    overlays: int = 3,
) -> dict[str, Any]:
    """The champion, recent candidates, recent batches and the last nightly runs of one store.

    Args:
        store_uri: the workflow's store (a folder, ``file://`` or ``s3://bucket/prefix``) or an open store.
        name: the registered model's name.
        limit: at most this many candidates and batches (the highest version ids and batch ids:
            versions and, by convention, batch ids start with a date).
        runs: at most this many nightly run summaries (``runs/*.json``), newest first.
        overlays: link at most this many heat-map overlays per batch.

    Returns:
        ``{"store", "model_name", "generated_at", "champion", "challenger", "candidates",
        "versions_total", "batches", "batches_total", "runs", "problems"}``; link fields hold store keys.
    """
    if limit < 1 or runs < 0 or overlays < 0:
        raise CrackModelError(
            f"limit must be positive and runs, overlays not negative (got {limit}, {runs}, {overlays})"
        )
    store = open_store(store_uri) if isinstance(store_uri, str) else store_uri
    reader = _Reader(store)
    registry = _registry_section(reader, name, limit)
    batch_ids = _batch_ids(reader)
    return {
        "store": store.uri,
        "model_name": name,
        "generated_at": utc_now(),
        "champion": registry["champion"],
        "challenger": registry["challenger"],
        "candidates": registry["candidates"],
        "versions_total": registry["versions_total"],
        "batches": _batches(reader, batch_ids[:limit], overlays),
        "batches_total": len(batch_ids),
        "runs": _runs(reader, runs),
        "problems": reader.problems,
    }


def _registry_section(reader: _Reader, name: str, limit: int) -> dict[str, Any]:

    registry = Registry(reader.store)
    section: dict[str, Any] = {"champion": None, "challenger": None, "candidates": [], "versions_total": 0}
    try:
        state = registry.aliases(name)
        versions = registry.version_names(name)
    except Exception as error:  # e.g. a hand-edited aliases.json: show the rest, and say so
        reader.note(f"cannot read the registry under models/{name}/ (aliases.json, versions/): {error}")
        return section
    section["versions_total"] = len(versions)
    section["challenger"] = state.get("challenger")

    def key(version: str, file_name: str) -> str:
        return registry.version_key(name, version, file_name)

    documents: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]] = {}

    def version_documents(version: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if version not in documents:
            documents[version] = (reader.json(key(version, VERSION_MARKER)), reader.json(key(version, GATE_REPORT)))
        return documents[version]

    pointing: dict[str, list[str]] = {}
    for alias, version in state.aliases.items():
        if version:
            pointing.setdefault(version, []).append(alias)
    for version in sorted(versions, reverse=True)[:limit]:
        document, gate = version_documents(version)
        document = document or {}
        section["candidates"].append(
            {
                "version": version,
                "created_at": document.get("created_at"),
                "registered_at": document.get("registered_at"),
                "registered_by": document.get("registered_by"),
                "run_id": document.get("run_id"),
                "aliases": sorted(pointing.get(version, [])),
                "gate_decision": gate.get("decision") if gate else None,
                "gated_at": gate.get("finished_at") if gate else None,
                "compared_with": gate.get("champion_version") if gate else None,
                "failed_checks": list(gate.get("failed_checks") or []) if gate else [],
                "reasons": list(gate.get("reasons") or [])[:MAX_REASONS] if gate else [],
                "approved_runtimes": list(gate.get("approved_runtimes") or []) if gate else [],
                "links": {"gate_report": key(version, GATE_HTML) if gate else None},
            }
        )

    champion = state.get("champion")
    if champion:
        document, gate = version_documents(champion)
        section["champion"] = _champion(champion, document, gate, state.history)
        section["champion"]["links"] = {"gate_report": key(champion, GATE_HTML) if gate else None}
        if document is None:
            reader.note(f"the champion {champion} has no readable {VERSION_MARKER}")
    return section


def _champion(
    version: str, document: dict[str, Any] | None, gate: dict[str, Any] | None, history: list[AuditEntry]
) -> dict[str, Any]:
    document = document or {}
    card = document.get("card") or {}
    metrics: dict[str, dict[str, Any]] = {}
    source = None
    candidate = (gate or {}).get("candidate") or {}
    if candidate.get("metrics"):
        figures, intervals = candidate["metrics"], candidate.get("intervals") or {}
        holdout = (gate or {}).get("holdout") or {}
        images = figures.get("images") or holdout.get("images")
        source = f"holdout, {images} images ({candidate.get('runtime') or 'keras'}, at the gate)"
        confidence = (((gate or {}).get("policy") or {}).get("bootstrap") or {}).get("confidence")
        for metric in CHAMPION_METRICS:
            interval = intervals.get(metric) or [None, None]
            metrics[metric] = {"value": figures.get(metric), "low": interval[0], "high": interval[1]}
        extra = {field: figures.get(field) for field in ("images", "cracks", "missed_cracks", "false_alarms")}
    else:  # not gated (registered by hand): the training run's own test split, without intervals
        confidence = None
        figures = document.get("metrics") or {}
        if figures:
            source = f"{figures.get('split', 'test')} split, {figures.get('images')} images (training run)"
        for metric in CHAMPION_METRICS:
            metrics[metric] = {"value": figures.get(metric), "low": None, "high": None}
        extra = {"images": figures.get("images"), "cracks": None, "missed_cracks": None, "false_alarms": None}
    promotion = next(
        (entry for entry in reversed(history) if entry.alias == "champion" and entry.to_version == version), None
    )
    return {
        "version": version,
        "created_at": document.get("created_at") or card.get("created_at"),
        "registered_at": document.get("registered_at"),
        "threshold": card.get("threshold"),
        "metrics": metrics,
        "metrics_source": source,
        "confidence": confidence,
        **extra,
        "approved_runtimes": list((gate or {}).get("approved_runtimes") or []),
        "gate_decision": (gate or {}).get("decision"),
        "promoted_at": promotion.at if promotion else None,
        "promoted_by": promotion.actor if promotion else None,
        "promotion_event": promotion.event if promotion else None,
        "promotion_reason": promotion.reason if promotion else None,
        "promotion_run_id": promotion.run_id if promotion else None,
        "previous_champion": promotion.from_version if promotion else None,
    }


def _batch_ids(reader: _Reader) -> list[str]:
    """Batches anywhere in the layout, highest id first; ``validation/`` folders of other suites are left out."""
    store = reader.store
    try:
        incoming = set(store.folders(layout.INCOMING))
        results = set(store.folders(layout.RESULTS))
        validated = set(store.folders(layout.VALIDATION))
    except Exception as error:
        reader.note(f"cannot list the store's folders: {error}")
        return []
    ids = incoming | results
    for batch_id in validated - ids:  # e.g. validation/labeled: the training suite's report, not a batch
        outcome = reader.json(join_key(layout.VALIDATION, batch_id, layout.OUTCOME))
        if outcome is not None and outcome.get("suite") == "incoming":
            ids.add(batch_id)
    valid = []
    for batch_id in ids:
        try:
            valid.append(layout.validate_batch_id(batch_id))
        except CrackModelError:
            continue
    return sorted(valid, reverse=True)


def _batches(reader: _Reader, batch_ids: list[str], overlays: int) -> list[dict[str, Any]]:
    rows = [_batch(reader, batch_id, overlays) for batch_id in batch_ids]
    # Most recent activity first; never-touched uploads (no time yet) after, by id.
    return sorted(rows, key=lambda row: row["last_activity"] or "", reverse=True)


def _batch(reader: _Reader, batch_id: str, overlays: int) -> dict[str, Any]:
    outcome = reader.json(layout.validation_key(batch_id, layout.OUTCOME))
    complete = _exists(reader, layout.results_key(batch_id, layout.SUCCESS))
    summary = reader.json(layout.results_key(batch_id, layout.SUMMARY)) if complete else None
    counts = (outcome or {}).get("counts") or {}
    drift = (outcome or {}).get("drift") or {}
    psi = drift.get("psi") or {}

    if complete:
        state = "scored"
    elif outcome is not None and outcome.get("outcome") == "failed":
        state = "failed validation"
    elif _has_objects(reader, layout.results_key(batch_id)):
        state = "scoring"  # shards have written parts, the batch is not finalised yet
    elif outcome is not None:
        state = "validated"
    else:
        state = "waiting"

    objects = (summary or {}).get("objects", counts.get("objects"))
    uploads_truncated = False
    if objects is None:
        objects, uploads_truncated = _count_uploads(reader, batch_id)

    links: dict[str, Any] = {
        "validation_report": layout.validation_key(batch_id, "report.html") if outcome else None,
        "predictions": layout.results_key(batch_id, layout.PREDICTIONS) if complete else None,
        "summary": layout.results_key(batch_id, layout.SUMMARY) if summary else None,
        "quarantine": layout.quarantine_key(batch_id, layout.QUARANTINE_MANIFEST)
        if counts.get("quarantined")
        else None,
        "overlays": _overlay_keys(reader, batch_id, overlays) if complete and overlays else [],
    }
    finished_at = (summary or {}).get("finished_at")
    validated_at = (outcome or {}).get("validated_at")
    return {
        "batch_id": batch_id,
        "state": state,
        "validation": None
        if outcome is None
        else {
            "outcome": outcome.get("outcome"),
            "reasons": list(outcome.get("reasons") or [])[:MAX_REASONS],
            "validated_at": validated_at,
            "counts": counts,
        },
        "outcome": (outcome or {}).get("outcome"),
        "objects": objects,
        "uploads_truncated": uploads_truncated,
        "quarantined": counts.get("quarantined"),
        "status_counts": (summary or {}).get("status_counts"),
        "label_counts": (summary or {}).get("label_counts"),
        "cracks": (summary or {}).get("cracks"),
        "crack_rate": (summary or {}).get("crack_rate"),
        "drift": {
            "checked": bool(drift.get("checked")),
            "drifted": drift.get("drifted"),
            "max_psi": max(psi.values()) if psi else None,
            "drifted_features": list(drift.get("drifted_features") or []),
            "threshold": drift.get("threshold"),
            "note": drift.get("note"),
        },
        "model_version": (summary or {}).get("model_version"),
        "runtime": (summary or {}).get("runtime"),
        "throughput_images_per_second": (summary or {}).get("throughput_images_per_second"),
        "scoring_seconds": (summary or {}).get("scoring_seconds"),
        "finished_at": finished_at,
        "validated_at": validated_at,
        "last_activity": max(filter(None, (finished_at, validated_at)), default=None),
        "links": links,
    }


def _exists(reader: _Reader, key: str) -> bool:
    try:
        return reader.store.exists(key)
    except Exception as error:
        reader.note(f"cannot check {key}: {error}")
        return False


def _has_objects(reader: _Reader, prefix: str) -> bool:
    try:
        return next(iter(reader.store.list(prefix + "/")), None) is not None
    except Exception as error:
        reader.note(f"cannot list {prefix}/: {error}")
        return False


def _count_uploads(reader: _Reader, batch_id: str) -> tuple[int | None, bool]:
    try:
        listed = islice(reader.store.list(layout.incoming_prefix(batch_id)), MAX_COUNTED_UPLOADS + 1)
        count = sum(1 for info in listed if not layout.is_marker(info.key))
    except Exception as error:
        reader.note(f"cannot list the uploads of {batch_id}: {error}")
        return None, False
    return min(count, MAX_COUNTED_UPLOADS), count > MAX_COUNTED_UPLOADS


def _overlay_keys(reader: _Reader, batch_id: str, count: int) -> list[str]:
    try:
        return [info.key for info in islice(reader.store.list(layout.results_key(batch_id, "overlays") + "/"), count)]
    except Exception as error:
        reader.note(f"cannot list the overlays of {batch_id}: {error}")
        return []


def _run_sort_key(key: str) -> str:
    # Run ids are "<kind>__<logical date>" (manual__2026-11-24T02_00..., scheduled__...): the date orders them.
    stem = key.rsplit("/", 1)[-1].removesuffix(".json")
    return stem.split("__", 1)[-1]


def _runs(reader: _Reader, count: int) -> list[dict[str, Any]]:
    if count == 0:
        return []
    try:
        keys = [info.key for info in reader.store.list(RUNS_PREFIX + "/") if info.key.endswith(".json")]
    except Exception as error:
        reader.note(f"cannot list {RUNS_PREFIX}/: {error}")
        return []
    rows = []
    for key in sorted(keys, key=_run_sort_key, reverse=True)[:count]:
        document = reader.json(key)
        if document is None:
            continue
        rows.append(
            {
                "run_id": document.get("run_id"),
                "finished_at": document.get("finished_at"),
                "batches_validated": document.get("batches_validated"),
                "batches_failed_validation": list(document.get("batches_failed_validation") or []),
                "batches_with_quarantine": list(document.get("batches_with_quarantine") or []),
                "batches_scored": list(document.get("batches_scored") or []),
                "objects_scored": document.get("objects_scored"),
                "cracks": document.get("cracks"),
            }
        )
    return sorted(rows, key=lambda row: row["finished_at"] or "", reverse=True)
