"""Which alerts a nightly run or a gate decision raises, and which of them still have to go out.

Deciding is plain Python on the documents the workflow already writes (the run summary, the
batches' ``summary.json`` and ``outcome.json``, the gate decision); sending is the Airflow plugin's
job (``crack_ops.notifications``: the HTTP and SMTP providers' notifiers on Connections).

Kinds, each at most once per run and subject:

* ``batch_failed_validation``: a batch of the run failed its suite (and was not released);
* ``drift``: a validated batch has a feature whose PSI is above the validation's threshold;
* ``scoring_errors``: a batch finished with more than ``error_rate_alert`` of its scored rows
  (``ok`` + ``error``) in ``error``;
* ``unreadable_document``: a batch's ``outcome.json`` or ``summary.json`` the alerts could not read (the store
  refused or did not answer, the JSON is damaged), so its drift or scoring-error alert could not be decided, or its
  ``_SUCCESS``, so no night picks it up (raised by every run until it can be read); one per document, naming its key
  and the error (the night's other alerts go out all the same);
* ``batch_rescored``: a batch merged with another model version or tile budget than the rows it replaced (a
  promotion or a new budget before a night that reopened it for a late, replaced or gone upload: the resume state
  is per version, and a shard scored with another budget starts over, so every upload was scored again), with how
  many labels flipped;
* ``batch_settled``: a merged batch whose uploads are all gone (deleted, or its folder moved away) was settled
  with no rows (``settle_emptied_batch``), naming its folder and how many rows were dropped;
* ``unusable_incoming``: ``incoming`` itself cannot be listed (a symbolic link, a file), so no night finds a batch
  (raised by every run until it is a folder);
* ``unusable_batch_folder``: a folder under ``incoming/`` whose name is not a batch id, so no night
  scores it (raised by every run until it is renamed);
* ``upload_outside_batch``: uploads put straight into ``incoming/``, in no batch folder (one alert naming
  the first few, every run, until they are moved into one);
* ``candidate_rejected``: the gate rejected a candidate (kept under ``models/<name>/notifications/``
  by ``retraining.record_gate_notification``, as before).

The nightly alerts of a run are kept in ``alerts/<run_id>.json`` with the channels each went out
through, so a retried task sends nothing twice (``alert_records``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from crack_model.core import layout
from crack_model.core.errors import CrackModelError, described
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore, shown_key
from crack_model.core.storage import folder_problem, open_store
from crack_model.core.uploads import unusable_batch_folders, uploads_outside_batches
from crack_model.pipelines.batch_states import SETTLED, UnreadableState, unreadable_batch_states
from crack_model.pipelines.stores import StoreLike

log = module_logger(__name__)

BATCH_FAILED_VALIDATION = "batch_failed_validation"
DRIFT = "drift"
SCORING_ERRORS = "scoring_errors"
UNREADABLE_DOCUMENT = "unreadable_document"
BATCH_RESCORED = "batch_rescored"
BATCH_SETTLED = "batch_settled"
UNUSABLE_INCOMING = "unusable_incoming"
UNUSABLE_BATCH_FOLDER = "unusable_batch_folder"
UPLOAD_OUTSIDE_BATCH = "upload_outside_batch"
CANDIDATE_REJECTED = "candidate_rejected"
KINDS = (
    BATCH_FAILED_VALIDATION, DRIFT, SCORING_ERRORS, UNREADABLE_DOCUMENT, BATCH_RESCORED, BATCH_SETTLED,
    UNUSABLE_INCOMING, UNUSABLE_BATCH_FOLDER, UPLOAD_OUTSIDE_BATCH, CANDIDATE_REJECTED,
)  # fmt: skip
DEFAULT_ERROR_RATE_ALERT = 0.05
MAX_REASONS = 10


@dataclass(frozen=True)
class Alert:
    """One thing someone must hear about: ``kind``, what it is about (``subject``), a one-line ``title``."""

    kind: str
    subject: str
    title: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        return f"{self.kind}:{self.subject}"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.alert_id, **asdict(self)}


def check_error_rate(error_rate_alert: float) -> float:
    """The alert rate as a float in [0, 1), or a CrackModelError saying what to pass."""
    rate = float(error_rate_alert)
    if not 0 <= rate < 1:
        msg = f"error_rate_alert must be a share of the scored rows in [0, 1), e.g. 0.05; got {error_rate_alert!r}"
        raise CrackModelError(msg)
    return rate


def nightly_alerts(
    run_summary: Mapping[str, Any],
    batch_summaries: Iterable[Mapping[str, Any]],
    outcomes: Mapping[str, Mapping[str, Any]],
    *,
    error_rate_alert: float = DEFAULT_ERROR_RATE_ALERT,
) -> list[Alert]:
    """The alerts of one nightly run (no I/O).

    Args:
        run_summary: the run's ``runs/<run_id>.json`` (``RunSummary.as_dict()``).
        batch_summaries: the ``summary.json`` of each batch the run finished.
        outcomes: batch id -> its ``validation/<batch>/outcome.json`` (batches without one are skipped).
        error_rate_alert: alert when ``error / (ok + error)`` of a finished batch is above this.

    Returns:
        Failed validations first, then drift, then scoring errors, then batches scored again by a new model,
        then batches settled with their uploads all gone, each in batch order.
    """
    rate = check_error_rate(error_rate_alert)
    released = set(run_summary.get("batches_released") or ())
    validations = sorted(run_summary.get("validations") or [], key=lambda item: str(item["batch_id"]))
    alerts = [
        _failed_validation(validation, outcomes.get(validation["batch_id"]))
        for validation in validations
        if validation.get("outcome") == "failed" and validation["batch_id"] not in released
    ]
    for validation in validations:
        drift = _drift(validation["batch_id"], outcomes.get(validation["batch_id"]))
        if drift is not None:
            alerts.append(drift)
    finished = sorted(batch_summaries, key=lambda item: str(item["batch_id"]))
    for summary in finished:
        errors = _scoring_errors(summary, rate)
        if errors is not None:
            alerts.append(errors)
    alerts += [_rescored(summary) for summary in finished if summary.get("rescored_from")]
    return alerts + [_settled(validation) for validation in validations if validation.get("outcome") == SETTLED]


def release_advice(batch_id: str) -> str:
    """How an operator has a batch that failed validation scored anyway: the run that scores it records the release."""
    return (f'trigger crack_nightly_scoring with batch_ids=["{batch_id}"], release_batches=["{batch_id}"] to score '
            "it anyway")  # fmt: skip


def _failed_validation(validation: Mapping[str, Any], outcome: Mapping[str, Any] | None) -> Alert:
    batch_id = str(validation["batch_id"])
    reasons = list((outcome or {}).get("reasons") or validation.get("reasons") or [])
    first = reasons[0] if reasons else "see the validation report"
    return Alert(
        BATCH_FAILED_VALIDATION,
        batch_id,
        f"batch {batch_id} failed validation and was not scored: {first}",
        {
            "batch_id": batch_id,
            "objects": validation.get("objects"),
            "reasons": reasons[:MAX_REASONS],
            "reasons_total": len(reasons),
            "report": layout.validation_key(batch_id, "report.html"),
            "data_docs": ((outcome or {}).get("data_docs") or {}).get("index"),
            "release_with": release_advice(batch_id),
        },
    )


def _drift(batch_id: str, outcome: Mapping[str, Any] | None) -> Alert | None:
    drift = (outcome or {}).get("drift") or {}
    threshold = drift.get("threshold")
    if not drift.get("checked") or threshold is None:
        return None
    over = {name: psi for name, psi in (drift.get("psi") or {}).items() if psi is not None and psi > threshold}
    if not over:
        return None
    shown = ", ".join(f"{name} PSI {psi:.2f}" for name, psi in sorted(over.items(), key=lambda item: -item[1]))
    return Alert(
        DRIFT,
        batch_id,
        f"batch {batch_id} drifted from the training data: {shown} (threshold {threshold})",
        {
            "batch_id": batch_id,
            "psi": over,
            "threshold": threshold,
            "images": drift.get("images"),
            "note": drift.get("note"),
            "outcome": (outcome or {}).get("outcome"),
        },
    )


def _scoring_errors(summary: Mapping[str, Any], rate: float) -> Alert | None:
    counts = summary.get("status_counts") or {}
    ok, errors = int(counts.get("ok", 0)), int(counts.get("error", 0))
    if ok + errors == 0 or errors / (ok + errors) <= rate:
        return None
    batch_id = str(summary["batch_id"])
    share = errors / (ok + errors)
    return Alert(
        SCORING_ERRORS,
        batch_id,
        f"batch {batch_id}: {errors} of {ok + errors} scored objects failed ({share:.1%}, alert above {rate:.1%})",
        {
            "batch_id": batch_id,
            "errors": errors,
            "ok": ok,
            "error_rate": round(share, 6),
            "error_rate_alert": rate,
            "model_version": summary.get("model_version"),
            "predictions": layout.results_key(batch_id, layout.PREDICTIONS),
        },
    )


def _rescored(summary: Mapping[str, Any]) -> Alert:
    batch_id, earlier, now = str(summary["batch_id"]), summary["rescored_from"], summary.get("model_version")
    again, flipped = int(summary.get("rows_rescored") or 0), int(summary.get("labels_flipped") or 0)
    earlier_budget = summary.get("rescored_from_max_tiles")  # set when the tile budget changed
    scored_with, replaced = f"model {now}", str(earlier)
    if earlier_budget is not None:  # the scale photos were tiled at changed: say from which to which
        scored_with += f" at {summary.get('max_tiles')} tiles per photo"
        replaced += f" at {earlier_budget} tiles per photo"
    # Parts are kept per version and only ever added to: another version's rows are still there to compare with; a
    # shard of the same version was started over at the new budget, and its parts hold only the new rows.
    kept = layout.parts_key(batch_id, str(earlier)) + "/" if earlier != now else None
    changes = ["a promotion"] if earlier != now else []
    changed = " and ".join(changes + (["a tile budget change"] if earlier_budget is not None else []))
    return Alert(
        BATCH_RESCORED,
        batch_id,
        f"batch {batch_id} was scored again whole with {scored_with}: {flipped} of the {again} labels of {replaced} "
        "it replaced flipped",
        {
            "batch_id": batch_id,
            "previous_model_version": earlier,
            "model_version": now,
            "previous_max_tiles": earlier_budget if earlier_budget is not None else summary.get("max_tiles"),
            "max_tiles": summary.get("max_tiles"),
            "rows_rescored": again,
            "labels_flipped": flipped,
            "predictions": layout.results_key(batch_id, layout.PREDICTIONS),
            "previous_rows": kept,
            "why": f"the batch was reopened (a late, replaced or gone upload) after {changed}; its results are kept "
            "per model version and a shard scored with another tile budget starts over, so every upload was scored "
            "again, not only the new ones",
        },
    )


def _settled(validation: Mapping[str, Any]) -> Alert:
    batch_id, dropped = str(validation["batch_id"]), validation.get("rows_dropped")
    folder = layout.incoming_prefix(batch_id)
    rows = f"its {dropped} result row(s) were" if dropped is not None else "its result rows were"
    return Alert(
        BATCH_SETTLED,
        batch_id,
        f"batch {batch_id}: its uploads are all gone from {folder} (deleted or moved away), so {rows} dropped and "
        "it is settled, neither validated nor scored; uploads put back there are scored the next night",
        {
            "batch_id": batch_id,
            "uploads": folder,
            "rows_dropped": dropped,
            "reasons": list(validation.get("reasons") or [])[:MAX_REASONS],
            "predictions": layout.results_key(batch_id, layout.PREDICTIONS),
        },
    )


def gate_alert(decision: Mapping[str, Any]) -> Alert | None:
    """The alert for a gate decision: a rejection raises one; a pass that was not promoted does not."""
    if decision.get("decision") != "reject":
        return None
    version = str(decision["candidate_version"])
    checks = ", ".join(decision.get("failed_checks") or []) or "no check named"
    return Alert(
        CANDIDATE_REJECTED,
        f"{decision['name']}/{version}",
        f"the gate rejected candidate {version} of {decision['name']} (failed: {checks}); the champion "
        f"{decision.get('champion_version') or '(none)'} stays",
        dict(decision),
    )


def run_alerts(
    store: StoreLike,
    run_summary: Mapping[str, Any],
    batch_summaries: Iterable[Mapping[str, Any]] | None = None,
    *,
    error_rate_alert: float = DEFAULT_ERROR_RATE_ALERT,
) -> list[Alert]:
    """``nightly_alerts`` with the outcomes (and, if not given, the finished batches' summaries) read from the store,
    then one alert per batch document that could not be read (``unreadable_document``), one if ``incoming`` itself
    cannot be listed (``folder_problem``), per folder under ``incoming/`` that no night scores
    (``unusable_batch_folders``) and per upload in no batch folder (``uploads_outside_batches``)."""
    opened = open_store(store)
    unreadable: list[Alert] = []
    outcomes = {}
    validated = {str(item["batch_id"]) for item in run_summary.get("validations") or []}
    for batch_id in sorted(validated):
        key = layout.validation_key(batch_id, layout.OUTCOME)
        if (outcome := _read_guarded(opened, batch_id, key, unreadable)) is not None:
            outcomes[batch_id] = outcome
    if batch_summaries is None:
        batch_summaries = []
        for batch_id in map(str, run_summary.get("batches_scored") or []):
            key = layout.results_key(batch_id, layout.SUMMARY)
            if (summary := _read_guarded(opened, batch_id, key, unreadable)) is not None:
                batch_summaries.append({**summary, "batch_id": batch_id})  # the key says whose it is, not its text
    alerts = nightly_alerts(run_summary, batch_summaries, outcomes, error_rate_alert=error_rate_alert) + unreadable
    try:
        incoming = folder_problem(opened, layout.INCOMING)
        unusable = unusable_batch_folders(opened)
        outside = uploads_outside_batches(opened)
        states = unreadable_batch_states(
            opened, [name for name in opened.folders(layout.INCOMING) if name not in unusable], validated
        )
    except Exception:  # a listing that fails must not hold back the night's own alerts
        log.exception("could not list incoming/ for unusable batch folders, uploads in none, unreadable states")
        return alerts
    alerts += [_unreadable_state(state) for state in states]
    alerts += [_unusable_incoming(incoming)] if incoming else []
    alerts += [_unusable_folder(name, reason) for name, reason in unusable.items()]
    return alerts + ([_outside_batches(outside)] if outside else [])


def _read_guarded(store: ObjectStore, batch_id: str, key: str, unreadable: list[Alert]) -> dict[str, Any] | None:
    """The JSON object at ``key`` (one of the batch's documents), None if there is none; one that cannot be read adds
    an ``unreadable_document`` alert to ``unreadable`` instead of raising: a 503 on one batch's ``outcome.json`` held
    back every alert of the night, on every retry, and the error named neither the batch nor the key."""
    try:
        if not store.exists(key):
            return None
        document = json.loads(store.read(key))
        if not isinstance(document, dict):
            raise CrackModelError(f"{store.url(key)} is not a JSON object")
        return document
    except Exception as error:  # whatever stops this batch's document must not stop the other batches' alerts
        log.exception("could not read %s for the alerts of batch %s", store.url(key), batch_id)
        unreadable.append(_unreadable_document(batch_id, key, store.url(key), error))
        return None


def _unreadable_document(batch_id: str, key: str, url: str, error: BaseException) -> Alert:
    what = "drift" if key.endswith(layout.OUTCOME) else "scoring-error"
    title = (f"batch {batch_id}: could not read {url} ({described(error)}), so its {what} alert was not decided; "
             "check the store's answer for that key (access, availability) or mend the document")  # fmt: skip
    details = {"batch_id": batch_id, "key": key, "url": url, "error": described(error)}
    return Alert(UNREADABLE_DOCUMENT, key, title, details)


def _unreadable_state(state: UnreadableState) -> Alert:
    details = {"batch_id": state.batch_id, "key": state.key, "url": state.url, "error": state.error}
    return Alert(UNREADABLE_DOCUMENT, state.key, str(state), details)


def _unusable_incoming(reason: str) -> Alert:
    folder = f"{layout.INCOMING}/"
    title = f"no night finds a batch under {folder}: {reason}"
    return Alert(UNUSABLE_INCOMING, folder, title, {"folder": folder, "reason": reason})


def _unusable_folder(name: str, reason: str) -> Alert:
    folder = f"{layout.INCOMING}/{name}/"
    title = f"folder {shown_key(folder)} is never scored: {reason}; move its uploads into a batch folder of such a name"
    return Alert(UNUSABLE_BATCH_FOLDER, name, title, {"folder": folder, "reason": reason})


def _outside_batches(keys: list[str]) -> Alert:
    """One alert for every upload put straight into ``incoming/`` (300 stray photos are one mistake, not 300)."""
    named = ", ".join(shown_key(key) for key in keys[:MAX_REASONS]) + (", ..." if len(keys) > MAX_REASONS else "")
    title = (f"{len(keys)} upload(s) in no batch folder, so no night scores them ({named}); "
             f"move them into {layout.INCOMING}/<batch_id>/")  # fmt: skip
    return Alert(UPLOAD_OUTSIDE_BATCH, f"{layout.INCOMING}/", title, {"count": len(keys), "keys": keys[:MAX_REASONS]})
