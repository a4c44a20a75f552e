"""The validation report: one self-contained HTML page per run (``templates/validation_report.html.j2``).

It shows the outcome and counts, why the batch failed, the quarantined objects, every check, the
objects that broke each check (with the profile columns that matter), drift, and the run's files.
Values are escaped by the template engine (``crack_model.core.html``), never by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crack_model.core import html
from crack_model.quality.outcome import PASSED_WITH_QUARANTINE, ValidationOutcome
from crack_model.quality.tables import plain

if TYPE_CHECKING:
    import pandas as pd

REPORT_ROWS = 200  # offending objects listed per expectation in the HTML report
TEMPLATE = "validation_report.html.j2"
ROW_NAMES = {"objects": "object", "classes": "class"}


def cell(value: Any) -> str:
    """A table cell's text: floats to 4 significant digits, dicts and lists as JSON, missing as empty."""
    value = plain(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return "" if value is None else str(value)


def unexpected(check: Mapping[str, Any]) -> str:
    """How many rows broke a check, with their share when any did: ``3 (2.9%)``."""
    text = "" if check["unexpected_count"] is None else f"{check['unexpected_count']}"
    if check["unexpected_percent"] is not None and check["unexpected_count"]:
        text += f" ({check['unexpected_percent']:.1f}%)"
    return text


def offender_sections(outcome: ValidationOutcome, objects: pd.DataFrame) -> list[dict[str, Any]]:
    """One section per check with offenders: its verdict, and the first ``REPORT_ROWS`` rows that broke it."""
    rows = objects.set_index("key", drop=False)
    sections = []
    for check in outcome.checks:
        if not check["offenders"] or check["name"] == "bad_objects_within_tolerance":
            continue
        if not check["success"]:
            verdict, text = "failed", check["reason"]
        elif outcome.outcome == PASSED_WITH_QUARANTINE:
            verdict, text = "within its tolerance: these objects are quarantined", check["description"]
        else:
            verdict, text = "within its tolerance, but the batch failed for other reasons", check["description"]
        columns = [name for name in (check["column"], "decode_error") if name and name in rows.columns]
        offenders = [
            {"key": str(key), "cells": [cell(rows.at[key, name]) for name in columns] if key in rows.index else []}
            for key in check["offenders"][:REPORT_ROWS]
        ]
        sections.append({
            "name": check["name"], "count": len(check["offenders"]), "verdict": verdict, "text": text,
            "row_name": ROW_NAMES.get(check["table"], check["table"]), "columns": columns, "rows": offenders,
            "more": max(0, len(check["offenders"]) - REPORT_ROWS),
        })  # fmt: skip
    return sections


def render_report(outcome: ValidationOutcome, objects: pd.DataFrame) -> str:
    """A self-contained HTML page: the outcome, each failing expectation and the objects that broke it."""
    return html.render(
        "crack_model.quality",
        TEMPLATE,
        outcome=outcome,
        sections=offender_sections(outcome, objects),
        cell=cell,
        unexpected=unexpected,
    )
