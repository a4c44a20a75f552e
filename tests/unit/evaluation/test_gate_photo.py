"""The gate report's photo-level section: candidate and champion on mosaics of holdout patches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.data.synth import generate_dataset
from crack_model.evaluation.gate import run_gate
from crack_model.evaluation.gate_photo import photo_level_note
from crack_model.evaluation.policy import GatePolicy, load_policy
from crack_model.registry.model_uri import REGISTRY_ENV
from crack_model.registry.versions import Registry
from tests.gate_models import build_detector, variant

POLICY = GatePolicy.from_dict(
    {
        "policy_version": "photo-1",
        "floors": {"crack_recall": 0.85, "accuracy": 0.85},
        "no_regression": {"crack_recall": 0.002, "accuracy": 0.005},
        "min_slice_images": 10,
        "min_runtime_agreement": 0.95,
        "bootstrap": {"resamples": 100, "confidence": 0.95, "seed": 3},
    },
    "test policy",
)


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    """Keep fetched registry models out of the home folder."""
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "gate-photo-cache"))
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The dark-line detector tiling at 64 px: without a photo rule (det-old), and with one (det-photo)."""
    source = build_detector(tmp_path_factory.mktemp("detector") / "model", "det-source")
    root = tmp_path_factory.mktemp("variants")
    rule = {"photo_threshold": 0.6, "photo_calibration": {"split": "validation"}}
    # Seed 26's failure: a photo threshold above anything the serving runtime scores (int8 tops at 0.996).
    unreachable = {"photo_threshold": 0.9999, "photo_calibration": {"split": "validation"}}
    return {
        "det-old": variant(source, root / "old", "det-old", tile_size=64),
        "det-photo": variant(source, root / "photo", "det-photo", tile_size=64, **rule),
        "det-unreachable": variant(source, root / "unreachable", "det-unreachable", tile_size=64, **unreachable),
    }


@pytest.fixture(scope="module")
def holdout(tmp_path_factory) -> Path:
    """30 synthetic 64 px images per class."""
    root = tmp_path_factory.mktemp("holdout")
    generate_dataset(root, 30, size=64, seed=5)
    return root


def with_photo_floors(**floors: float) -> GatePolicy:
    return GatePolicy.from_dict({**POLICY.as_dict(), "policy_version": "photo-floors", "photo_floors": floors})


def registry_with(tmp_path: Path, models: dict[str, Path]) -> Registry:
    registry = Registry(tmp_path / "store")
    for model_dir in models.values():
        registry.register(model_dir, "crack", actor="trainer")
    return registry


def test_the_report_compares_candidate_and_champion_on_holdout_mosaics(tmp_path, models, holdout):
    """The candidate (served runtime, photo rule) and the old champion (highest tile) on the same mosaics."""
    registry = registry_with(tmp_path, models)
    registry.promote("crack", "det-old", expected_current=None, actor="ci", reason="first")
    report = run_gate(registry, "crack", "det-photo", str(holdout), POLICY)
    section = report.document["photo_level"]
    candidate, champion = section["candidate"], section["champion"]
    assert candidate["runtime"] == report.approved_runtimes[0] and champion["runtime"] == "litert-int8"
    assert candidate["rule"]["photo_threshold"] == 0.6 and champion["rule"]["photo_threshold"] is None
    for figures in (candidate, champion):
        assert figures["clean_mosaics"] == 40 and figures["crack_mosaics"] == 40
        assert figures["grid"] == [4, 6] and figures["crack_patches"] >= 40
        assert figures["found"] <= figures["crack_mosaics"] and figures["false_alarms"] <= figures["clean_mosaics"]
    # The old champion's photo figures are its highest-tile figures: the same rule.
    assert (champion["false_alarms"], champion["found"]) == tuple(champion["max_rule"].values())
    folder = tmp_path / "store" / "models" / "crack" / "versions" / "det-photo"
    html = (folder / "gate_report.html").read_text()
    assert "Full-size photos (mosaics of holdout patches)" in html and "highest tile &gt;= 0.6000" in html
    assert json.loads((folder / "gate_report.json").read_text())["photo_level"] == section
    assert (photo_level_note(section) is None) == candidate["meets_bar"]


def test_a_candidate_without_a_photo_rule_gets_no_section(tmp_path, models, holdout):
    """A model trained before the photo rule labels photos as before: no mosaics are scored for it."""
    registry = registry_with(tmp_path, {"det-old": models["det-old"]})
    report = run_gate(registry, "crack", "det-old", str(holdout), POLICY)
    assert report.document["photo_level"] is None
    html = (tmp_path / "store" / "models" / "crack" / "versions" / "det-old" / "gate_report.html").read_text()
    assert "Full-size photos" not in html


def test_a_holdout_too_small_for_mosaics_is_said_not_hidden(tmp_path, models, holdout):
    """Three no-crack images cannot make a photo: the section says so and the gate still decides."""
    small = tmp_path / "small"
    for class_name, count in (("Negative", 3), ("Positive", 30)):
        for path in sorted((holdout / class_name).glob("*.jpg"))[:count]:
            (small / class_name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, small / class_name / path.name)
    registry = registry_with(tmp_path, {"det-photo": models["det-photo"]})
    report = run_gate(registry, "crack", "det-photo", str(small), POLICY)
    assert "3 no-crack patches cannot fill a mosaic" in report.document["photo_level"]["skipped"]
    html = (tmp_path / "store" / "models" / "crack" / "versions" / "det-photo" / "gate_report.html").read_text()
    assert "Not measured: 3 no-crack patches" in html


