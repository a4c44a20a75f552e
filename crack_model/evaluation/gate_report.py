"""A self-contained HTML page for a gate report: the decision, every check, the two confusion matrices.

The page is ``templates/gate_report.html.j2``; this module turns the report document into the rows
of its tables (plain text: the template engine escapes every value, see ``crack_model.core.html``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crack_model.core import html
from crack_model.evaluation.photo_check import threshold_rose

TEMPLATE = "gate_report.html.j2"
SLICE_METRICS = ("crack_recall", "crack_precision", "accuracy")
MISCLASSIFIED_ROWS = 100


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(interval: Sequence[float] | None) -> str:
    return "n/a" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> dict[str, Any]:
    return {"headers": list(headers), "rows": [list(row) for row in rows]}


def _metrics(report: Mapping[str, Any]) -> dict[str, Any]:
    """Candidate figures with their intervals, and beside them the champion's and the paired difference."""
    candidate, champion = report["candidate"], report.get("champion")
    comparison = report.get("comparison") or {}
    rows = []
    for metric, value in candidate["metrics"].items():
        if metric not in candidate["intervals"] and metric not in ("roc_auc", "pr_auc"):
            continue
        exact = (candidate.get("exact_intervals") or {}).get(metric)
        row = [metric, _number(value), _interval(candidate["intervals"].get(metric)), _interval(exact)]
        if champion is not None:
            compared = comparison.get(metric, {})
            row += [
                _number(champion["metrics"].get(metric)),
                _interval(champion["intervals"].get(metric)),
                _number(compared.get("difference")),
                _interval(compared.get("interval")),
                _number(compared.get("within_noise")),
            ]
        rows.append(row)
    confidence = report["policy"]["bootstrap"]["confidence"]
    headers = ["metric", "candidate", f"{confidence:.0%} interval (bootstrap)", "exact (Clopper-Pearson)"]
    if champion is not None:
        headers += ["champion", "interval", "difference", "paired interval", "within noise"]
    return _table(headers, rows)


def _confusion(section: Mapping[str, Any] | None, title: str) -> dict[str, Any]:
    """A confusion matrix with its caption; no table when there is no such model (no champion)."""
    if section is None:
        return {"caption": title, "table": None}
    matrix = section["confusion_matrix"]
    labels = matrix["labels"]
    rows = [
        [f"true {label}", *(str(count) for count in counts)]
        for label, counts in zip(labels, matrix["rows_true_columns_predicted"], strict=True)
    ]
    caption = (
        f"{title}: {section['version']} ({section['runtime']}, threshold {_number(section['metrics']['threshold'])})"
    )
    return {"caption": caption, "table": _table(["", *(f"predicted {label}" for label in labels)], rows)}


def _slices(report: Mapping[str, Any]) -> dict[str, Any] | None:
    if not report.get("slices"):
        return None
    rows = [
        [
            name,
            str(entry["images"]),
            str(entry["cracks"]),
            *(_number(entry["metrics"].get(metric)) for metric in SLICE_METRICS),
        ]
        for name, entry in report["slices"].items()
    ]
    return _table(["slice", "images", "cracks", "crack recall", "crack precision", "accuracy"], rows)


def _runtimes(report: Mapping[str, Any]) -> dict[str, Any]:
    rows = [
        [
            runtime["runtime"],
            _number(runtime["approved"]),
            _number(runtime["label_agreement"]),
            _number(runtime["metrics"].get("crack_recall")),
            _number(runtime["metrics"].get("accuracy")),
            ", ".join(runtime["failed_checks"]) or "-",
        ]
        for runtime in report["runtimes"]
    ]
    return _table(["runtime", "approved", "agreement", "crack recall", "accuracy", "failed"], rows)


def _rule_text(figures: Mapping[str, Any]) -> str:
    """The photo rule, and what it asked of these photos when they have more tiles than it was calibrated on."""
    rule = figures["rule"]
    if not threshold_rose(figures):
        return str(rule["describe"])
    return f"{rule['describe']}; for these {figures['tiles_per_mosaic']}-tile photos: {rule['for_these_photos']}"


