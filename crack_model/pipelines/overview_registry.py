"""The registry part of the ops overview: the champion with its holdout figures, recent candidates."""

from __future__ import annotations

from typing import Any

from crack_model.core.log_lines import module_logger
from crack_model.pipelines.document_shapes import GATE_REPORT as GATE_REPORT_SHAPE
from crack_model.pipelines.document_shapes import MODEL_VERSION
from crack_model.pipelines.store_reader import StoreReader
from crack_model.registry.audit_log import AuditEntry
from crack_model.registry.naming import GATE_HTML, GATE_REPORT, VERSION_MARKER
from crack_model.registry.versions import Registry

log = module_logger(__name__)

MAX_REASONS = 10
# Holdout figures shown for the champion, in this order (crack recall first: a missed crack costs most).
CHAMPION_METRICS = ("crack_recall", "crack_precision", "accuracy")


def gate_figures(section: dict[str, Any], metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """A gate report model section's figures: value, bootstrap interval and exact (Clopper-Pearson) interval.

    ``low``/``high`` are the percentile bootstrap interval; ``exact_low``/``exact_high`` the exact
    binomial interval the gate also computes for the proportion metrics (None in reports written
    before it did, and for metrics that are no proportion, such as ROC AUC).
    """
    figures = section.get("metrics") or {}
    bootstrap = section.get("intervals") or {}
    exact = section.get("exact_intervals") or {}
    result = {}
    for metric in metrics:
        low, high = bootstrap.get(metric) or (None, None)
        exact_low, exact_high = exact.get(metric) or (None, None)
        result[metric] = {"value": figures.get(metric), "low": low, "high": high, "exact_low": exact_low,
                          "exact_high": exact_high}  # fmt: skip
    return result


def registry_section(reader: StoreReader, name: str, limit: int) -> dict[str, Any]:
    """The champion card (holdout figures with both intervals, promotion), the challenger and recent candidates."""
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
            documents[version] = (
                reader.json(key(version, VERSION_MARKER), MODEL_VERSION),
                reader.json(key(version, GATE_REPORT), GATE_REPORT_SHAPE),
            )
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
        # aliases.json keeps each alias's last change: who made the champion the champion, without
        # reading the audit records.
        section["champion"] = _champion(champion, document, gate, state.last.get("champion"))
        section["champion"]["links"] = {"gate_report": key(champion, GATE_HTML) if gate else None}
        if document is None:
            reader.note(f"the champion {champion} has no readable {VERSION_MARKER}")
    return section


def _champion(
    version: str, document: dict[str, Any] | None, gate: dict[str, Any] | None, last_change: AuditEntry | None
) -> dict[str, Any]:
    document = document or {}
    card = document.get("card") or {}
    metrics: dict[str, dict[str, Any]] = {}
    source = None
    candidate = (gate or {}).get("candidate") or {}
    if candidate.get("metrics"):
        holdout = (gate or {}).get("holdout") or {}
        images = candidate["metrics"].get("images") or holdout.get("images")
        source = f"holdout, {images} images ({candidate.get('runtime') or 'keras'}, at the gate)"
        confidence = (((gate or {}).get("policy") or {}).get("bootstrap") or {}).get("confidence")
        metrics = gate_figures(candidate, CHAMPION_METRICS)
        figures = candidate["metrics"]
        extra = {field: figures.get(field) for field in ("images", "cracks", "missed_cracks", "false_alarms")}
    else:  # not gated (registered by hand): the training run's own test split, without intervals
        confidence = None
        figures = document.get("metrics") or {}
        if figures:
            source = f"{figures.get('split', 'test')} split, {figures.get('images')} images (training run)"
        for metric in CHAMPION_METRICS:
            metrics[metric] = {"value": figures.get(metric), "low": None, "high": None, "exact_low": None,
                               "exact_high": None}  # fmt: skip
        extra = {"images": figures.get("images"), "cracks": None, "missed_cracks": None, "false_alarms": None}
    promotion = last_change if last_change is not None and last_change.to_version == version else None
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
