"""Deciding about a profiled batch: run its suite, then judge the GX result into an outcome (no I/O).

* ``passed``: every expectation holds and no object broke a per-object check.
* ``passed_with_quarantine``: every expectation holds thanks to its ``mostly`` tolerance, and the few
  objects that broke one (at most ``max_bad_fraction`` of the batch) are to be held back.
* ``failed``: an expectation does not hold; the batch must not be scored. The reasons say why.

Checks marked ``report_only`` in a suite (the training suite's photo statistics) list their offenders
in the report and never quarantine or fail: a photo of a new surface is unlike the old ones, not
broken. Those bounds come from each slice's own photos where it has enough (see ``slice_bounds``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import shown_key
from crack_model.quality import drift
from crack_model.quality.expectations import TABLE_KEYS, load_suite, run_suite
from crack_model.quality.outcome import FAILED, PASSED, PASSED_WITH_QUARANTINE, ValidationOutcome
from crack_model.quality.tables import classes_table, objects_table, plain
from crack_model.quality.thresholds import PHOTO_BOUNDS, ValidationThresholds, slice_bounds

if TYPE_CHECKING:
    import pandas as pd

log = module_logger(__name__)

NO_SLICE = "(none)"


def slice_of_key(key: str, label: str | None) -> str:
    """``.../<class>/<slice>/.../<file>`` -> the slice; a file directly in its class folder -> NO_SLICE."""
    parts = key.split("/")
    if not isinstance(label, str) or label not in parts[:-1]:
        return NO_SLICE
    index = parts.index(label)
    return parts[index + 1] if index + 2 < len(parts) else NO_SLICE


def _outside(row: Mapping[str, Any], bounds: ValidationThresholds) -> list[str]:
    found = []
    for name in PHOTO_BOUNDS:
        low, high, value = getattr(bounds, f"{name}_min"), getattr(bounds, f"{name}_max"), row[name]
        if not low <= value <= high:
            found.append(f"{name} {value:.2f} outside [{low}, {high}]")
    for name, limit in (("saturated_fraction", bounds.max_saturated_fraction),
                        ("dark_fraction", bounds.max_dark_fraction)):  # fmt: skip
        if row[name] > limit:
            found.append(f"{name} {row[name]:.1%} above {limit:.0%}")
    return found


def add_photo_columns(objects: pd.DataFrame, thresholds: ValidationThresholds) -> pd.DataFrame:
    """Add ``slice``, ``typical_for_slice`` / ``atypical_reason`` (against the slice's own bounds where it
    has enough photos) and ``within_reference_bounds`` (against the defaults). Undecodable rows count as
    typical here: the ``decodes`` check deals with them."""
    table = objects.copy()
    labels = table["label"] if "label" in table else [None] * len(table)
    table["slice"] = [slice_of_key(key, label) for key, label in zip(table["key"], labels, strict=True)]
    own_bounds = slice_bounds(table, table["slice"], thresholds)
    reasons, reference = [], []
    for row in table.to_dict("records"):
        if not row["decodable"]:
            reasons.append("")
            reference.append(True)
            continue
        reasons.append("; ".join(_outside(row, own_bounds[row["slice"]])))
        reference.append(not _outside(row, thresholds))
    table["atypical_reason"] = reasons
    table["typical_for_slice"] = [not reason for reason in reasons]
    table["within_reference_bounds"] = reference
    return table


def slice_drift_entry(objects: pd.DataFrame, thresholds: ValidationThresholds) -> dict[str, Any]:
    """A report-only check: per slice, the share of photos outside the default (reference) bounds.

    A slice where more than ``max_bad_fraction`` fall outside is a surface unlike the one the
    defaults were derived from: worth knowing (and worth its own bounds), not a reason to quarantine.
    """
    shares = {}
    for name, rows in objects[objects["decodable"].astype(bool)].groupby("slice"):
        shares[str(name)] = round(1.0 - float(rows["within_reference_bounds"].mean()), 4)
    drifted = sorted(name for name, share in shares.items() if share > thresholds.max_bad_fraction)
    note = (
        f"slice(s) {', '.join(drifted)} differ from the reference photos (share outside its bounds: "
        f"{', '.join(f'{name} {shares[name]:.0%}' for name in drifted)}): reported, not quarantined"
        if drifted else "every slice is within the reference bounds"
    )  # fmt: skip
    return {
        "name": "slices_within_reference_bounds", "expectation": "(computed beside GX)", "table": "objects",
        "column": "within_reference_bounds", "success": not drifted, "per_object": False, "report_only": True,
        "description": "Share of each slice's photos outside the default photo bounds (drift of a surface).",
        "reason": note, "kwargs": {"max_share": thresholds.max_bad_fraction}, "element_count": len(objects),
        "unexpected_count": len(drifted), "unexpected_percent": None, "observed_value": shares,
        "offenders": drifted, "error": "",
    }  # fmt: skip


def _object_reason(meta: Mapping[str, Any], row: Mapping[str, Any], kwargs: Mapping[str, Any]) -> str:
    template = meta.get("object_reason") or "{column} = {value}"
    column = kwargs.get("column", "")
    values = {**kwargs, **{name: plain(value) for name, value in row.items()}}
    values.setdefault("value", values.get(column))
    try:
        text = template.format(**values)
    except (KeyError, ValueError, TypeError, IndexError):
        text = f"{column} = {values.get(column)!r}"
    return f"{meta.get('check', column)}: {text}"


def _check_entry(result: Any) -> dict[str, Any]:
    config = result.expectation_config
    meta = dict(config.meta or {})
    details = result.result or {}
    key_column = TABLE_KEYS.get(meta.get("table", "objects"), "key")
    entry = {
        "name": meta.get("check", config.type),
        "expectation": config.type,
        "table": meta.get("table", "objects"),
        "column": config.kwargs.get("column"),
        "success": bool(result.success),
        "per_object": bool(meta.get("per_object", False)),
        "report_only": bool(meta.get("report_only", False)),
        "description": meta.get("description", ""),
        "reason": meta.get("reason", ""),
        "kwargs": {
            name: value if isinstance(value, list) else plain(value)
            for name, value in config.kwargs.items()
            if name != "batch_id"
        },
        "element_count": plain(details.get("element_count")),
        "unexpected_count": plain(details.get("unexpected_count")),
        "unexpected_percent": plain(details.get("unexpected_percent")),
        "observed_value": plain(details.get("observed_value")),
        "offenders": [plain(item.get(key_column)) for item in details.get("unexpected_index_list") or []],
        "error": "",
    }
    info = result.exception_info or {}
    # GX gives one exception's info, or (a metric that failed, such as a column the table lacks) one per metric.
    raised = [info] if "raised_exception" in info else [item for item in info.values() if isinstance(item, dict)]
    messages = [str(item.get("exception_message") or "") for item in raised if item.get("exception_message")]
    if messages or any(item.get("raised_exception") for item in raised):
        entry["error"] = "; ".join(dict.fromkeys(messages)) or "the expectation raised an exception"
    return entry


def _failure_reason(entry: Mapping[str, Any]) -> str:
    name = entry["name"]
    if entry["error"]:
        return f"{name}: could not be evaluated ({entry['error']}); check the suite and the profile columns"
    mostly = entry["kwargs"].get("mostly")
    if entry["unexpected_count"] is not None and entry["element_count"]:
        allowed = f"; at most {100 * (1 - mostly):.1f}% may" if mostly is not None else ""
        shown = ", ".join(shown_key(str(item)) for item in entry["offenders"][:5])
        more = f" and {len(entry['offenders']) - 5} more" if len(entry["offenders"]) > 5 else ""
        return (
            f"{name}: {entry['unexpected_count']} of {entry['element_count']} {entry['table']} "
            f"({entry['unexpected_percent']:.1f}%) fail{allowed} ({shown}{more}) - {entry['reason']}"
        )
    return f"{name}: {entry['reason']}"


def judge(
    result: Any, objects: pd.DataFrame, thresholds: ValidationThresholds, drift_report: Mapping[str, Any] | None
) -> tuple[str, list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Decide the outcome from a GX result: (outcome, reasons, quarantined [{key, reasons}], checks)."""
    checks = [_check_entry(item) for item in result.results]
    reasons = [_failure_reason(entry) for entry in checks if not entry["success"] and not entry["report_only"]]
    hard_success = all(entry["success"] for entry in checks if not entry["report_only"])
    rows = objects.set_index("key", drop=False)
    offending: dict[str, list[str]] = {}
    for item, entry in zip(result.results, checks, strict=True):
        if not entry["per_object"] or entry["table"] != "objects" or entry["report_only"]:
            continue
        meta = item.expectation_config.meta or {}
        for key in entry["offenders"]:
            row = rows.loc[key].to_dict() if key in rows.index else {}
            offending.setdefault(key, []).append(_object_reason(meta, row, entry["kwargs"]))
    total = len(objects)
    allowed = int(thresholds.max_bad_fraction * total)
    tolerance_ok = len(offending) <= allowed
    checks.append({
        "name": "bad_objects_within_tolerance", "expectation": "(computed beside GX)", "table": "objects",
        "column": None, "success": tolerance_ok, "per_object": False,
        "description": "Objects breaking any per-object check, together, are at most max_bad_fraction of the batch.",
        "reason": "too many objects break the checks to hold them back one by one: fix the upload and re-run",
        "kwargs": {"max_bad_fraction": thresholds.max_bad_fraction}, "element_count": total,
        "unexpected_count": len(offending), "unexpected_percent": 100.0 * len(offending) / total if total else 0.0,
        "observed_value": len(offending), "offenders": sorted(offending), "error": "",
    })  # fmt: skip
    if "within_reference_bounds" in objects:
        checks.append(slice_drift_entry(objects, thresholds))
    if not tolerance_ok and hard_success:
        reasons.append(
            f"bad_objects_within_tolerance: {len(offending)} of {total} objects break per-object checks, more "
            f"than the {thresholds.max_bad_fraction:.1%} that may be quarantined - fix the upload and re-run"
        )
    if drift_report is not None:
        checks.append({
            "name": "no_drift", "expectation": "(computed beside GX)", "table": "objects", "column": None,
            "success": drift_report.get("drifted") is not True, "per_object": False,
            "description": "Population stability index of each feature against the training reference.",
            "reason": drift_report.get("note", ""), "kwargs": {"psi_threshold": drift_report.get("threshold")},
            "element_count": drift_report.get("images"), "unexpected_count": None, "unexpected_percent": None,
            "observed_value": drift_report.get("psi"), "offenders": [], "error": "",
        })  # fmt: skip
        if drift_report.get("drifted") and thresholds.fail_on_drift:
            reasons.append(f"no_drift: {drift_report.get('note')}")
    if reasons:
        return FAILED, [*reasons, *_unread_note(objects)], [], checks
    quarantined = [{"key": key, "reasons": offending[key]} for key in sorted(offending)]
    return (PASSED_WITH_QUARANTINE if quarantined else PASSED), [], quarantined, checks


