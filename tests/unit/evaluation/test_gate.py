"""The promotion gate: floors, no-regression against the champion, slices, runtime approval, reports."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from crack_model.cli.registry_commands import add_registry_commands
from crack_model.core.errors import CrackModelError, RuntimeChoiceError
from crack_model.data.synth import generate_dataset
from crack_model.evaluation.assess import evaluate_scorer
from crack_model.evaluation.gate import run_gate
from crack_model.evaluation.gate_checks import PROMOTE, REJECT
from crack_model.evaluation.holdout import load_holdout
from crack_model.evaluation.intervals import (
    Outcomes,
    intervals,
    paired_difference_intervals,
    point_figures,
    within_noise,
)
from crack_model.evaluation.policy import GatePolicy, load_policy
from crack_model.registry.audit_log import CHAMPION, check_history
from crack_model.registry.model_uri import REGISTRY_ENV
from crack_model.registry.naming import GateReportExistsError, PromotionConflictError
from crack_model.registry.versions import Registry
from crack_model.serving.scorer import load_scorer
from tests.gate_models import build_detector, variant

# The detector scores ~0.95 on the synthetic holdout; the two-epoch trained model calls every
# image a crack (recall 1, accuracy and precision 0.5): floors between the two tell them apart.
POLICY = {
    "policy_version": "test-1",
    "floors": {"crack_recall": 0.85, "accuracy": 0.85, "crack_precision": 0.85},
    "no_regression": {"crack_recall": 0.002, "accuracy": 0.005},
    "min_slice_images": 10,
    "min_runtime_agreement": 0.95,
    "bootstrap": {"resamples": 300, "confidence": 0.95, "seed": 3},
}


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    """Keep fetched registry models out of the home folder."""
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "gate-cache"))
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    """A hand-set dark-line detector with its LiteRT exports (version det-1)."""
    return build_detector(tmp_path_factory.mktemp("detector") / "model", "det-1")


@pytest.fixture(scope="module")
def holdout(tmp_path_factory) -> Path:
    """30 synthetic images per class at 64 px, split into slices site-a and site-b below each class."""
    source = tmp_path_factory.mktemp("holdout-source")
    generate_dataset(source, 30, size=64, seed=5)
    root = tmp_path_factory.mktemp("holdout")
    for class_name in ("Negative", "Positive"):
        for index, path in enumerate(sorted((source / class_name).glob("*.jpg"))):
            target = root / class_name / ("site-a" if index % 2 else "site-b") / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return root


def policy(**changes) -> GatePolicy:
    return GatePolicy.from_dict({**POLICY, **changes}, "test policy")


def new_registry(tmp_path: Path, *models: Path) -> Registry:
    registry = Registry(tmp_path / "store")
    for model_dir in models:
        registry.register(model_dir, "crack", actor="trainer")
    return registry


def test_first_model_passes_on_floors_alone(tmp_path, detector, holdout):
    """With no champion only the floors apply, the report says so, and promote=True makes it champion."""
    registry = new_registry(tmp_path, detector)
    seen = []
    report = run_gate(
        registry,
        "crack",
        "det-1",
        str(holdout),
        policy(),
        promote=True,
        actor="airflow",
        run_id="retrain-1",
        on_decision=seen.append,
    )
    assert report.decision == PROMOTE and report.failed_checks == []
    assert report.champion_version is None and report.document["comparison"] is None
    assert any("no champion: only the absolute floors apply" in note for note in report.notes)
    assert not any(check["name"].startswith("no_regression") for check in report.document["checks"])
    assert report.promoted and seen == [report]
    assert registry.resolve("crack", CHAMPION) == "det-1"
    entry = registry.history("crack")[-1]
    assert (entry.actor, entry.run_id, entry.gate_decision) == ("airflow", "retrain-1", PROMOTE)
    assert entry.to_version == "det-1" and "test-1" in entry.reason

    folder = tmp_path / "store" / "models" / "crack" / "versions" / "det-1"
    stored = json.loads((folder / "gate_report.json").read_text())
    assert stored["decision"] == PROMOTE and stored["policy"]["policy_version"] == "test-1"
    assert "Candidate" in (folder / "gate_report.html").read_text()
    assert report.approved_runtimes == ["litert-int8", "litert-fp32", "keras"]

    # The gate's figures are those of assess.evaluate_scorer through the serving path.
    scorer = load_scorer("models:/crack/det-1", "keras", registry=registry.uri)
    direct = evaluate_scorer(scorer, load_holdout(str(holdout), ["Negative", "Positive"]).images)
    for metric in ("crack_recall", "crack_precision", "accuracy", "roc_auc"):
        assert report.document["candidate"]["metrics"][metric] == pytest.approx(direct[metric])
    low, high = report.document["candidate"]["intervals"]["accuracy"]
    assert low <= direct["accuracy"] <= high and high - low > 0

    again = run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True)  # a retried task
    assert again.reused and again.decision == PROMOTE and again.promoted
    assert len(registry.history("crack")) == 1
    with pytest.raises(GateReportExistsError, match=r"policy differs.*write-once"):
        run_gate(registry, "crack", "det-1", str(holdout), policy(policy_version="test-2"))


def test_worse_candidate_is_rejected_and_the_champion_stays(tmp_path, detector, holdout, trained_model):
    """A candidate that calls everything a crack fails its floors and no-regression; each failure is named."""
    registry = new_registry(tmp_path, detector, trained_model.output_dir)
    candidate = trained_model.card.version
    registry.promote("crack", "det-1", expected_current=None, actor="ci", reason="baseline")
    history = registry.history("crack")
    report = run_gate(registry, "crack", candidate, str(holdout), policy(), promote=True)
    assert report.decision == REJECT and not report.promoted
    assert [name for name in report.failed_checks if not name.startswith("runtime")] == [
        "floor:accuracy",
        "floor:crack_precision",
        "no_regression:accuracy",
    ]
    assert "no_regression:crack_recall" not in report.failed_checks  # it does catch every crack
    assert registry.resolve("crack", CHAMPION) == "det-1"
    assert registry.history("crack") == history
    comparison = report.document["comparison"]["accuracy"]
    assert comparison["difference"] < 0 and comparison["within_noise"] is False

    folder = tmp_path / "store" / "models" / "crack" / "versions" / candidate
    stored = json.loads((folder / "gate_report.json").read_text())
    html = (folder / "gate_report.html").read_text()
    assert stored["failed_checks"] == report.failed_checks
    for check in report.failed_checks:
        assert check in html
    assert "Champion: det-1" in html and f"Candidate: {candidate}" in html  # both confusion matrices
    assert json.loads((folder / "approved_runtimes.json").read_text())["approved_runtimes"] == []


def test_better_candidate_is_promoted(tmp_path, detector, holdout):
    """The detector replaces a champion that misses most cracks: promoted, with a clear paired difference."""
    blind = variant(detector, tmp_path / "blind", "det-0-blind", threshold=1.0)
    registry = new_registry(tmp_path, blind, detector)
    registry.promote("crack", "det-0-blind", expected_current=None, actor="ci", reason="first model")
    report = run_gate(registry, "crack", "det-1", str(holdout), policy(), actor="airflow")
    assert report.decision == PROMOTE, report.reasons
    assert not report.promoted and registry.resolve("crack", CHAMPION) == "det-0-blind"  # evaluate only
    report = run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True, actor="airflow")
    assert report.reused and report.champion_version == "det-0-blind" and report.promoted
    recall = report.document["comparison"]["crack_recall"]
    assert recall["difference"] > 0.3 and recall["interval"][0] > 0 and recall["within_noise"] is False
    assert registry.resolve("crack", CHAMPION) == "det-1"
    history = registry.history("crack")
    assert (history[-1].from_version, history[-1].to_version) == ("det-0-blind", "det-1")
    assert check_history(registry.aliases("crack"), history) == []
    scorer = load_scorer("models:/crack@champion", registry=registry.uri)
    assert scorer.version == "det-1" and scorer.runtime.name == "litert-int8"

    # Rolled back: the gate task run again reuses its report, and must not put det-1 back.
    registry.rollback("crack", reason="false alarms at site 4", actor="oncall")
    with pytest.raises(CrackModelError, match=r"det-1 was champion until revision 3 \(rollback by oncall: false al"):
        run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True, actor="airflow")
    assert registry.resolve("crack", CHAMPION) == "det-0-blind" and len(registry.history("crack")) == 3
    assert run_gate(registry, "crack", "det-1", str(holdout), policy()).reused  # reading the report is fine
    # Checked where the promotion commits, so a rollback landing between the gate's check and its write counts.
    with pytest.raises(CrackModelError, match="det-1 was champion until revision 3"):
        registry.promote("crack", "det-1", expected_current="det-0-blind", actor="airflow", reason="gate passed",
                         unless_dethroned=True)  # fmt: skip


def test_no_floors_means_no_promotion(tmp_path, detector, holdout):
    """A policy without floors rejects even a good model, and says why."""
    registry = new_registry(tmp_path, detector)
    report = run_gate(registry, "crack", "det-1", str(holdout), policy(floors={}), promote=True)
    assert report.decision == REJECT and "policy:floors" in report.failed_checks
    assert any("no floors" in reason for reason in report.reasons)
    assert report.approved_runtimes == []
    assert registry.aliases("crack").get(CHAMPION) is None


def test_a_holdout_too_small_to_show_the_floors_rejects(tmp_path, detector, holdout):
    """30 images a class pass min_holdout_images 30 and fail 31: on a handful every floor is luck (it promoted on 2)."""
    registry = new_registry(tmp_path, detector)
    enough = run_gate(registry, "crack", "det-1", str(holdout), policy(min_holdout_images=30))
    assert [check["status"] for check in enough.document["checks"] if check["name"].startswith("holdout_size")] == [
        "pass", "pass"]  # fmt: skip
    registry = new_registry(tmp_path / "again", detector)
    report = run_gate(registry, "crack", "det-1", str(holdout), policy(min_holdout_images=31), promote=True)
    assert report.decision == REJECT
    assert set(report.failed_checks) == {"holdout_size:Negative", "holdout_size:Positive"}
    assert any("30 holdout images of class Positive, fewer than the 31" in reason for reason in report.reasons)
    assert registry.aliases("crack").get(CHAMPION) is None
    assert GatePolicy.from_dict({"policy_version": "x"}).min_holdout_images == 1  # policies from before: unchanged
    assert load_policy(None).min_holdout_images == 30  # the shipped policy asks for it


def test_a_disagreeing_export_is_not_approved(tmp_path, detector, holdout, trained_model):
    """An int8 file from another model is refused; the champion then serves with the fastest approved one."""
    tampered = variant(detector, tmp_path / "tampered", "det-3-tampered")
    shutil.copy(trained_model.output_dir / "model_int8.tflite", tampered / "model_int8.tflite")
    registry = new_registry(tmp_path, tampered)
    report = run_gate(registry, "crack", "det-3-tampered", str(holdout), policy(), promote=True)
    assert report.decision == PROMOTE
    assert report.approved_runtimes == ["litert-fp32", "keras"]
    int8 = next(runtime for runtime in report.document["runtimes"] if runtime["runtime"] == "litert-int8")
    assert not int8["approved"] and "runtime:litert-int8:agreement" in int8["failed_checks"]
    assert int8["label_agreement"] < 0.95
    assert any("litert-int8 not approved" in note for note in report.notes)
    # The card still lists int8 first; the gate's list wins.
    assert "litert-int8" in json.loads((tampered / "model.json").read_text())["approved_runtimes"]
    scorer = load_scorer("models:/crack@champion", registry=registry.uri)
    assert scorer.runtime.name == "litert-fp32" and scorer.version == "det-3-tampered"


def test_slice_floors_name_the_failing_slice(tmp_path, detector, holdout):
    """Faint cracks at one site fail that slice's floor even when the whole holdout passes; tiny slices are skipped."""
    shifted = tmp_path / "holdout"
    shutil.copytree(holdout, shifted)
    for path in sorted((shifted / "Positive" / "site-b").glob("*.jpg")):
        faint = Image.open(path).filter(ImageFilter.GaussianBlur(3))
        faint.save(path, quality=92)
    for index, path in enumerate(sorted((shifted / "Negative" / "site-a").glob("*.jpg"))[:3]):
        target = shifted / "Negative" / "site-c" / f"extra-{index}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    registry = new_registry(tmp_path, detector)
    floors = {"crack_recall": 0.3, "accuracy": 0.3, "crack_precision": 0.3}
    report = run_gate(
        registry, "crack", "det-1", str(shifted), policy(floors=floors, slice_floors={"*": {"crack_recall": 0.8}})
    )
    assert report.decision == REJECT
    assert [name for name in report.failed_checks if not name.startswith("runtime")] == [
        "slice_floor:site-b:crack_recall"
    ]
    slices = report.document["slices"]
    assert slices["site-a"]["metrics"]["crack_recall"] >= 0.8 > slices["site-b"]["metrics"]["crack_recall"]
    skipped = next(check for check in report.document["checks"] if check["name"] == "slice_floor:site-c:crack_recall")
    assert skipped["status"] == "skipped"


