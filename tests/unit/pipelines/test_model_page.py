"""One model version in detail (crack_model.pipelines.model_page) on the registry of ops_store."""

from __future__ import annotations

import hashlib

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.pipelines import ops_files
from crack_model.pipelines.model_page import model_page, patch_rule_summary, photo_rule_summary
from crack_model.registry.naming import VersionNotFoundError
from tests.unit.pipelines.ops_store import (
    CHAMPION,
    EXACT,
    PHOTO_RULE,
    REJECTED,
    ROLLBACK_ACTOR,
    ROLLBACK_REASON,
    SECOND,
)


def test_lineage_goes_back_to_the_training_data_digests(store):
    """Version -> training run, code, card -> the data manifest's sha256 and content digest the registry recorded."""
    data = model_page(store.uri, "crack", CHAMPION)
    lineage = data["lineage"]
    assert lineage["run_id"] == f"manual__{CHAMPION}" and lineage["registered_by"] == "tester"
    manifest = lineage["data_manifest"]
    stored = store.read(f"models/crack/versions/{CHAMPION}/data_manifest.csv")
    assert manifest["sha256"] == hashlib.sha256(stored).hexdigest()
    assert manifest["images"] == 4 and manifest["per_label"] == {"Negative": 1, "Positive": 3}
    assert manifest["per_slice"] == {"(none)": 1, "metu": 3}  # an image with no slice folder: the gate's "(none)"
    assert len(manifest["content_digest"]) == 64
    assert lineage["card"]["threshold"] == 0.42
    assert lineage["photo_rule"] == {
        "describe": "highest tile >= 0.7000 (up to 154 tiles; +0.50 log-odds per e-fold more, at most 0.9500) "
        "and 2 touching tiles >= 0.4200",
        "runtimes": ["litert-int8", "litert-fp32"], "clean_mosaics": 120, "crack_mosaics": 40, "labeled_photos": 6,
    }  # fmt: skip
    assert model_page(store.uri, "crack", SECOND)["lineage"]["photo_rule"] is None  # photos: by their highest tile
    assert lineage["patch_rule"] == ("scored from 0.4200 up to 0.9, only when its mean over itself and its three "
                                     "flips reaches 0.3200")  # fmt: skip
    assert model_page(store.uri, "crack", SECOND)["lineage"]["patch_rule"] is None  # by the threshold alone
    assert "invalid" in (patch_rule_summary({"threshold": 0.5, "patch_confirm_threshold": "high"}) or "")
    calibration = {
        **PHOTO_RULE["photo_calibration"],
        "clean_mosaics": 120,
        "crack_mosaics": 40,
        "crack_like_photos": {"photos": {}, "note": None},
    }  # a record that counts each mosaic once
    counted_once = photo_rule_summary({**PHOTO_RULE, "threshold": 0.42, "photo_calibration": calibration}) or {}
    assert (counted_once["clean_mosaics"], counted_once["crack_mosaics"]) == (120, 40)
    assert {item["name"] for item in lineage["files"]} >= {"model.keras", "model.json", "data_manifest.csv"}
    assert lineage["started_from"] is None  # the first model: no champion to start from
    assert model_page(store.uri, "crack", SECOND)["lineage"]["started_from"]["version"] == CHAMPION


def test_gate_figures_with_exact_intervals_runtimes_and_report_link(store):
    """The gate: decision, holdout, figures with bootstrap and exact intervals, approved runtimes, the report's key."""
    data = model_page(store.uri, "crack", CHAMPION)
    gate = data["gate"]
    assert gate["decision"] == "promote" and gate["holdout"]["images"] == 400 and gate["confidence"] == 0.9
    recall = gate["metrics"]["crack_recall"]
    assert (recall["exact_low"], recall["exact_high"]) == tuple(EXACT["crack_recall"])
    assert (recall["low"], recall["high"]) == (0.975, 1.0)
    assert gate["metrics"]["roc_auc"]["exact_low"] is None  # no proportion: bootstrap only
    assert data["approved_runtimes"] == ["litert-int8", "keras"]
    assert data["links"]["gate_report"] == f"models/crack/versions/{CHAMPION}/gate_report.html"
    assert ops_files.viewable(data["links"]["gate_report"])


def test_promotion_audit_names_who_when_and_which_run(store):
    """Every alias change to or from the version, newest first: the rollback by an operator, the promotions."""
    data = model_page(store.uri, "crack", CHAMPION)
    assert data["aliases"] == ["champion"]
    assert [(entry["event"], entry["actor"], entry["run_id"]) for entry in data["audit"]] == [
        ("rollback", ROLLBACK_ACTOR, "manual__rollback"),
        ("promote", "airflow:crack_retraining", "scheduled__2026-11-22"),
        ("promote", "airflow:crack_retraining", "scheduled__2026-11-01"),
    ]
    assert data["audit"][0]["reason"] == ROLLBACK_REASON and data["audit"][0]["at"] == "2026-11-22T09:00:00Z"
    second = model_page(store.uri, "crack", SECOND)
    assert second["aliases"] == [] and [entry["event"] for entry in second["audit"]] == ["rollback", "promote"]


def test_rejected_version_has_its_failed_checks_and_no_audit(store):
    """A rejected candidate: the failed checks and the champion it was compared with; no alias ever moved to it."""
    data = model_page(store.uri, "crack", REJECTED)
    assert data["gate"]["decision"] == "reject" and data["gate"]["failed_checks"] == ["floor:crack_recall"]
    assert data["gate"]["compared_with"] == CHAMPION
    assert data["audit"] == [] and data["approved_runtimes"] == []


def test_unknown_or_invalid_versions_are_errors(store):
    """A version that is not registered is VersionNotFoundError; a name or version that could escape is refused."""
    with pytest.raises(VersionNotFoundError):
        model_page(store.uri, "crack", "20990101T000000Z-ffff0000")
    for name, version in (("crack", "../aliases.json"), ("../models", CHAMPION), ("crack", "")):
        with pytest.raises(CrackModelError):
            model_page(store.uri, name, version)
