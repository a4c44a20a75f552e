"""A store as the workflow leaves it after four nights, built with the workflow's own writers.

The ops view's tests (overview, history, batch and model pages, the FastAPI app) read it. Time is
set by hand (``Clock``) so audit records and run summaries carry the dates of the story:

- 2026-11-01: ``CHAMPION`` trained, gated (promote) and promoted by the retraining DAG;
- 2026-11-20: ``REJECTED`` trained and rejected by the gate (crack recall floor);
- night 2026-11-21: batch ``2026-11-21`` validated and scored by ``CHAMPION``;
- 2026-11-22 01:00: ``SECOND`` promoted; night 2026-11-22: batch ``2026-11-22`` validated, its scoring
  did not finish; 09:00: an operator rolls the champion back to ``CHAMPION``;
- nights 2026-11-23 and 2026-11-24: batch ``2026-11-24`` (with a quarantined upload, drift checked)
  scored; ``blank-frames`` failed validation (drifted); ``2026-11-23`` validated, ``2026-11-25`` waiting.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from crack_model.core.documents import QuarantineManifest, ShardStats
from crack_model.core.local_store import LocalStore
from crack_model.core.model_card import ModelCard
from crack_model.pipelines.nightly import publish_run_summary
from crack_model.quality.outcome import ValidationOutcome
from crack_model.registry.versions import Registry
from crack_model.serving.batch_results import RESULT_COLUMNS, summarize

CHAMPION = "20261101T020000Z-aaaa1111"
REJECTED = "20261120T020000Z-bbbb2222"
SECOND = "20261122T000000Z-cccc3333"
SCORED = "2026-11-24"
EARLY = "2026-11-21"
ROLLBACK_ACTOR = "ops:alice"
ROLLBACK_REASON = "false alarms on site b"
EXACT = {"crack_recall": [0.9645, 0.9988], "crack_precision": [0.9431, 0.9921], "accuracy": [0.9611, 0.9913]}
# (relative key, status, label, crack probability): two cracks, one clear photo, one unreadable, one held back.
PREDICTIONS = [
    ("site a/photo-0.jpg", "ok", "Positive", "0.91"),
    ("site a/photo-1.jpg", "ok", "Negative", "0.05"),
    ("site a/photo-2.jpg", "ok", "Positive", "0.97"),
    ("site a/photo-3.jpg", "error", "", ""),
    ("bad.jpg", "quarantined", "", ""),
]


class Clock:
    """Stands in for ``utc_now`` in the registry and the nightly pipeline while the story is written."""

    def __init__(self) -> None:
        self.now = "2026-11-01T03:00:00Z"

    def __call__(self) -> str:
        return self.now


# The champion's photo rule, as training records it (each mosaic counted once per runtime that scored it).
PHOTO_RULE = {
    "photo_threshold": 0.7,
    "photo_min_tiles": 2,
    "photo_tiles": 154,
    "photo_tail_scale": 0.5,
    "photo_max_threshold": 0.95,
    "patch_confirm_threshold": 0.32,
    "photo_calibration": {"runtimes": ["litert-int8", "litert-fp32"], "clean_mosaics": 240, "crack_mosaics": 80,
                          "labeled_photos": 6},
}  # fmt: skip


def _register(registry: Registry, folder: Path, version: str, started_from: Any = None, **card: Any) -> None:
    folder.mkdir(parents=True)
    ModelCard(
        version=version, threshold=0.42, created_at=f"{version[:4]}-{version[4:6]}-{version[6:8]}T02:00:00Z", **card
    ).save(folder)
    (folder / "model.keras").write_bytes(b"not a real model: the overview never loads it")
    metrics = {"test": {"crack_recall": 0.97, "crack_precision": 0.96, "accuracy": 0.965, "images": 300},
               "started_from": started_from}  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "split.csv").write_text(
        "uri,label,sha256,split,slice\n"
        + "".join(f"labeled/Positive/metu/p{index}.jpg,Positive,{index:064x},train,metu\n" for index in range(3))
        + "labeled/Negative/n0.jpg,Negative,"
        + "f" * 64
        + ",test,\n"
    )
    registry.register(folder, "crack", actor="tester", run_id=f"manual__{version}")


def gate_report(version: str, decision: str, champion: str | None, failed: list[str]) -> dict[str, Any]:
    """The fields of a gate report (crack_model.evaluation.gate.run_gate) that the ops view reads."""
    metrics = {"crack_recall": 0.99, "crack_precision": 0.975, "accuracy": 0.98, "roc_auc": 0.998, "images": 400,
               "cracks": 200, "missed_cracks": 2, "false_alarms": 5}  # fmt: skip
    intervals = {"crack_recall": [0.975, 1.0], "crack_precision": [0.95, 0.995], "accuracy": [0.965, 0.992],
                 "roc_auc": [0.994, 1.0]}  # fmt: skip
    return {
        "format": 1, "name": "crack", "candidate_version": version, "champion_version": champion,
        "decision": decision, "failed_checks": failed, "reasons": [f"{check} below its floor" for check in failed],
        "holdout": {"uri": "holdout", "images": 400, "per_class": {"Negative": 200, "Positive": 200},
                    "listing_digest": "d" * 64},
        "policy": {"policy_version": 3, "digest": "e" * 64, "bootstrap": {"confidence": 0.9}},
        "finished_at": "2026-11-20T03:00:00Z", "gated_by": "airflow:crack_retraining", "run_id": f"run-{version}",
        "candidate": {"version": version, "runtime": "keras", "metrics": metrics, "intervals": intervals,
                      "exact_intervals": EXACT},
    }  # fmt: skip


def outcome(batch_id: str, result: str, reasons: list[str], objects: int, drift: dict[str, Any] | None):
    quarantined = (
        [{"key": f"incoming/{batch_id}/bad.jpg", "reasons": ["decodes: no"]}] if "quarantine" in result else []
    )
    checks = [
        {"name": reason.split(":")[0], "success": False, "report_only": False, "reason": "featureless frames",
         "unexpected_count": objects, "element_count": objects, "table": "objects",
         "offenders": [f"incoming/{batch_id}/frame-{index:02d}.png" for index in range(objects)]}
        for reason in reasons
    ]  # fmt: skip
    counts = {"objects": objects, "quarantined": len(quarantined), "failed_expectations": len(reasons)}
    return ValidationOutcome(batch_id, "incoming", result, reasons, quarantined, counts, checks, drift, {},
                             validated_at="2026-11-24T02:10:00Z")  # fmt: skip


def write_validation(store: Any, validated: ValidationOutcome) -> None:
    store.write(f"validation/{validated.batch_id}/report.html", b"<html><body>report</body></html>")
    store.write(f"validation/{validated.batch_id}/outcome.json", json.dumps(validated.to_dict()).encode())


def _scored_batch(store: LocalStore, batch_id: str, model: str, rows: list[tuple[str, str, str, str]]) -> Any:
    """Uploads, predictions.csv (the scoring engine's columns), overlays for the cracks, summary and _SUCCESS."""
    table = []
    for relative, status, label, probability in rows:
        store.write(f"incoming/{batch_id}/{relative}", b"jpeg bytes")
        row = dict.fromkeys(RESULT_COLUMNS, "")
        row.update(key=f"incoming/{batch_id}/{relative}", status=status, label=label, crack_probability=probability,
                   threshold="0.42" if status == "ok" else "", model_version=model)  # fmt: skip
        table.append(row)
        if status == "ok":
            store.write(f"results/{batch_id}/overlays/{relative}.png", b"png")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    store.write(f"results/{batch_id}/predictions.csv", buffer.getvalue().encode())
    scored = sum(1 for row in rows if row[1] != "quarantined")
    stats = [ShardStats(images=scored, seconds=0.5, finished_at="2026-11-24T02:00:00Z",
                        runtime="litert-int8", crack_class="Positive", threshold=0.42)]  # fmt: skip
    summary = summarize(batch_id, table, model, stats, 1, None)
    summary.write(store, f"results/{batch_id}/summary.json")
    summary.write(store, f"results/{batch_id}/_SUCCESS")
    return summary


def build_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    """The four nights above, in a local store under ``root``."""
    clock = Clock()
    monkeypatch.setattr("crack_model.registry.aliases.utc_now", clock)
    monkeypatch.setattr("crack_model.pipelines.nightly.utc_now", clock)
    store = LocalStore(root / "store")
    registry = Registry(store)
    _register(registry, root / "v1", CHAMPION, **PHOTO_RULE)
    registry.add_gate_result("crack", CHAMPION, report=gate_report(CHAMPION, "promote", None, []),
                             html="<html>gate</html>", approved_runtimes=["litert-int8", "keras"])  # fmt: skip
    registry.promote("crack", CHAMPION, expected_current=None, actor="airflow:crack_retraining",
                     reason="passed gate policy", run_id="scheduled__2026-11-01")  # fmt: skip
    afresh = {"model": "/cache/registry/crack-1", "version": CHAMPION, "used": False, "reason": "its base differs"}
    _register(registry, root / "v2", REJECTED, started_from=afresh)
    rejected = gate_report(REJECTED, "reject", CHAMPION, ["floor:crack_recall"])
    registry.add_gate_result("crack", REJECTED, report=rejected, html="<html>gate</html>", approved_runtimes=[])

    # Night 2026-11-21: a small batch scored by CHAMPION.
    early = _scored_batch(store, EARLY, CHAMPION, [("a.jpg", "ok", "Positive", "0.8"), ("b.jpg", "ok", "Negative",
                                                   "0.1"), ("c.jpg", "ok", "Negative", "0.2")])  # fmt: skip
    write_validation(store, outcome(EARLY, "passed", [], 3, None))
    clock.now = "2026-11-21T02:40:00Z"
    publish_run_summary(store.uri, "scheduled__2026-11-21T02:00:00+00:00",
                        [{"batch_id": EARLY, "outcome": "passed"}], [early.as_dict()])  # fmt: skip

    # 2026-11-22: SECOND promoted, a night whose scoring did not finish, then a rollback.
    from_champion = {
        "model": "/cache/registry/crack-1",
        "version": CHAMPION,
        "used": True,
        "anchor_weight": 0.0,
        "kept_in_train": 412,
    }
    _register(registry, root / "v3", SECOND, started_from=from_champion)
    registry.add_gate_result("crack", SECOND, report=gate_report(SECOND, "promote", CHAMPION, []),
                             html="<html>gate</html>", approved_runtimes=["keras"])  # fmt: skip
    clock.now = "2026-11-22T01:00:00Z"
    registry.promote("crack", SECOND, expected_current=CHAMPION, actor="airflow:crack_retraining",
                     reason="passed gate policy", run_id="scheduled__2026-11-22")  # fmt: skip
    store.write("incoming/2026-11-22/a.jpg", b"jpeg")
    write_validation(store, outcome("2026-11-22", "passed", [], 1, None))
    store.write(f"results/2026-11-22/_parts/{SECOND}/shard-0000-of-0002/part-00000.csv", b"key\n")
    clock.now = "2026-11-22T02:40:00Z"
    publish_run_summary(store.uri, "scheduled__2026-11-22T02:00:00+00:00",
                        [{"batch_id": "2026-11-22", "outcome": "passed"}], [], planned=["2026-11-22"])  # fmt: skip
    clock.now = "2026-11-22T09:00:00Z"
    registry.rollback("crack", reason=ROLLBACK_REASON, actor=ROLLBACK_ACTOR, run_id="manual__rollback")

    # The scored batch of nights 23 and 24, with a quarantined upload and drift checked.
    drift = {"checked": True, "drifted": False, "psi": {"brightness": 0.04, "blur": 0.11}, "drifted_features": [],
             "threshold": 0.25, "note": "no drift"}  # fmt: skip
    write_validation(store, outcome(SCORED, "passed_with_quarantine", [], 5, drift))
    summary = _scored_batch(store, SCORED, CHAMPION, PREDICTIONS)
    store.write(f"quarantine/{SCORED}/uploads/bad.jpg", b"not a jpeg")
    QuarantineManifest(SCORED, "passed_with_quarantine", "2026-11-24T02:10:00Z",
                       [{"key": f"incoming/{SCORED}/bad.jpg", "reasons": ["decodes: no"],
                         "quarantine_key": f"quarantine/{SCORED}/uploads/bad.jpg"}]).write(
        store, f"quarantine/{SCORED}/quarantine.json")  # fmt: skip

    # A batch that failed validation (and drifted), one validated but not scored, one new.
    store.write("incoming/blank-frames/frame-00.png", b"png")
    failed_drift = {"checked": True, "drifted": True, "psi": {"contrast": 1.7, "blur": 0.9},
                    "drifted_features": ["blur", "contrast"], "threshold": 0.25, "note": "drifted"}  # fmt: skip
    write_validation(store, outcome("blank-frames", "failed", ["contrast_in_bounds: 12 of 12 fail"], 12, failed_drift))
    store.write("incoming/2026-11-23/a.jpg", b"jpeg")
    write_validation(store, outcome("2026-11-23", "passed", [], 1, None))
    for index in range(3):
        store.write(f"incoming/2026-11-25/site/{index}.jpg", b"jpeg")
    store.write("incoming/2026-11-25/_READY", b"")
    # The training suite's report is not a batch.
    training = ValidationOutcome("labeled", "training", "passed", [], [], {"objects": 200}, [], None, {})
    store.write("validation/labeled/outcome.json", json.dumps(training.to_dict()).encode())

    validations = [{"batch_id": SCORED, "outcome": "passed_with_quarantine", "quarantined": 1, "objects": 5},
                   {"batch_id": "blank-frames", "outcome": "failed", "quarantined": 0, "objects": 12,
                    "drifted": True, "reasons": ["contrast_in_bounds: 12 of 12 fail"]}]  # fmt: skip
    clock.now = "2026-11-23T02:40:00Z"
    publish_run_summary(store.uri, "scheduled__2026-11-23T02:00:00+00:00", validations[:1], [summary.as_dict()])
    clock.now = "2026-11-24T02:40:00Z"
    publish_run_summary(store.uri, "scheduled__2026-11-24T02:00:00+00:00", validations, [summary.as_dict()])
    return store