def test_a_champion_that_moved_during_the_gate_is_not_overwritten(tmp_path, detector, holdout, monkeypatch):
    """If someone promotes while the gate runs, the gate's promotion loses; the report and hook still record it."""
    import crack_model.evaluation.gate as gate_module

    first = variant(detector, tmp_path / "first", "det-0-blind", threshold=1.0)
    other = variant(detector, tmp_path / "other", "det-0-other", threshold=1.0)
    registry = new_registry(tmp_path, first, other, detector)
    registry.promote("crack", "det-0-blind", expected_current=None, actor="ci", reason="first")
    evaluate = gate_module.evaluate_on_holdout

    def evaluate_while_someone_promotes(*args, **kwargs):
        if registry.resolve("crack") == "det-0-blind":
            registry.promote("crack", "det-0-other", expected_current="det-0-blind", actor="bo", reason="hotfix")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(gate_module, "evaluate_on_holdout", evaluate_while_someone_promotes)
    seen = []
    with pytest.raises(PromotionConflictError, match="det-0-other"):
        run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True, on_decision=seen.append)
    assert registry.resolve("crack") == "det-0-other"
    assert seen[0].decision == PROMOTE and not seen[0].promoted and "det-0-other" in seen[0].promotion_error
    assert registry.gate_report("crack", "det-1")["champion_version"] == "det-0-blind"
    with pytest.raises(GateReportExistsError, match="champion is det-0-other now"):
        run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True)


