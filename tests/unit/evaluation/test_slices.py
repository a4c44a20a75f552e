"""Per-slice decisions: the threshold meets the target on each big-enough slice; the gate's per-slice checks."""

from __future__ import annotations

import re

import numpy as np
import pytest

from crack_model.core.errors import CrackModelError
from crack_model.evaluation.gate_checks import slice_floor_checks, slice_regression_checks
from crack_model.evaluation.metrics import choose_slice_threshold, choose_threshold
from crack_model.evaluation.policy import GatePolicy, load_policy


def scored_slices() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """100 old-site cracks scored high, 20 new-site cracks scored lower, 10 tiny-slice cracks scored lowest."""
    rng = np.random.default_rng(0)
    crack = np.r_[rng.uniform(0.8, 1.0, 100), rng.uniform(0.3, 0.9, 20), rng.uniform(0.05, 0.2, 4)]
    clean = np.r_[rng.uniform(0.0, 0.1, 100), rng.uniform(0.0, 0.2, 20), rng.uniform(0.0, 0.1, 4)]
    slices = ["old"] * 100 + ["new"] * 20 + ["tiny"] * 4
    is_crack = np.r_[np.ones(124, bool), np.zeros(124, bool)]
    return is_crack, np.r_[crack, clean], slices + slices


def recall(is_crack: np.ndarray, probability: np.ndarray, threshold: float) -> float:
    return float((probability[is_crack] >= threshold).mean())


def test_threshold_meets_the_target_on_every_big_enough_slice():
    """The overall target alone misses new-site cracks; the per-slice threshold catches 95% of each slice's."""
    is_crack, probability, slices = scored_slices()
    names = np.array(slices)
    overall = choose_threshold(is_crack, probability, 0.95)
    new = names == "new"
    assert recall(is_crack[new], probability[new], overall) < 0.95  # the premise: the average hides the new site
    threshold, per_slice = choose_slice_threshold(is_crack, probability, slices, 0.95, min_slice_images=30)
    assert set(per_slice) == {"old", "new"}  # tiny (8 images) is below min_slice_images
    for name in ("old", "new"):
        mask = names == name
        assert recall(is_crack[mask], probability[mask], threshold) >= 0.95
    assert threshold == min(per_slice["new"], overall)
    tiny = names == "tiny"
    assert recall(is_crack[tiny], probability[tiny], threshold) < 0.95  # not forced down for 8 images


def test_threshold_without_slices_is_the_overall_one():
    """One slice: the same threshold as choose_threshold; mismatched lengths are an error."""
    is_crack, probability, _ = scored_slices()
    threshold, _ = choose_slice_threshold(is_crack, probability, ["(none)"] * len(is_crack), 0.99)
    assert threshold == choose_threshold(is_crack, probability, 0.99)
    with pytest.raises(ValueError, match="one crack probability and one slice"):
        choose_slice_threshold(is_crack, probability, ["a"], 0.99)