def test_photo_floors_reject_a_rule_that_cannot_find_crack_photos(tmp_path, models, holdout):
    """Patch figures pass, but a photo threshold no tile reaches finds no crack photo: the gate rejects it."""
    registry = registry_with(tmp_path, {name: models[name] for name in ("det-photo", "det-unreachable")})
    strict = with_photo_floors(photo_crack_recall=0.95, photo_specificity=0.9)
    rejected = run_gate(registry, "crack", "det-unreachable", str(holdout), strict, promote=True)
    figures = rejected.document["photo_level"]["candidate"]
    assert figures["found"] == 0 and figures["false_alarms"] == 0
    assert rejected.decision == "reject" and not rejected.promoted
    assert rejected.failed_checks == ["photo_floor:photo_crack_recall"]  # the patch floors all passed
    assert "0 of 40 crack photos found" in rejected.reasons[0] and figures["runtime"] in rejected.reasons[0]
    checks = {check["name"]: check for check in rejected.document["checks"]}
    assert checks["photo_floor:photo_specificity"]["status"] == "pass"
    assert checks["photo_floor:photo_specificity"]["value"] == 1.0
    html = (tmp_path / "store" / "models" / "crack" / "versions" / "det-unreachable" / "gate_report.html").read_text()
    assert "photo_floor:photo_crack_recall" in html and "photo_crack_recall &gt;= 0.95" in html  # row and caption
    assert "photo_crack_recall 0.0000 &lt; floor 0.95 (0 of 40 crack photos found" in html  # the failed check's reason

    # The same detector with a threshold its tiles reach finds the crack photos, but it reads the mosaics'
    # seams (dark borders) as cracks too: the other floor rejects it.
    judged = run_gate(registry, "crack", "det-photo", str(holdout), strict)
    figures = judged.document["photo_level"]["candidate"]
    assert figures["found"] >= 38 and figures["false_alarms"] > 4
    assert judged.failed_checks == ["photo_floor:photo_specificity"]


def test_photo_floors_are_skipped_with_a_reason_when_nothing_was_measured(tmp_path, models, holdout):
    """A card without a photo rule, or a holdout too small for mosaics: skipped, said, and not failed."""
    strict = with_photo_floors(photo_crack_recall=0.95)
    registry = registry_with(tmp_path, {"det-old": models["det-old"]})
    report = run_gate(registry, "crack", "det-old", str(holdout), strict)
    check = next(check for check in report.document["checks"] if check["name"] == "photo_floor:photo_crack_recall")
    assert check["status"] == "skipped" and "no photo rule" in check["message"]
    assert report.decision == "promote"

    small = tmp_path / "small"
    for class_name, count in (("Negative", 3), ("Positive", 30)):
        for path in sorted((holdout / class_name).glob("*.jpg"))[:count]:
            (small / class_name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, small / class_name / path.name)
    registry = registry_with(tmp_path / "second", {"det-unreachable": models["det-unreachable"]})
    report = run_gate(registry, "crack", "det-unreachable", str(small), strict)
    check = next(check for check in report.document["checks"] if check["name"] == "photo_floor:photo_crack_recall")
    assert check["status"] == "skipped" and "cannot fill a mosaic" in check["message"]


def test_the_packaged_policy_has_photo_floors_and_refuses_unknown_photo_metrics():
    packaged = load_policy()
    assert packaged.photo_floors == {"photo_crack_recall": 0.9, "photo_specificity": 0.75}
    assert packaged.as_dict()["photo_floors"] == packaged.photo_floors
    assert "photo_floors" not in POLICY.as_dict()  # a policy without them keeps its digest
    with pytest.raises(CrackModelError, match="unknown metric 'crack_recall'"):
        GatePolicy.from_dict({"policy_version": "x", "photo_floors": {"crack_recall": 0.9}})
    with pytest.raises(CrackModelError, match="must be in"):
        GatePolicy.from_dict({"policy_version": "x", "photo_floors": {"photo_crack_recall": 1.5}})


def test_a_photo_check_that_cannot_run_fails_the_floors(tmp_path, models, holdout, monkeypatch):
    """A patch that cannot be read or scored is not a small holdout: the rule is unmeasured, so it is not promoted."""
    from crack_model.evaluation import gate_photo

    def broken(*_args, **_kwargs):
        raise CrackModelError("mosaic clean-007 could not be scored: cannot read: ConnectionError: reset by peer")

    monkeypatch.setattr(gate_photo, "mosaic_check", broken)
    registry = registry_with(tmp_path, {"det-photo": models["det-photo"]})
    report = run_gate(registry, "crack", "det-photo", str(holdout), with_photo_floors(photo_crack_recall=0.5))
    assert report.decision == "reject" and report.failed_checks == ["photo_floor:photo_crack_recall"]
    assert "could not run: mosaic clean-007 could not be scored" in report.reasons[0]
    assert "reset by peer" in report.document["photo_level"]["failed"]
    html = (tmp_path / "store" / "models" / "crack" / "versions" / "det-photo" / "gate_report.html").read_text()
    assert "Not measured: the check could not run" in html