def test_policy_file_and_mistakes(tmp_path):
    """The packaged policy has the agreed floors; unknown metrics and missing versions are refused."""
    packaged = load_policy()
    assert packaged.floors == {"crack_recall": 0.99, "accuracy": 0.98, "crack_precision": 0.95}
    assert packaged.max_drop == {"crack_recall": 0.002, "accuracy": 0.005}
    assert packaged.min_runtime_agreement == 0.995 and packaged.bootstrap_resamples == 1000
    with pytest.raises(CrackModelError, match="unknown metric 'recall'"):
        GatePolicy.from_dict({"policy_version": "x", "floors": {"recall": 0.9}})
    with pytest.raises(CrackModelError, match="policy_version"):
        GatePolicy.from_dict({"floors": {"accuracy": 0.9}})
    with pytest.raises(CrackModelError, match="unknown key"):
        GatePolicy.from_dict({"policy_version": "x", "floor": {"accuracy": 0.9}})
    with pytest.raises(CrackModelError, match="does not exist"):
        load_policy(tmp_path / "missing.json")


def test_bootstrap_intervals_are_paired_and_seeded():
    """Identical models differ by exactly 0 (within noise); a clear gap is not; a seed repeats the interval."""
    rng = np.random.default_rng(0)
    is_crack = rng.random(200) < 0.5
    good = Outcomes(is_crack, is_crack.copy(), np.ones(200, bool))
    flipped = rng.random(200) < 0.3
    says = is_crack ^ flipped
    worse = Outcomes(is_crack, says, says == is_crack)
    same = paired_difference_intervals(good, good, resamples=200, confidence=0.95, seed=1)
    assert same["accuracy"] == [0.0, 0.0] and within_noise(same["accuracy"]) is True
    gap = paired_difference_intervals(good, worse, resamples=200, confidence=0.95, seed=1)
    assert gap["accuracy"][0] > 0 and within_noise(gap["accuracy"]) is False
    first = intervals(worse, resamples=200, confidence=0.9, seed=7)
    assert first == intervals(worse, resamples=200, confidence=0.9, seed=7)
    point = point_figures(worse)["accuracy"]
    assert first["accuracy"][0] <= point <= first["accuracy"][1]
    no_cracks = Outcomes(np.zeros(5, bool), np.zeros(5, bool), np.ones(5, bool))
    assert point_figures(no_cracks)["crack_recall"] is None