def slice_report(images: int, **metrics: float) -> dict:
    return {"images": images, "cracks": images // 2, "metrics": metrics}


POLICY = {
    "policy_version": "t",
    "floors": {"crack_recall": 0.9},
    "slice_floors": {"*": {"crack_recall": 0.97}},
    "slice_no_regression": {"crack_recall": 0.01, "accuracy": 0.01},
    "min_slice_images": 30,
}


def test_slice_regression_checks_fail_a_regressed_big_slice_and_skip_small_ones():
    """A big slice that dropped beyond the limit fails; a small one is skipped; a new slice has nothing to regress."""
    policy = GatePolicy.from_dict(POLICY)
    candidate = {"metu": slice_report(300, crack_recall=0.98, accuracy=0.985),
                 "site-b": slice_report(800, crack_recall=0.99, accuracy=0.99),
                 "tiny": slice_report(10, crack_recall=0.5, accuracy=0.5)}  # fmt: skip
    champion = {"metu": slice_report(300, crack_recall=1.0, accuracy=0.99),
                "tiny": slice_report(10, crack_recall=1.0, accuracy=1.0)}  # fmt: skip
    checks = {check.name: check for check in slice_regression_checks(candidate, champion, policy)}
    assert checks["slice_no_regression:metu:crack_recall"].status == "fail"
    assert checks["slice_no_regression:metu:accuracy"].status == "pass"  # -0.005 within 0.01
    assert checks["slice_no_regression:tiny:crack_recall"].status == "skipped"
    assert "min_slice_images" in checks["slice_no_regression:tiny:crack_recall"].message
    assert checks["slice_no_regression:site-b:crack_recall"].status == "skipped"


def test_slice_floors_apply_to_big_slices_only():
    """The "*" floor fails a big slice below it and skips a slice under min_slice_images."""
    policy = GatePolicy.from_dict(POLICY)
    slices = {"site-b": slice_report(800, crack_recall=0.96), "tiny": slice_report(10, crack_recall=0.1)}
    statuses = {check.name: check.status for check in slice_floor_checks(slices, policy, "slice_floor")}
    assert statuses == {"slice_floor:site-b:crack_recall": "fail", "slice_floor:tiny:crack_recall": "skipped"}


def test_default_policy_has_per_slice_floors_and_no_regression():
    """The shipped policy gates every big-enough slice on floors and on regression against the champion."""
    policy = load_policy()
    assert policy.floors_for_slice("any-site").keys() >= {"crack_recall", "accuracy"}
    assert policy.slice_max_drop.keys() >= {"crack_recall", "accuracy"}
    assert policy.min_slice_images >= 30
    assert policy.as_dict()["slice_no_regression"] == dict(policy.slice_max_drop)


def test_slice_no_regression_rejects_unknown_metrics():
    """A typo in slice_no_regression is an error naming the known metrics."""
    with pytest.raises(CrackModelError, match="slice_no_regression"):
        GatePolicy.from_dict({**POLICY, "slice_no_regression": {"recall": 0.01}})


def evaluation_on(is_crack: np.ndarray, says_crack: np.ndarray, version: str):
    """An Evaluation as the gate sees it, from per-image truths and calls."""
    from crack_model.evaluation.holdout import Evaluation
    from crack_model.evaluation.intervals import Outcomes, point_figures

    outcomes = Outcomes(is_crack, says_crack, is_crack == says_crack)
    matrix = [[int((~is_crack & ~says_crack).sum()), int((~is_crack & says_crack).sum())],
              [int((is_crack & ~says_crack).sum()), int((is_crack & says_crack).sum())]]  # fmt: skip
    confusion = {"labels": ["Negative", "Positive"], "rows_true_columns_predicted": matrix}
    metrics = {**point_figures(outcomes), "images": len(is_crack), "cracks": int(is_crack.sum()),
               "confusion_matrix": confusion}  # fmt: skip
    return Evaluation(version, "keras", 0.5, says_crack.astype(float), metrics, outcomes)


def test_the_gate_rejects_a_candidate_that_regresses_on_one_big_slice():
    """decide() runs the per-slice no-regression checks: a worse site-b slice rejects, the overall figures pass."""
    from types import SimpleNamespace

    from crack_model.data.labeled import LabeledImage
    from crack_model.evaluation.gate import decide

    policy = load_policy()
    slices = ["metu"] * 400 + ["site-b"] * 100
    is_crack = np.array([index % 2 == 0 for index in range(500)])
    champion_calls = is_crack.copy()
    candidate_calls = is_crack.copy()
    candidate_calls[400:404] = ~candidate_calls[400:404]  # 4 site-b mistakes: 96% there, 99.2% overall
    labels = ["Positive" if crack else "Negative" for crack in is_crack]
    holdout = SimpleNamespace(slices=slices, keys=[f"{n}.jpg" for n in range(500)],
                              images=[LabeledImage(f"/{n}.jpg", label) for n, label in enumerate(labels)])  # fmt: skip

    body = decide(policy, holdout, evaluation_on(is_crack, candidate_calls, "cand"),
                  evaluation_on(is_crack, champion_calls, "champ"), [])  # fmt: skip

    failed = body["failed_checks"]
    assert any(name.startswith("slice_no_regression:site-b") for name in failed), failed
    assert not any(name.startswith("slice_no_regression:metu") for name in failed)


def test_the_gate_report_names_the_holdout_images_the_candidate_gets_wrong_new_ones_first():
    """decide() lists each wrong image once, with both models' scores; an error the champion made too comes last."""
    from types import SimpleNamespace

    from crack_model.data.labeled import LabeledImage
    from crack_model.evaluation.gate import decide

    is_crack = np.array([True, True, False, False, True, False])
    champion_calls = np.array([True, False, False, False, True, False])  # misses image 1
    candidate_calls = np.array([True, False, True, False, True, False])  # misses image 1 too, flags image 2
    labels = ["Positive" if crack else "Negative" for crack in is_crack]
    holdout = SimpleNamespace(slices=[f"s{n}" for n in range(6)],
                              keys=[f"holdout/{label}/{n}.jpg" for n, label in enumerate(labels)],
                              images=[LabeledImage(f"/{n}.jpg", label) for n, label in enumerate(labels)])  # fmt: skip

    body = decide(load_policy(), holdout, evaluation_on(is_crack, candidate_calls, "cand"),
                  evaluation_on(is_crack, champion_calls, "champ"), [])  # fmt: skip

    assert body["misclassified"] == [
        {"key": "holdout/Negative/2.jpg", "slice": "s2", "label": "Negative", "candidate_crack_probability": 1.0,
         "champion_crack_probability": 0.0, "new": True},
        {"key": "holdout/Positive/1.jpg", "slice": "s1", "label": "Positive", "candidate_crack_probability": 0.0,
         "champion_crack_probability": 0.0, "new": False},
    ]  # fmt: skip
    without_champion = decide(load_policy(), holdout, evaluation_on(is_crack, candidate_calls, "cand"), None, [])
    assert sorted(entry["key"] for entry in without_champion["misclassified"]) == [
        "holdout/Negative/2.jpg", "holdout/Positive/1.jpg"]  # fmt: skip
    assert "new" not in without_champion["misclassified"][0]


BOTH = {"metu", "site-b"}  # what a candidate adapted to site-b trained on


def two_surfaces(site_b_missed: int, metu_missed: int = 0):
    """A holdout of 300 METU and 900 site-b patches (half cracks); calls that miss the first N cracks of each."""
    from types import SimpleNamespace

    from crack_model.data.labeled import LabeledImage

    slices = ["metu"] * 300 + ["site-b"] * 900
    is_crack = np.array([index % 2 == 0 for index in range(1200)])
    labels = ["Positive" if crack else "Negative" for crack in is_crack]
    holdout = SimpleNamespace(slices=slices, keys=[f"{n}.jpg" for n in range(1200)],
                              images=[LabeledImage(f"/{n}.jpg", label) for n, label in enumerate(labels)])  # fmt: skip

    def calls(site_b: int, metu: int) -> np.ndarray:
        says = is_crack.copy()
        says[0 : 2 * metu : 2] = False
        says[300 : 300 + 2 * site_b : 2] = False
        return says

    return holdout, is_crack, calls(site_b_missed, metu_missed)


def test_a_new_surface_is_held_to_its_slice_floors_not_to_the_overall_floor():
    """Bar 2's shape: the champion misses 20 of 450 site-b cracks, the candidate 9. Overall crack recall is 0.985,
    below the 0.99 floor only because site-b is three quarters of the holdout: the candidate is promoted, with
    the overall floor read on METU; with no champion the whole holdout must reach it; losing METU cracks fails."""
    from crack_model.evaluation.gate import decide

    holdout, is_crack, champion_calls = two_surfaces(site_b_missed=20)
    _, _, candidate_calls = two_surfaces(site_b_missed=9)
    candidate = evaluation_on(is_crack, candidate_calls, "cand")
    assert candidate.metrics["crack_recall"] < 0.99  # the premise: the whole holdout is below the floor

    champion = evaluation_on(is_crack, champion_calls, "champ")
    body = decide(load_policy(), holdout, candidate, champion, [], champion_trained_on={"metu"},
                  candidate_trained_on=BOTH)  # fmt: skip

    assert body["decision"] == "promote", body["reasons"]
    assert body["new_surfaces"] == {"crack_recall": ["site-b"], "accuracy": ["site-b"]}
    assert body["training_slices"] == {"champion": ["metu"], "candidate": ["metu", "site-b"]}
    floor = next(check for check in body["checks"] if check["name"] == "floor:crack_recall")
    assert floor["value"] == 1.0 and "without slice site-b" in floor["message"]
    assert any("slice site-b" in note for note in body["notes"])
    assert body["approved_runtimes"] == ["keras"]

    alone = decide(load_policy(), holdout, candidate, None, [])
    assert "floor:crack_recall" in alone["failed_checks"]
    assert alone["new_surfaces"] == {}

    _, _, metu_losing = two_surfaces(site_b_missed=9, metu_missed=3)
    worse = decide(load_policy(), holdout, evaluation_on(is_crack, metu_losing, "cand"), champion, [],
                   champion_trained_on={"metu"}, candidate_trained_on=BOTH)  # fmt: skip
    assert "floor:crack_recall" in worse["failed_checks"]  # 147 of 150 METU cracks: 0.98 < 0.99


@pytest.mark.parametrize(
    ("champion_trained_on", "candidate_trained_on", "why"),
    [
        ({"metu", "site-b"}, BOTH, "it trained there"),  # a champion slipping on its own ground
        ({"metu"}, {"metu"}, "the candidate did not train there either"),  # it brings nothing (or a misnamed slice)
        (None, BOTH, "are unknown"),  # a champion registered before manifests kept slices
        ({"metu"}, None, "are unknown"),
    ],
)
def test_a_slice_is_new_only_where_the_candidate_trained_and_the_champion_did_not(
    champion_trained_on, candidate_trained_on, why
):
    """Otherwise the overall floors read the whole holdout (the candidate fails at 0.985), and a note says why."""
    from crack_model.evaluation.gate import decide

    holdout, is_crack, champion_calls = two_surfaces(site_b_missed=20)
    _, _, candidate_calls = two_surfaces(site_b_missed=9)
    candidate, champion = evaluation_on(is_crack, candidate_calls, "cand"), evaluation_on(is_crack, champion_calls, "c")

    body = decide(load_policy(), holdout, candidate, champion, [], champion_trained_on=champion_trained_on,
                  candidate_trained_on=candidate_trained_on)  # fmt: skip
    assert body["new_surfaces"] == {}
    assert "floor:crack_recall" in body["failed_checks"]
    assert any("slice site-b" in note and why in note for note in body["notes"]), body["notes"]
    assert body["training_slices"]["champion"] == (sorted(champion_trained_on) if champion_trained_on else None)


def test_new_surfaces_are_big_slices_below_each_floor():
    """Per floor: a slice counts as new only where the champion is below that floor and it has enough images."""
    from crack_model.evaluation.gate_scope import new_surfaces

    policy = GatePolicy.from_dict({**POLICY, "floors": {"crack_recall": 0.99, "accuracy": 0.98}})
    champion = {"metu": slice_report(300, crack_recall=1.0, accuracy=0.99),
                "site-b": slice_report(900, crack_recall=0.95, accuracy=0.985),
                "tiny": slice_report(10, crack_recall=0.5, accuracy=0.5)}  # fmt: skip
    trained = {"metu", "site-b", "site-c", "tiny"}
    assert new_surfaces(champion, policy, {"metu"}, trained) == ({"crack_recall": ["site-b"]}, [])


def test_a_floor_reads_the_whole_holdout_when_nothing_would_hold_the_candidate_on_the_new_surface():
    """No slice floor or slice no-regression for the metric (precision here), or too little holdout left beside
    the new surfaces: the slice is not new for that floor, which then reads the whole holdout."""
    from crack_model.evaluation.gate_scope import new_surfaces

    policy = GatePolicy.from_dict({**POLICY, "floors": {"crack_recall": 0.99, "crack_precision": 0.95}})
    champion = {"metu": slice_report(300, crack_recall=1.0, crack_precision=0.99),
                "site-c": slice_report(900, crack_recall=0.95, crack_precision=0.9)}  # fmt: skip
    trained = {"metu", "site-c", "tiny"}
    assert new_surfaces(champion, policy, {"metu"}, trained)[0] == {"crack_recall": ["site-c"]}  # not precision
    unregressed = GatePolicy.from_dict({**POLICY, "slice_no_regression": {"accuracy": 0.01}})
    assert new_surfaces(champion, unregressed, {"metu"}, trained)[0] == {}  # nothing would hold crack recall on site-c
    both_below = {"metu": slice_report(300, crack_recall=0.98), "site-c": slice_report(900, crack_recall=0.95),
                  "tiny": slice_report(4, crack_recall=1.0)}  # fmt: skip
    assert new_surfaces(both_below, policy, {"tiny"}, trained)[0] == {}  # 4 images left: the whole holdout is read


def test_the_floor_on_a_part_of_the_holdout_says_when_that_part_is_too_small_to_show_it():
    """The exact-interval note is about the images the floor read: 150 METU cracks cannot show 0.99."""
    from crack_model.evaluation.gate import decide

    holdout, is_crack, champion_calls = two_surfaces(site_b_missed=20)
    _, _, candidate_calls = two_surfaces(site_b_missed=9)
    body = decide(load_policy(), holdout, evaluation_on(is_crack, candidate_calls, "cand"),
                  evaluation_on(is_crack, champion_calls, "champ"), [], champion_trained_on={"metu"},
                  candidate_trained_on=BOTH)  # fmt: skip
    assert any(note.startswith("crack_recall 1.0000 passes its floor 0.99 on this holdout (without slice site-b")
               and "too few images" in note for note in body["notes"]), body["notes"]  # fmt: skip


def test_a_renamed_slice_holding_the_champions_images_is_not_new():
    """METU moved from the class folder into labeled/<class>/metu/ between two trainings: the same images,
    so the champion knows that surface whatever it was called."""
    from crack_model.evaluation.gate_scope import trained_surfaces

    champion = [
        {"uri": f"/old/{n}.jpg", "label": "Positive", "sha256": f"{n:064x}", "slice": "(none)"} for n in range(3)
    ]
    candidate = [{**row, "uri": f"/new/{n}.jpg", "slice": "metu"} for n, row in enumerate(champion)]
    candidate.append({"uri": "/new/b.jpg", "label": "Positive", "sha256": "f" * 64, "slice": "site-b"})
    assert trained_surfaces(champion, candidate) == ({"(none)", "metu"}, {"metu", "site-b"})
    assert trained_surfaces([{k: v for k, v in row.items() if k != "slice"} for row in champion], candidate) == (
        None, {"metu", "site-b"})  # fmt: skip


def test_a_slice_floor_for_a_slice_the_holdout_lacks_fails_naming_the_slices_it_has():
    """`site_b` for `site-b` in the policy: the candidate was promoted with no slice check, no note."""
    from types import SimpleNamespace

    from crack_model.data.labeled import LabeledImage
    from crack_model.evaluation.gate import decide

    policy = GatePolicy.from_dict(
        {**POLICY, "slice_floors": {"*": {"accuracy": 0.5}, "site_b": {"crack_recall": 0.99}}}
    )
    is_crack = np.array([index % 2 == 0 for index in range(100)])
    labels = ["Positive" if crack else "Negative" for crack in is_crack]
    holdout = SimpleNamespace(slices=["metu"] * 50 + ["site-b"] * 50, keys=[f"{n}.jpg" for n in range(100)],
                              images=[LabeledImage(f"/{n}.jpg", label) for n, label in enumerate(labels)])  # fmt: skip

    body = decide(policy, holdout, evaluation_on(is_crack, is_crack.copy(), "cand"), None, [])

    assert body["failed_checks"] == ["slice_floor:site_b"]
    check = next(check for check in body["checks"] if check["name"] == "slice_floor:site_b")
    assert "the holdout does not have (its slices: metu, site-b)" in check["message"]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"bootstrap": {"seed": -1}}, "bootstrap seed must be from 0 to 4294967295, got -1"),
        ({"bootstrap": {"seed": 2.5}}, "bootstrap seed must be a whole number, got 2.5"),
        ({"bootstrap": "abc"}, "bootstrap must be an object"),
        ({"bootstrap": {"resamples": 1e12}}, "bootstrap resamples must be from 0 to 100000"),
        ({"min_slice_images": 2.9}, "min_slice_images must be a whole number, got 2.9"),
        ({"min_slice_images": True}, "min_slice_images must be a whole number, got True"),
        ({"min_holdout_images": float("inf")}, "min_holdout_images must be a whole number, got inf"),
        ({"min_holdout_images": 10**400}, "min_holdout_images must be from 0 to 1000000000"),
        ({"policy_version": None}, "'policy_version' must be a name or a number, got None"),
    ],
)
def test_policy_numbers_that_would_crash_after_scoring_or_mean_something_else_are_refused(change, said):
    """A seed of -1 crashed the gate after every model was scored; 2.9 images became 2, true became 1."""
    with pytest.raises(CrackModelError, match=re.escape(said)):
        GatePolicy.from_dict({**POLICY, **change}, "p.json")
