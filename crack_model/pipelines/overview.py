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

import re
from itertools import islice
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.documents import FORMAT_VERSION, unsettled_objects
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore, join_key
from crack_model.core.storage import open_store
from crack_model.pipelines.document_shapes import BATCH_SUMMARY, RUN_SUMMARY, VALIDATION_OUTCOME
from crack_model.pipelines.overview_registry import registry_section
from crack_model.pipelines.store_reader import StoreReader

log = module_logger(__name__)

DEFAULT_NAME = "crack"
MAX_COUNTED_UPLOADS = 10_000  # a batch not validated yet: its uploads are counted up to this many
MAX_REASONS = 10


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
        limit: at most this many candidates (the highest version ids) and batches (those the last ``runs``
            nightly runs validated, failed or scored first, whatever their names; then the highest ids, digits
            compared as numbers: by convention batch ids start with a date).
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
    reader = StoreReader(store)
    registry = registry_section(reader, name, limit)
    batch_ids = _batch_ids(reader)
    recent_runs = _runs(reader, runs)
    return {
        "format_version": FORMAT_VERSION,
        "store": store.uri,
        "model_name": name,
        "generated_at": utc_now(),
        "champion": registry["champion"],
        "challenger": registry["challenger"],
        "candidates": registry["candidates"],
        "versions_total": registry["versions_total"],
        "batches": _batches(reader, _shown_batches(batch_ids, recent_runs, limit), overlays),
        "batches_total": len(batch_ids),
        "runs": recent_runs,
        "problems": reader.problems,
    }


def _batch_ids(reader: StoreReader) -> list[str]:
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
        outcome = reader.json(join_key(layout.VALIDATION, batch_id, layout.OUTCOME), VALIDATION_OUTCOME)
        if outcome is not None and outcome.get("suite") == "incoming":
            ids.add(batch_id)
    valid = []
    for batch_id in ids:
        try:
            valid.append(layout.validate_batch_id(batch_id))
        except CrackModelError:
            continue
    return sorted(valid, key=lambda batch_id: (natural_order(batch_id), batch_id), reverse=True)  # ties: run-07


def natural_order(batch_id: str) -> tuple[tuple[int, int | str], ...]:
    """Digits compared as numbers: ``site-7_run-10`` after ``site-7_run-9``; a date's order is unchanged."""
    return tuple((1, int(part)) if part.isdigit() else (0, part) for part in re.split(r"(\d+)", batch_id) if part)