def test_cli_gate_exit_codes_and_registry_commands(tmp_path, detector, holdout, capsys):
    """gate exits 0 on promote and 3 on reject; promote refuses an ungated champion; rollback and list work."""
    worse = variant(detector, tmp_path / "worse", "det-2-blind", threshold=1.0)
    registry = new_registry(tmp_path, detector, worse)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY))
    parser = argparse.ArgumentParser(prog="crack-model")
    add_registry_commands(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args(argv)
        return args.handler(args)

    store = ["--store", registry.uri]
    gate = ["gate", *store, "--holdout", str(holdout), "--policy", str(policy_file), "--actor", "cli"]
    assert run(*gate, "--candidate", "det-1", "--promote") == 0
    assert run(*gate, "--candidate", "det-2-blind", "--promote") == 3
    output = capsys.readouterr().out
    assert "FAILED floor:crack_recall" in output and "gate_report.html" in output
    assert registry.resolve("crack") == "det-1"
    with pytest.raises(CrackModelError, match="rejected by the gate"):
        run("registry", "promote", *store, "--version", "det-2-blind", "--reason", "try")
    with pytest.raises(CrackModelError, match="has no registered version nosuch"):  # not "no gate report"
        run("registry", "promote", *store, "--version", "nosuch", "--reason", "try")
    assert run("registry", "promote", *store, "--version", "det-2-blind", "--reason", "drill", "--force") == 0
    forced = load_scorer("models:/crack@champion", registry=registry.uri)
    assert (forced.version, forced.runtime.name) == ("det-2-blind", "keras")  # no runtime approved: the reference
    assert run("registry", "rollback", *store, "--reason", "drill over", "--actor", "oncall") == 0
    assert registry.resolve("crack") == "det-1"
    capsys.readouterr()
    assert run("registry", "list", *store, "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    assert {entry["version"]: entry["gate_decision"] for entry in listing} == {"det-1": PROMOTE, "det-2-blind": REJECT}
    entries = registry.history("crack")
    assert [entry.event for entry in entries] == ["promote", "promote", "rollback"]
    assert entries[1].gate_decision == REJECT  # the forced promotion is visible in the audit log
    with pytest.raises(CrackModelError, match="--store"):
        run("registry", "list")


def test_exact_intervals_do_not_claim_certainty_from_a_small_holdout():
    """30 of 30 cracks caught: the bootstrap says [1, 1], the exact interval starts at 0.025**(1/30)."""
    import numpy as np

    from crack_model.evaluation.intervals import Outcomes, exact_intervals, intervals

    is_crack = np.array([True] * 30 + [False] * 30)
    outcomes = Outcomes(is_crack, is_crack.copy(), np.ones(60, dtype=bool))
    assert intervals(outcomes, resamples=200, confidence=0.95, seed=1)["crack_recall"] == [1.0, 1.0]
    exact = exact_intervals(outcomes, confidence=0.95)
    assert exact["crack_recall"][0] == pytest.approx(0.025 ** (1 / 30), abs=1e-5)
    assert exact["crack_recall"][1] == 1.0
    assert exact["accuracy"][0] == pytest.approx(0.025 ** (1 / 60), abs=1e-5)


def test_a_registered_version_loaded_by_its_folder_runs_with_the_gates_runtimes(tmp_path, detector):
    """``--model <store>/models/crack/versions/V`` (README's sharded example): the gate approved only keras, so
    neither auto nor approved_only may pick the int8 export the card lists."""
    registry = new_registry(tmp_path, detector)
    registry.add_gate_result("crack", "det-1", report={"decision": "promote"}, html="", approved_runtimes=["keras"])
    folder = registry.version_url("crack", "det-1")
    assert load_scorer(f"file://{folder}/").runtime.name == "keras"
    with pytest.raises(RuntimeChoiceError, match="runtime litert-int8 is not approved"):
        load_scorer(folder, "litert-int8", approved_only=True)
    assert load_scorer(str(detector)).runtime.name == "litert-int8"  # an unregistered folder: its card's list
    (tmp_path / "current").symlink_to(folder)
    for other_path in (f"{folder}/.", f"{folder}/../det-1", f"{folder}/model.keras", str(tmp_path / "current")):
        assert load_scorer(other_path).runtime.name == "keras", other_path  # not the card's int8, unchecked


def test_a_champion_whose_files_are_gone_fails_the_gate_saying_what_to_do(tmp_path, detector, holdout, trained_model):
    """It stopped with a bare "object not found", no report, and no candidate could pass until someone acted."""
    registry = new_registry(tmp_path, detector, trained_model.output_dir)
    registry.promote("crack", "det-1", expected_current=None, actor="ci", reason="baseline")
    (tmp_path / "store" / "models" / "crack" / "versions" / "det-1" / "model.keras").unlink()
    with pytest.raises(CrackModelError, match=r"the champion crack det-1, which the candidate must be compared with, "
                       r"cannot be loaded \(.*model\.keras.*\): restore its files from a backup, or roll the champion "
                       r"back \(crack_champion_rollback\)"):  # fmt: skip
        run_gate(registry, "crack", trained_model.card.version, str(holdout), policy(), promote=True)
    assert registry.resolve("crack", CHAMPION) == "det-1"


def test_registry_promote_takes_only_a_pass_against_the_champion_of_now(tmp_path, detector, holdout):
    """`registry promote` took any stored pass: one made against an earlier champion, or of a version since rolled
    back for cause (`crack-model gate --promote` refused both)."""
    good = variant(detector, tmp_path / "good", "det-3")
    worse = variant(detector, tmp_path / "worse", "det-2-blind", threshold=1.0)
    registry = new_registry(tmp_path, detector, good, worse)
    parser = argparse.ArgumentParser(prog="crack-model")
    add_registry_commands(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> int:
        args = parser.parse_args([*argv, "--store", registry.uri])
        return args.handler(args)

    run_gate(registry, "crack", "det-1", str(holdout), policy(), promote=True)
    assert run_gate(registry, "crack", "det-3", str(holdout), policy()).champion_version == "det-1"
    assert run("registry", "promote", "--version", "det-2-blind", "--reason", "drill", "--force") == 0
    with pytest.raises(CrackModelError, match="against champion det-1, but the champion is det-2-blind now"):
        run("registry", "promote", "--version", "det-3", "--reason", "gate passed")
    assert run("registry", "rollback", "--reason", "drill over") == 0
    assert run("registry", "promote", "--version", "det-3", "--reason", "gate passed") == 0  # det-1 again: it holds
    assert run("registry", "rollback", "--reason", "missed cracks at site 4") == 0
    with pytest.raises(CrackModelError, match=r"det-3 was champion until revision \d+ \(rollback"):
        run("registry", "promote", "--version", "det-3", "--reason", "gate passed")
    assert registry.resolve("crack") == "det-1"
