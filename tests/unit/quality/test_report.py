"""The validation report page: rendered from its Jinja template, every value autoescaped, nothing lost."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crack_model.quality.batch_validation import validate_batch
from crack_model.quality.outcome import FAILED, PASSED_WITH_QUARANTINE, ValidationOutcome
from crack_model.quality.report import REPORT_ROWS, render_report

HOSTILE = "<script>alert(1)</script>.jpg"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;.jpg"
PROJECT = Path(__file__).resolve().parents[3]


def check(name: str, *, success: bool, offenders: list[str], column: str | None = "brightness") -> dict[str, Any]:
    return {
        "name": name, "expectation": "expect_column_values_to_be_between", "table": "objects", "column": column,
        "success": success, "per_object": True, "description": f"{name} holds.", "reason": f"{name} is broken",
        "kwargs": {"column": column, "mostly": 0.95, "min_value": 80.0}, "element_count": 100,
        "unexpected_count": len(offenders), "unexpected_percent": float(len(offenders)), "observed_value": None,
        "offenders": offenders, "error": "",
    }  # fmt: skip


def outcome(key: str, **changes: Any) -> ValidationOutcome:
    values: dict[str, Any] = {
        "batch_id": "night-1",
        "suite": "incoming",
        "outcome": PASSED_WITH_QUARANTINE,
        "reasons": [],
        "quarantined": [{"key": key, "reasons": ["brightness_in_bounds: brightness = 12.5 <img src=x>"]}],
        "counts": {"objects": 100, "quarantined": 1},
        "checks": [check("brightness_in_bounds", success=True, offenders=[key])],
        "drift": None,
        "thresholds": {},
        "source": "s3://bucket/incoming/night-1",
        "files": {"report": "s3://bucket/validation/night-1/report.html"},
        "validated_at": "2026-01-02T03:04:05Z",
    }
    return ValidationOutcome(**{**values, **changes})


def objects(*keys: str) -> pd.DataFrame:
    return pd.DataFrame({"key": list(keys), "brightness": [12.5] * len(keys), "decode_error": [None] * len(keys)})


def test_the_page_shows_outcome_counts_quarantine_checks_offenders_and_files():
    key = "incoming/night-1/site-a/dark.jpg"
    page = render_report(outcome(key), objects(key))
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<title>Validation of night-1: passed_with_quarantine</title>" in page
    assert '<span class="badge passed_with_quarantine">passed_with_quarantine</span>' in page
    assert "source <code>s3://bucket/incoming/night-1</code>, validated 2026-01-02T03:04:05Z." in page
    assert "<tr><th>objects</th><td>100</td></tr>" in page
    assert "<h2>Quarantined objects (1)</h2>" in page and "Why the batch failed" not in page
    assert f"<tr><td><code>{key}</code></td><td>brightness_in_bounds: brightness = 12.5 &lt;img src=x&gt;</td>" in page
    assert '<td><span class="ok">passed</span></td>' in page and "<td>1 (1.0%)</td>" in page
    assert "{&#34;column&#34;: &#34;brightness&#34;, &#34;mostly&#34;: 0.95, &#34;min_value&#34;: 80.0}" in page
    assert "<h2>brightness_in_bounds: 1 offending (within its tolerance: these objects are quarantined)</h2>" in page
    assert "<th>object</th><th>brightness</th><th>decode_error</th>" in page
    assert f"<tr><td><code>{key}</code></td><td>12.5</td><td></td></tr>" in page
    assert "<li>report: <code>s3://bucket/validation/night-1/report.html</code></li>" in page


def test_a_failed_batch_lists_its_reasons_at_most_report_rows_offenders_and_drift():
    keys = [f"incoming/night-1/{index:04}.jpg" for index in range(REPORT_ROWS + 5)]
    drift = {
        "note": "drifted from the training data",
        "threshold": 0.25,
        "psi": {"brightness": 4.19317, "blur": 0.1},
        "psi_unadjusted": {"brightness": 4.1, "blur": 0.14083},
        "class_mix": {"Negative": 0.55, "Positive": 0.45},
    }
    report = outcome(
        keys[0],
        outcome=FAILED,
        reasons=["bad_objects_within_tolerance: 205 of 205 objects break per-object checks"],
        quarantined=[],
        checks=[check("brightness_in_bounds", success=False, offenders=keys)],
        drift=drift,
    )
    page = render_report(report, objects(*keys))
    assert "<h2>Why the batch failed</h2>" in page and "<li>bad_objects_within_tolerance: 205 of 205" in page
    assert '<td><span class="bad">FAILED</span></td>' in page
    heading = f"<h2>brightness_in_bounds: {len(keys)} offending (failed)</h2>"
    assert f"{heading}\n<p>brightness_in_bounds is broken</p>" in page
    assert keys[REPORT_ROWS - 1] in page and keys[REPORT_ROWS] not in page
    assert "<tr><td>... and 5 more (see result.json)</td></tr>" in page
    assert "<h2>Drift</h2>\n<p>drifted from the training data</p>" in page
    assert '<tr><td>brightness</td><td class="bad">4.193</td><td>4.1</td></tr>' in page
    assert '<tr><td>blur</td><td class="ok">0.100</td><td>0.1408</td></tr>' in page
    assert "Class mix fitted: {&#34;Negative&#34;: 0.55, &#34;Positive&#34;: 0.45}" in page


def test_object_keys_reasons_and_messages_are_escaped_never_raw_markup():
    """An object named like markup (keys come from uploads) shows as text everywhere: autoescape is on."""
    key = f"incoming/night-1/{HOSTILE}"
    report = outcome(
        key,
        reasons=[HOSTILE],
        counts={HOSTILE: 1},
        checks=[check(HOSTILE, success=True, offenders=[key], column="brightness")],
        drift={"note": HOSTILE, "threshold": 0.25, "psi": {HOSTILE: 0.1}, "psi_unadjusted": {}, "class_mix": None},
        files={HOSTILE: HOSTILE},
        source=HOSTILE,
    )
    page = render_report(report, objects(key))
    assert f"<code>incoming/night-1/{ESCAPED}</code>" in page
    assert page.count(ESCAPED) >= 10
    assert "<script" not in page and "alert(1)</script>" not in page


def test_a_report_written_for_a_real_batch_escapes_an_uploaded_file_name(tmp_path, metu_sample):
    """End to end: a truncated upload named like markup is quarantined and shows escaped in report.html."""
    photos = [path for name in ("Negative", "Positive") for path in sorted((metu_sample / name).glob("*.jpg"))[:20]]
    batch = tmp_path / "incoming" / "b1"
    (batch / HOSTILE).parent.mkdir(parents=True)  # the key's "/" makes a folder on a local store
    for path in photos:
        (batch / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
    (batch / HOSTILE).write_bytes(photos[0].read_bytes()[:1000])
    result = validate_batch(str(tmp_path), "b1")
    assert result.outcome == PASSED_WITH_QUARANTINE and result.quarantined_keys == {f"incoming/b1/{HOSTILE}"}
    page = (tmp_path / "validation" / "b1" / "report.html").read_text()
    assert f"<code>incoming/b1/{ESCAPED}</code>" in page
    assert "<script" not in page


@pytest.mark.parametrize("package", ["crack_model.quality", "crack_model.evaluation"])
def test_templates_ship_as_package_data(package):
    """Every template is listed in pyproject's package-data, so an installed wheel can render the pages."""
    data = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][package]
    templates = [item for item in resources.files(package).joinpath("templates").iterdir() if item.is_file()]
    assert templates
    for template in templates:
        assert any(Path(f"templates/{template.name}").match(pattern) for pattern in data), template.name
