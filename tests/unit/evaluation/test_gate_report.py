"""The gate report page: rendered from its Jinja template, every value autoescaped, nothing lost."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from crack_model.evaluation.gate_report import render_gate_html

HOSTILE = "<script>alert(1)</script>.jpg"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;.jpg"


def section(version: str, recall: float) -> dict[str, Any]:
    return {
        "version": version,
        "runtime": "keras",
        "metrics": {"crack_recall": recall, "accuracy": 0.9, "roc_auc": 0.95, "threshold": 0.5},
        "intervals": {"crack_recall": [recall - 0.1, min(1.0, recall + 0.05)], "accuracy": [0.85, 0.95]},
        "exact_intervals": {"crack_recall": [recall - 0.15, 1.0]},
        "confusion_matrix": {"labels": ["Negative", "Positive"], "rows_true_columns_predicted": [[29, 1], [3, 27]]},
    }


def document(*, champion: bool = True) -> dict[str, Any]:
    """A gate report document with every field the page shows (shape of ``run_gate``'s ``gate_report.json``)."""
    return {
        "name": "crack",
        "candidate_version": "v2",
        "champion_version": "v1" if champion else None,
        "decision": "reject",
        "failed_checks": ["slice_floor:site-b:crack_recall"],
        "reasons": ["crack_recall 0.6000 < slice floor 0.8 on site-b"],
        "approved_runtimes": ["keras"],
        "notes": ["a note & more"],
        "holdout": {"uri": "s3://bucket/holdout", "images": 60},
        "policy": {
            "policy_version": "p-7",
            "description": "the agreed floors",
            "floors": {"crack_recall": 0.85},
            "no_regression": {"crack_recall": 0.002},
            "slice_floors": {"crack_recall": 0.8},
            "min_slice_images": 10,
            "min_runtime_agreement": 0.95,
            "bootstrap": {"resamples": 300, "confidence": 0.95, "seed": 3},
            "digest": "d1g3st",
        },
        "finished_at": "2026-01-02T03:04:05Z",
        "gated_by": "airflow",
        "checks": [
            {"name": "floor:crack_recall", "status": "pass", "message": "crack_recall 0.9000 >= floor 0.85"},
            {"name": "slice_floor:site-b:crack_recall", "status": "fail", "message": "0.6000 < 0.8"},
        ],
        "candidate": section("v2", 0.9),
        "champion": section("v1", 0.8) if champion else None,
        "comparison": (
            {"crack_recall": {"difference": 0.1, "interval": [0.02, 0.18], "within_noise": False}} if champion else None
        ),
        "slices": {"site-b": {"images": 30, "cracks": 15, "metrics": {"crack_recall": 0.6, "accuracy": 0.8}}},
        "misclassified": [
            {
                "key": "holdout/Negative/site-b/7.jpg",
                "slice": "site-b",
                "label": "Negative",
                "candidate_crack_probability": 0.91,
                "champion_crack_probability": 0.12,
                "new": True,
            },
        ],
        "runtimes": [
            {
                "runtime": "keras",
                "approved": True,
                "label_agreement": 1.0,
                "metrics": {"crack_recall": 0.9},
                "failed_checks": [],
            },
            {
                "runtime": "litert-int8",
                "approved": False,
                "label_agreement": 0.9,
                "metrics": {"accuracy": 0.7},
                "failed_checks": ["runtime:litert-int8:agreement"],
            },
        ],
    }


def test_the_page_shows_the_decision_checks_metrics_matrices_slices_runtimes_and_policy():
    page = render_gate_html(document())
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<title>Gate crack v2: reject</title>" in page
    assert '<span class="decision reject">REJECT</span>' in page
    assert "Champion compared against: <b>v1</b>" in page and "(60 images)" in page
    assert "<li><b>slice_floor:site-b:crack_recall</b>: crack_recall 0.6000 &lt; slice floor 0.8 on site-b</li>" in page
    assert "<li>a note &amp; more</li>" in page
    assert "<th>95% interval (bootstrap)</th>" in page and "<th>paired interval</th>" in page
    assert "<td>crack_recall</td><td>0.9000</td><td>[0.8000, 0.9500]</td><td>[0.7500, 1.0000]</td>" in page
    assert "<td>0.1000</td><td>[0.0200, 0.1800]</td><td>no</td>" in page  # difference, paired interval, noise
    assert "<h3>Candidate: v2 (keras, threshold 0.5000)</h3>" in page and "<h3>Champion: v1 (keras" in page
    assert "<tr><td>true Positive</td><td>3</td><td>27</td></tr>" in page
    assert '<span class="fail">fail</span>' in page and '<span class="pass">pass</span>' in page
    assert "<tr><td>site-b</td><td>30</td><td>15</td><td>0.6000</td><td>n/a</td><td>0.8000</td></tr>" in page
    assert "<td>litert-int8</td><td>no</td><td>0.9000</td><td>n/a</td><td>0.7000</td><td>runtime:litert-int8" in page
    assert "Approved for serving (fastest first): <b>keras</b>" in page
    assert "<td>digest</td><td>d1g3st</td>" in page and "the agreed floors" in page
    assert "1 image(s), 1 of them new" in page
    assert (
        "<tr><td>holdout/Negative/site-b/7.jpg</td><td>site-b</td><td>Negative</td><td>0.9100</td><td>0.1200</td>"
        "<td>yes</td></tr>" in page
    )


def test_a_long_list_of_wrong_holdout_images_is_cut_on_the_page_only():
    report = document()
    entry = report["misclassified"][0]
    report["misclassified"] = [{**entry, "key": f"holdout/Negative/{n}.jpg"} for n in range(150)]
    page = render_gate_html(report)
    assert "150 image(s), 150 of them new; the first 100 shown, every one in gate_report.json" in page
    assert "holdout/Negative/99.jpg" in page and "holdout/Negative/100.jpg" not in page
    older = document()
    del older["misclassified"]  # a report stored before the section existed still renders
    assert "candidate gets wrong" not in render_gate_html(older)


def test_without_a_champion_the_page_says_so_and_drops_the_comparison_columns():
    page = render_gate_html(document(champion=False))
    assert "Champion compared against: <b>none</b>" in page
    assert '<h3>Champion</h3>\n<p class="muted">no champion</p>' in page
    assert "paired interval" not in page


@pytest.mark.parametrize(
    "place",
    [
        "slice",
        "name",
        "candidate_version",
        "failed_check",
        "reason",
        "note",
        "check",
        "runtime",
        "description",
        "image",
    ],
)
def test_every_value_is_escaped_never_raw_markup(place):
    """A slice (folder) name, version, message or runtime with markup shows as text: autoescape is on."""
    report = copy.deepcopy(document())
    if place == "slice":
        report["slices"][HOSTILE] = report["slices"].pop("site-b")
    elif place == "image":
        report["misclassified"][0]["key"] = HOSTILE
    elif place in ("name", "candidate_version"):
        report[place] = HOSTILE
    elif place == "failed_check":
        report["failed_checks"] = [HOSTILE]
    elif place == "reason":
        report["reasons"] = [HOSTILE]
    elif place == "note":
        report["notes"].append(HOSTILE)
    elif place == "check":
        report["checks"][0].update(name=HOSTILE, status=HOSTILE, message=HOSTILE)
    elif place == "runtime":
        report["runtimes"][0].update(runtime=HOSTILE, failed_checks=[HOSTILE])
        report["approved_runtimes"] = [HOSTILE]
    else:
        report["policy"]["description"] = HOSTILE
    page = render_gate_html(report)
    assert ESCAPED in page
    assert "<script" not in page and "alert(1)</script>" not in page


def photo_figures(runtime: str, rule: str, false_alarms: int, max_rule_false_alarms: int) -> dict[str, Any]:
    """The figures ``photo_check.mosaic_check`` stores for one model."""
    return {
        "runtime": runtime,
        "rule": {"describe": rule},
        "grid": [8, 10],
        "photo_size": [2270, 1816],
        "tiles_per_mosaic": 154,
        "clean_mosaics": 40,
        "false_alarms": false_alarms,
        "crack_mosaics": 40,
        "found": 40,
        "crack_patches": 81,
        "crack_patches_in_marked_tiles": 80,
        "meets_bar": false_alarms <= 1,
        "max_rule": {"false_alarms": max_rule_false_alarms, "found": 40},
    }


def test_the_photo_level_section_shows_candidate_and_champion_before_and_after():
    """Both models' photo figures on the holdout mosaics, beside the highest-tile rule's; absent when not measured."""
    report = document()
    report["photo_level"] = {
        "mosaics": {"clean": 40, "with_cracks": 40, "max_cracks": 3},
        "marked": "a crack patch is in marked tiles when tiles at or above the tile threshold cover at least 50% of it",
        "candidate": photo_figures("litert-int8", "highest tile >= 0.8570", 1, 19),
        "champion": photo_figures("litert-int8", "highest tile >= 0.5000", 19, 19),
    }
    page = render_gate_html(report)
    assert "<h2>Full-size photos (mosaics of holdout patches)</h2>" in page
    assert "40 clean and 40 crack photos (1 to 3 crack patches each) of 8x10 holdout patches (2270x1816 px" in page
    assert (
        "<tr><td>candidate (litert-int8)</td><td>highest tile &gt;= 0.8570</td><td>1 of 40</td><td>40 of 40</td>"
        "<td>80 of 81</td><td>yes</td><td>19 / 40</td></tr>"
    ) in page
    assert "<td>champion (litert-int8)</td><td>highest tile &gt;= 0.5000</td><td>19 of 40</td>" in page
    assert "false alarms lie most on" not in page  # figures from before they named patches
    report["photo_level"]["champion"]["false_alarm_patches"] = {"holdout/Negative/<b>stain</b>.jpg": 12, "b.jpg": 3}
    page = render_gate_html(report)
    named = "The champion&#39;s false alarms lie most on holdout/Negative/&lt;b&gt;stain&lt;/b&gt;.jpg (12 of 19)."
    assert named in page
    assert "candidate&#39;s false alarms" not in page
    rule = "highest tile >= 0.8570 (up to 40 tiles; +0.70 log-odds per e-fold more)"
    risen = photo_figures("litert-int8", rule, 0, 9)
    risen["rule"].update(for_these_photos="highest tile >= 0.9321", calibrated_tiles=40)  # smaller than these
    risen["without_rise"] = {"false_alarms": 2, "found": 40}
    report["photo_level"] = {**report["photo_level"], "candidate": risen}
    assert "e-fold more); for these 154-tile photos: highest tile &gt;= 0.9321</td>" in render_gate_html(report)
    risen["rule"]["calibrated_tiles"] = 154  # no more tiles than calibrated: nothing rose, the rule alone
    assert "for these 154-tile photos" not in render_gate_html(report)
    report["photo_level"] = {**report["photo_level"], "candidate": None, "champion": None, "skipped": HOSTILE}
    assert f"Not measured: {ESCAPED}" in render_gate_html(report)
    report["photo_level"] = None
    assert "Full-size photos" not in render_gate_html(report)
