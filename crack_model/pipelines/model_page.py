"""One model version in detail, for the ops view's model page: lineage, gate, runtimes, promotion audit.

``model_page`` follows a version back to what it was trained on: the training run and code
(``version.json``: run id, who registered it, git commit, library version, the model card) and
the training-data manifest's digests (the images and labels it learnt from), then forward to its
gate (decision, checks, holdout figures with bootstrap and exact intervals, the report), the
runtimes the gate approved, the aliases pointing at it, and every audit record that moved an
alias to or from it (who, when, in which run, why).
"""

from __future__ import annotations

from typing import Any

from crack_model.core.clock import utc_now
from crack_model.core.documents import FORMAT_VERSION
from crack_model.core.model_card import ModelCard
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import open_store
from crack_model.pipelines.document_shapes import GATE_REPORT as GATE_REPORT_SHAPE
from crack_model.pipelines.document_shapes import MODEL_VERSION
from crack_model.pipelines.overview_registry import gate_figures
from crack_model.pipelines.store_reader import StoreReader
from crack_model.registry.naming import (
    GATE_HTML,
    GATE_REPORT,
    VERSION_MARKER,
    VersionNotFoundError,
    validate_name,
    validate_version,
)
from crack_model.registry.versions import Registry
from crack_model.serving.photo_confirmation import PATCH_CONFIRM_BELOW
from crack_model.serving.photo_decision import PhotoRule

# The gate's holdout figures shown on the page, crack recall first.
GATE_METRICS = ("crack_recall", "crack_precision", "accuracy", "roc_auc")
CARD_FIELDS = ("threshold", "crack_class", "class_names", "image_size", "tile_size", "base_weights", "target_recall")
MAX_REASONS = 20


def model_page(store_uri: str | ObjectStore, name: str, version: str) -> dict[str, Any]:
    """Lineage, gate, approved runtimes, aliases and promotion audit of one registered version.

    A version whose ``version.json`` is there but unreadable still gets its page (gate, aliases, audit),
    with an empty lineage and the damage named in ``problems``.

    Raises:
        CrackModelError: an invalid name or version (``VersionNotFoundError`` when it is not registered).

    Returns:
        ``{"format_version", "store", "model_name", "version", "generated_at", "lineage", "gate",
        "approved_runtimes", "aliases", "audit", "links", "problems"}``; links hold store keys.
    """
    validate_name(name)
    validate_version(version)
    store = open_store(store_uri) if isinstance(store_uri, str) else store_uri
    reader = StoreReader(store)
    registry = Registry(store)
    marker = registry.version_key(name, version, VERSION_MARKER)
    document = reader.json(marker, MODEL_VERSION)
    if document is None:
        if not reader.exists(marker):
            raise VersionNotFoundError(f"model {name} has no registered version {version} in {store.uri}")
        reader.note(f"{marker} is damaged: the version's lineage (training run, card, data, files) is not shown; "
                    "restore it from a backup or versioned bucket")  # fmt: skip
        document = {}
    gate = reader.json(registry.version_key(name, version, GATE_REPORT), GATE_REPORT_SHAPE)
    aliases: list[str] = []
    audit: list[dict[str, Any]] = []
    try:
        state = registry.aliases(name)
        aliases = sorted(alias for alias, pointed in state.aliases.items() if pointed == version)
        audit = [
            entry.as_dict() for entry in registry.history(name) if version in (entry.to_version, entry.from_version)
        ]
    except Exception as error:  # a hand-edited aliases.json or a broken audit log: show the rest, and say so
        reader.note(f"cannot read the aliases and audit log of model {name}: {error}")
    return {
        "format_version": FORMAT_VERSION,
        "store": store.uri,
        "model_name": name,
        "version": version,
        "generated_at": utc_now(),
        "lineage": _lineage(document),
        "gate": _gate(gate),
        "approved_runtimes": list((gate or {}).get("approved_runtimes") or []),
        "aliases": aliases,
        "audit": sorted(audit, key=lambda entry: entry["revision"], reverse=True),
        "links": {"gate_report": registry.version_key(name, version, GATE_HTML) if gate else None},
        "problems": reader.problems,
    }