def _photo_level(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """Candidate and champion on the holdout mosaics: the photo rule's figures beside the old highest-tile rule's."""
    section = report.get("photo_level")
    if not section:
        return None
    rows = []
    for role in ("candidate", "champion"):
        figures = section.get(role)
        if not figures:
            continue
        rows.append([
            f"{role} ({figures['runtime']})", _rule_text(figures),
            f"{figures['false_alarms']} of {figures['clean_mosaics']}",
            f"{figures['found']} of {figures['crack_mosaics']}",
            f"{figures['crack_patches_in_marked_tiles']} of {figures['crack_patches']}",
            _number(figures["meets_bar"]),
            f"{figures['max_rule']['false_alarms']} / {figures['max_rule']['found']}",
        ])  # fmt: skip
    headers = ["model", "photo rule", "false alarms (clean photos)", "crack photos found",
               "crack patches in marked tiles", "meets the bar", "highest-tile rule: false alarms / found"]  # fmt: skip
    mosaics = section["mosaics"]
    shape: Mapping[str, Any] = next((section[role] for role in ("candidate", "champion") if section.get(role)), {})
    caption = (
        f"{mosaics['clean']} clean and {mosaics['with_cracks']} crack photos (1 to {mosaics['max_cracks']} crack "
        f"patches each) of {'x'.join(map(str, shape.get('grid') or []))} holdout patches"
        f" ({'x'.join(map(str, shape.get('photo_size') or []))} px, {shape.get('tiles_per_mosaic', 0)} tiles); "
        f"{section['marked']}. Bar: at most 1 false alarm in 40 clean photos, every crack photo found, "
        "90 % of crack patches in marked tiles."
    )
    if section.get("photos_left_out"):  # full-size holdout photos: in the holdout figures, by the photo rule
        caption += (
            f" The holdout's {section['photos_left_out']} full-size photos are not cut into mosaics: the holdout"
            " figures above label them by the photo rule."
        )
    for role in ("candidate", "champion"):
        under = (section.get(role) or {}).get("false_alarm_patches")
        if under:  # one ambiguous patch recurs in about half the mosaics: what to look at first
            key, count = next(iter(under.items()))
            caption += (f" The {role}'s false alarms lie most on {key} ({count} of "
                        f"{section[role]['false_alarms']}).")  # fmt: skip
    floors = report.get("policy", {}).get("photo_floors")
    if floors:  # what gates, beside the bar that is only reported
        caption += (
            " Gated (policy photo floors): "
            + ", ".join(f"{metric} >= {floor}" for metric, floor in floors.items())
            + "."
        )
    skipped = section.get("skipped") or (
        f"the check could not run: {section['failed']}" if section.get("failed") else None
    )
    return {"caption": caption, "skipped": skipped, "table": _table(headers, rows) if rows else None}


def _misclassified(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The holdout images the candidate gets wrong, the first ``MISCLASSIFIED_ROWS`` of them (all are in the JSON)."""
    wrong = report.get("misclassified")
    if wrong is None:  # a report from before the section existed
        return None
    with_champion = report.get("champion") is not None
    rows = []
    for entry in wrong[:MISCLASSIFIED_ROWS]:
        row = [entry["key"], entry["slice"], entry["label"], _number(entry["candidate_crack_probability"])]
        if with_champion:
            row += [_number(entry.get("champion_crack_probability")), _number(entry.get("new"))]
        rows.append(row)
    headers = ["image", "slice", "label", "candidate crack probability"]
    if with_champion:
        headers += ["champion crack probability", "new (the champion was right)"]
    new = sum(1 for entry in wrong if entry.get("new"))
    caption = f"{len(wrong)} image(s)" + (f", {new} of them new" if with_champion else "")
    if len(wrong) > MISCLASSIFIED_ROWS:
        caption += f"; the first {MISCLASSIFIED_ROWS} shown, every one in gate_report.json"
    return {"caption": caption, "table": _table(headers, rows) if rows else None}


def _policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    rows = [
        ["floors", str(policy["floors"]) or "{}"],
        ["no regression (max drop)", str(policy["no_regression"])],
        ["slice floors", str(policy["slice_floors"])],
        ["min slice images", str(policy["min_slice_images"])],
        ["min runtime agreement", str(policy["min_runtime_agreement"])],
        ["photo floors (holdout mosaics)", str(policy.get("photo_floors") or "{}")],
        ["bootstrap", str(policy["bootstrap"])],
        ["digest", policy["digest"]],
    ]
    return _table(["setting", "value"], rows)


def render_gate_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page (no scripts, no external files)."""
    return html.render(
        "crack_model.evaluation",
        TEMPLATE,
        report=report,
        failed=list(zip(report["failed_checks"], report["reasons"], strict=True)),
        metrics=_metrics(report),
        confusions=[_confusion(report["candidate"], "Candidate"), _confusion(report.get("champion"), "Champion")],
        slices=_slices(report),
        misclassified=_misclassified(report),
        runtimes=_runtimes(report),
        photo_level=_photo_level(report),
        approved=", ".join(report["approved_runtimes"]) or "none",
        policy=_policy(report["policy"]),
    )
