"""A self-contained HTML page for a gate report: the decision, every check, the two confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.decision { display: inline-block; padding: 0.3rem 0.8rem; border-radius: 0.3rem; color: white; font-weight: bold; }
.promote { background: #1a7f37; } .reject { background: #cf222e; }
.fail { color: #cf222e; font-weight: bold; } .pass { color: #1a7f37; } .skipped { color: #777; }
.side { display: flex; gap: 3rem; flex-wrap: wrap; }
.muted { color: #666; }
"""


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _interval(interval: Sequence[float] | None) -> str:
    return "n/a" if not interval else f"[{interval[0]:.4f}, {interval[1]:.4f}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _confusion(section: Mapping[str, Any] | None, title: str) -> str:
    if section is None:
        return f"<div><h3>{escape(title)}</h3><p class='muted'>no champion</p></div>"
    matrix = section["confusion_matrix"]
    labels = matrix["labels"]
    rows = [
        [f"true {escape(label)}", *(str(count) for count in counts)]
        for label, counts in zip(labels, matrix["rows_true_columns_predicted"], strict=True)
    ]
    caption = (
        f"{title}: {section['version']} ({section['runtime']}, threshold {_number(section['metrics']['threshold'])})"
    )
    return f"<div><h3>{escape(caption)}</h3>{_table(['', *(f'predicted {label}' for label in labels)], rows)}</div>"


def _checks(checks: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [escape(check["name"]), f"<span class='{check['status']}'>{check['status']}</span>", escape(check["message"])]
        for check in checks
    ]
    return _table(["check", "status", "detail"], rows)


def render_gate_html(report: Mapping[str, Any]) -> str:
    """The report as one HTML page (no scripts, no external files)."""
    decision = report["decision"]
    candidate, champion = report["candidate"], report.get("champion")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Gate {escape(report['name'])} {escape(report['candidate_version'])}: {escape(decision)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Gate report: {escape(report['name'])} {escape(report['candidate_version'])}</h1>",
        f"<p><span class='decision {escape(decision)}'>{escape(decision.upper())}</span></p>",
        f"<p>Champion compared against: <b>{escape(str(report.get('champion_version') or 'none'))}</b>. "
        f"Policy {escape(report['policy']['policy_version'])}, holdout {escape(report['holdout']['uri'])} "
        f"({report['holdout']['images']} images), gated by {escape(str(report.get('gated_by')))} "
        f"at {escape(str(report.get('finished_at')))}.</p>",
    ]
    if report["failed_checks"]:
        items = "".join(
            f"<li><b>{escape(name)}</b>: {escape(reason)}</li>"
            for name, reason in zip(report["failed_checks"], report["reasons"], strict=True)
        )
        parts.append(f"<h2>Failed checks</h2><ul class='fail'>{items}</ul>")
    if report["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(note)}</li>" for note in report["notes"]) + "</ul>")

    parts.append("<h2>Metrics on the holdout</h2>")
    comparison = report.get("comparison") or {}
    rows = []
    for metric, value in candidate["metrics"].items():
        if metric not in candidate["intervals"] and metric not in ("roc_auc", "pr_auc"):
            continue
        exact = (candidate.get("exact_intervals") or {}).get(metric)
        row = [escape(metric), _number(value), _interval(candidate["intervals"].get(metric)), _interval(exact)]
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
    parts.append(_table(headers, rows))

    parts.append("<h2>Confusion matrices</h2><div class='side'>")
    parts.append(_confusion(candidate, "Candidate") + _confusion(champion, "Champion") + "</div>")

    parts.append("<h2>Checks</h2>" + _checks(report["checks"]))

    if report.get("slices"):
        slice_rows = [
            [
                escape(name),
                str(entry["images"]),
                str(entry["cracks"]),
                *(_number(entry["metrics"].get(metric)) for metric in ("crack_recall", "crack_precision", "accuracy")),
            ]
            for name, entry in report["slices"].items()
        ]
        parts.append("<h2>Slices (candidate)</h2>")
        parts.append(_table(["slice", "images", "cracks", "crack recall", "crack precision", "accuracy"], slice_rows))

    runtime_rows = [
        [
            escape(runtime["runtime"]),
            _number(runtime["approved"]),
            _number(runtime["label_agreement"]),
            _number(runtime["metrics"].get("crack_recall")),
            _number(runtime["metrics"].get("accuracy")),
            escape(", ".join(runtime["failed_checks"]) or "-"),
        ]
        for runtime in report["runtimes"]
    ]
    parts.append("<h2>Runtimes</h2>")
    parts.append(_table(["runtime", "approved", "agreement", "crack recall", "accuracy", "failed"], runtime_rows))
    approved = ", ".join(report["approved_runtimes"]) or "none"
    parts.append(f"<p>Approved for serving (fastest first): <b>{escape(approved)}</b></p>")

    policy = report["policy"]
    parts.append(
        "<h2>Policy</h2>"
        f"<p class='muted'>{escape(policy.get('description', ''))}</p>"
        + _table(
            ["setting", "value"],
            [
                ["floors", escape(str(policy["floors"]) or "{}")],
                ["no regression (max drop)", escape(str(policy["no_regression"]))],
                ["slice floors", escape(str(policy["slice_floors"]))],
                ["min slice images", str(policy["min_slice_images"])],
                ["min runtime agreement", str(policy["min_runtime_agreement"])],
                ["bootstrap", escape(str(policy["bootstrap"]))],
                ["digest", escape(policy["digest"])],
            ],
        )
    )
    parts.append("</body></html>\n")
    return "".join(parts)