def _lineage(document: dict[str, Any]) -> dict[str, Any]:
    """From the version back to its training run, code and data."""
    card = document.get("card") or {}
    manifest = document.get("data_manifest") or {}
    files = document.get("files") or {}
    return {
        "created_at": document.get("created_at") or card.get("created_at"),
        "registered_at": document.get("registered_at"),
        "registered_by": document.get("registered_by"),
        "run_id": document.get("run_id"),
        "git_commit": document.get("git_commit"),
        "library_version": document.get("library_version"),
        "card": {field: card.get(field) for field in CARD_FIELDS},
        "photo_rule": photo_rule_summary(card),
        "patch_rule": patch_rule_summary(card),
        "data_manifest": None
        if not manifest
        else {
            "file": manifest.get("file"),
            "images": manifest.get("images"),
            "per_label": manifest.get("per_label") or {},
            "per_split": manifest.get("per_split"),
            "per_slice": manifest.get("per_slice"),
            "sha256": manifest.get("sha256"),
            "content_digest": manifest.get("content_digest"),
        },
        "training_metrics": document.get("metrics"),
        "started_from": document.get("started_from"),
        "drift_reference": document.get("drift_reference"),
        "files": [
            {"name": file_name, "sha256": (entry or {}).get("sha256"), "size": (entry or {}).get("size")}
            for file_name, entry in sorted(files.items())
        ],
    }


def patch_rule_summary(card: dict[str, Any]) -> str | None:
    """How the version confirms a one-tile image by its flips (serving/photo_confirmation.py); None: it does not."""
    if card.get("patch_confirm_threshold") is None:
        return None
    try:
        threshold, confirm = float(card["threshold"]), float(card["patch_confirm_threshold"])
    except (KeyError, TypeError, ValueError) as error:  # a hand-edited card: say so, show the rest of the page
        return f"the card's patch confirmation is invalid: {error!r}"
    return (f"scored from {threshold:.4f} up to {PATCH_CONFIRM_BELOW}, only when its mean over itself and its "
            f"three flips reaches {confirm:.4f}")  # fmt: skip


def photo_rule_summary(card: dict[str, Any]) -> dict[str, Any] | None:
    """How the version labels a photo of several tiles, and what the rule was chosen on; None: no photo rule.

    (Without one, a photo is a crack when its highest tile reaches the threshold.)
    """
    if card.get("photo_threshold") is None:
        return None
    try:
        describe = PhotoRule.of(ModelCard.from_dict(card)).describe()
    except (TypeError, ValueError) as error:  # a hand-edited card: say so, show the rest of the page
        describe = f"the card's photo rule is invalid: {error}"
    calibration = card.get("photo_calibration") or {}
    runtimes = list(calibration.get("runtimes") or [])
    # Records from before crack_like_photos counted each mosaic once per runtime that scored it; later ones once.
    per_runtime = 1 if "crack_like_photos" in calibration else max(1, len(runtimes))
    return {
        "describe": describe,
        "runtimes": runtimes,
        "clean_mosaics": (calibration.get("clean_mosaics") or 0) // per_runtime,
        "crack_mosaics": (calibration.get("crack_mosaics") or 0) // per_runtime,
        "labeled_photos": calibration.get("labeled_photos") or 0,
    }


def _gate(report: dict[str, Any] | None) -> dict[str, Any] | None:
    if report is None:
        return None
    holdout = report.get("holdout") or {}
    policy = report.get("policy") or {}
    candidate = report.get("candidate") or {}
    return {
        "decision": report.get("decision"),
        "failed_checks": list(report.get("failed_checks") or []),
        "reasons": list(report.get("reasons") or [])[:MAX_REASONS],
        "compared_with": report.get("champion_version"),
        "finished_at": report.get("finished_at"),
        "gated_by": report.get("gated_by"),
        "run_id": report.get("run_id"),
        "holdout": {
            "uri": holdout.get("uri"),
            "images": holdout.get("images"),
            "per_class": holdout.get("per_class") or {},
            "listing_digest": holdout.get("listing_digest"),
        },
        "policy": {"version": policy.get("policy_version"), "digest": policy.get("digest")},
        "confidence": (policy.get("bootstrap") or {}).get("confidence"),
        "runtime": candidate.get("runtime"),
        "metrics": gate_figures(candidate, GATE_METRICS) if candidate.get("metrics") else {},
        "missed_cracks": (candidate.get("metrics") or {}).get("missed_cracks"),
        "false_alarms": (candidate.get("metrics") or {}).get("false_alarms"),
    }