def _unread_note(objects: pd.DataFrame) -> list[str]:
    """A failed batch's objects the store did not serve (refused, an outage on the last try): the "decodes" reason
    says to check the upload tool and the camera, when the store's permissions or health are what to check."""
    if "decode_error" not in objects:
        return []
    unread = objects[objects["decode_error"].astype(str).str.startswith("cannot read from the store:")]
    if unread.empty:
        return []
    first = unread.iloc[0]
    return [
        f"store: {len(unread)} of {len(objects)} objects could not be read from the store (e.g. "
        f"{shown_key(str(first['key']))}: {str(first['decode_error'])[:200]}): not the upload's or the camera's "
        "fault; check the store's permissions (a KMS key?) and health, then validate the batch again"
    ]


def validate_profile(
    profile: pd.DataFrame,
    *,
    batch_id: str,
    suite: str = "incoming",
    thresholds: ValidationThresholds | None = None,
    holdout_hashes: Collection[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    drift_config: drift.DriftConfig | None = None,
) -> tuple[ValidationOutcome, Any, pd.DataFrame]:
    """Validate an already computed profile; no I/O. Returns (outcome, GX result, objects table)."""
    thresholds = thresholds or ValidationThresholds()
    suite_json = load_suite(suite, thresholds.parameters())
    objects = add_photo_columns(objects_table(profile, holdout_hashes or (), thresholds.class_names), thresholds)
    tables = {"objects": objects, "classes": classes_table(profile, thresholds.class_names)}
    result = run_suite(suite_json, tables, thresholds.parameters())
    drift_report = drift.compare(profile, reference, drift_config) if reference is not None else None
    outcome, reasons, quarantined, checks = judge(result, objects, thresholds, drift_report)
    statistics = result.statistics
    counts = {
        "objects": len(profile),
        "decodable": int(profile["decodable"].astype(bool).sum()),
        "quarantined": len(quarantined),
        "evaluated_expectations": int(statistics["evaluated_expectations"]),
        "failed_expectations": int(statistics["unsuccessful_expectations"]),
    }
    labels = profile["label"].dropna().value_counts().sort_index()
    if not labels.empty:
        counts.update({f"label:{name}": int(count) for name, count in labels.items()})
    report = ValidationOutcome(
        batch_id=batch_id, suite=suite, outcome=outcome, reasons=reasons, quarantined=quarantined, counts=counts,
        checks=checks, drift=drift_report, thresholds=thresholds.parameters(),
        holdout_checked=holdout_hashes is not None,
    )  # fmt: skip
    log.info("validation of %s with the %s suite: %s", batch_id, suite, outcome)
    return report, result, objects