def _shown_batches(batch_ids: list[str], runs: list[dict[str, Any]], limit: int) -> list[str]:
    """The batches the last run touched, its failures first (whatever their names), in at most half the rows;
    then the highest ids (a batch uploaded since, not run yet, among them)."""
    known = set(batch_ids)
    last = runs[0] if runs else {"batches": [], "batches_failed": []}
    touched = [batch_id for batch_id in (*last["batches_failed"], *last["batches"]) if batch_id in known]
    shown = list(dict.fromkeys(touched))[: max(1, limit // 2)]
    return shown + [batch_id for batch_id in batch_ids if batch_id not in shown][: limit - len(shown)]


def _batches(reader: StoreReader, batch_ids: list[str], overlays: int) -> list[dict[str, Any]]:
    rows = [batch_row(reader, batch_id, overlays) for batch_id in batch_ids]
    # Most recent activity first; never-touched uploads (no time yet) after, by id.
    return sorted(rows, key=lambda row: row["last_activity"] or "", reverse=True)


def batch_row(reader: StoreReader, batch_id: str, overlays: int) -> dict[str, Any]:
    """One batch as the overview shows it: state, validation, counts, crack rate, drift, links (store keys)."""
    outcome = reader.json(layout.validation_key(batch_id, layout.OUTCOME), VALIDATION_OUTCOME)
    complete = reader.exists(layout.results_key(batch_id, layout.SUCCESS))
    summary = reader.json(layout.results_key(batch_id, layout.SUMMARY), BATCH_SUMMARY) if complete else None
    counts = (outcome or {}).get("counts") or {}
    drift = (outcome or {}).get("drift") or {}
    psi = drift.get("psi") or {}

    # Uploads after validation or replaced since: the workflow validates and scores it again (awaits_revalidation).
    unsettled = unsettled_objects(summary or {})
    if complete and not unsettled:
        state = "scored"
    elif outcome is not None and outcome.get("outcome") == "failed":
        state = "failed validation"
    elif complete:
        state = "awaiting revalidation"
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
        # The run's GX Data Docs index.html, as outcome.json records it (None: not built, or an older run).
        "data_docs": ((outcome or {}).get("data_docs") or {}).get("index"),
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
        "late_objects": (summary or {}).get("late_objects"),
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


def _has_objects(reader: StoreReader, prefix: str) -> bool:
    try:
        return next(iter(reader.store.list(prefix + "/")), None) is not None
    except Exception as error:
        reader.note(f"cannot list {prefix}/: {error}")
        return False


def _count_uploads(reader: StoreReader, batch_id: str) -> tuple[int | None, bool]:
    try:
        listed = islice(reader.store.list(layout.incoming_prefix(batch_id)), MAX_COUNTED_UPLOADS + 1)
        count = sum(1 for info in listed if not layout.is_marker(info.key))
    except Exception as error:
        reader.note(f"cannot list the uploads of {batch_id}: {error}")
        return None, False
    return min(count, MAX_COUNTED_UPLOADS), count > MAX_COUNTED_UPLOADS


def _overlay_keys(reader: StoreReader, batch_id: str, count: int) -> list[str]:
    try:
        return [info.key for info in islice(reader.store.list(layout.results_key(batch_id, "overlays") + "/"), count)]
    except Exception as error:
        reader.note(f"cannot list the overlays of {batch_id}: {error}")
        return []


# A run id's logical date (Airflow's <kind>__<date>): a run id without one ("rerun-site7", a name chosen at trigger
# time) sorted after every date, so it stayed among the last runs for good.
_LOGICAL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def run_sort_key(key: str) -> str:
    """Orders ``runs/<run_id>.json`` keys by logical date (run ids are ``<kind>__<logical date>``)."""
    # manual__2026-11-24T02_00..., scheduled__...: the part after the kind is the date.
    stem = key.rsplit("/", 1)[-1].removesuffix(".json")
    return stem.split("__", 1)[-1]


def run_keys(reader: StoreReader) -> list[str]:
    """Every ``runs/*.json`` key, oldest logical date first (empty, and a noted problem, if unlisted)."""
    try:
        keys = [info.key for info in reader.store.list(layout.RUNS + "/") if info.key.endswith(".json")]
    except Exception as error:
        reader.note(f"cannot list {layout.RUNS}/: {error}")
        return []
    order = {key: run_sort_key(key) for key in keys}
    for key, logical in order.items():
        if not _LOGICAL_DATE.match(logical):  # a run id someone chose ("rerun-site7"): when it finished
            order[key] = str((reader.json(key, RUN_SUMMARY) or {}).get("finished_at") or "")
    return sorted(keys, key=lambda key: (order[key], key))


def _runs(reader: StoreReader, count: int) -> list[dict[str, Any]]:
    if count == 0:
        return []
    rows = []
    for key in list(reversed(run_keys(reader)))[:count]:
        document = reader.json(key, RUN_SUMMARY)
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
                # every batch the run touched, and those that failed a step or validation: the batches shown
                "batches": [
                    *(validation.get("batch_id") for validation in document.get("validations") or []),
                    *(document.get("batches_scored") or []),
                ],
                "batches_failed": [
                    *(document.get("failed_batches") or {}),
                    *(document.get("batches_failed_validation") or []),
                ],
            }
        )
    return sorted(rows, key=lambda row: row["finished_at"] or "", reverse=True)
