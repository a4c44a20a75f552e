"""Cross-validation: folds keep near-duplicates together, every image is scored once, intervals are exact."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.data.labeled import LabeledImage
from crack_model.training.cross_validation import (
    cross_validate,
    grouped_folds,
    outcomes_from_matrix,
    repeat_cross_validation,
)


def images_with_duplicates() -> list[LabeledImage]:
    """60 images per class; every 6th shares its perceptual hash with the next (a re-encoded copy)."""
    images = []
    for label in ("Negative", "Positive"):
        for index in range(60):
            group = index - 1 if index % 6 == 1 else index
            images.append(LabeledImage(f"/{label}/{index}.jpg", label, f"{label}{index}".ljust(64, "0"),
                                       f"{label}{group}".ljust(16, "0")))  # fmt: skip
    return images


def test_folds_keep_near_duplicate_groups_together_and_balance_classes():
    """Each near-duplicate pair sits in one fold; folds cover every image once, classes spread evenly."""
    images = images_with_duplicates()
    folds = grouped_folds(images, 5, seed=1)
    assert sorted(index for fold in folds for index in fold) == list(range(len(images)))
    fold_of = {index: number for number, fold in enumerate(folds) for index in fold}
    for index, image in enumerate(images):
        for other, candidate in enumerate(images):
            if candidate.perceptual_hash == image.perceptual_hash:
                assert fold_of[index] == fold_of[other]
    for fold in folds:
        counts = Counter(images[index].label for index in fold)
        assert 10 <= counts["Negative"] <= 14 and 10 <= counts["Positive"] <= 14
    assert grouped_folds(images, 5, seed=1) == folds  # deterministic
    assert grouped_folds(images, 5, seed=2) != folds


def test_fold_errors():
    """Fewer than 2 folds, unfingerprinted images, or more folds than groups are errors."""
    images = images_with_duplicates()
    with pytest.raises(ValueError, match="at least 2 folds"):
        grouped_folds(images, 1, seed=0)
    with pytest.raises(ValueError, match="fingerprinted"):
        grouped_folds([LabeledImage("a.jpg", "Positive")] * 3, 2, seed=0)
    with pytest.raises(CrackModelError, match="fold empty: use fewer folds"):  # the CLI's one-line error
        grouped_folds(images[:2], 5, seed=0)


def test_outcomes_from_a_confusion_matrix():
    """Rows are true labels, columns predicted: counts become per-image outcomes."""
    outcomes = outcomes_from_matrix([[5, 1], [2, 7]], ["Negative", "Positive"], "Positive")
    assert len(outcomes) == 15
    assert int(outcomes.is_crack.sum()) == 9 and int((outcomes.is_crack & outcomes.says_crack).sum()) == 7
    assert int(outcomes.correct.sum()) == 12


@pytest.mark.slow
def test_cross_validate_scores_every_image_once_with_exact_intervals(tmp_path, synth_data):
    """Two folds on 80 synthetic images: per-fold and pooled metrics, Clopper-Pearson intervals, cv.json."""
    result = cross_validate(
        synth_data, tmp_path / "cv", DataConfig(image_size=32, batch_size=16), ModelConfig(weights="none", alpha=0.35),
        TrainConfig(epochs=1), folds=2, feature_cache_dir=tmp_path / "cache", augmented_views=0,
    )  # fmt: skip
    assert [fold["fold"] for fold in result["folds"]] == [1, 2]
    assert sum(fold["images"] for fold in result["folds"]) == result["pooled"]["images"] == 80
    pooled = result["pooled"]
    assert pooled["cracks"] == 40
    for name in ("crack_recall", "accuracy"):
        low, high = pooled["exact_intervals"][name]
        assert 0 <= low <= pooled["metrics"][name] <= high <= 1
        assert high - low > 0.01  # 80 images cannot pin a proportion down
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["pooled"] == pooled
    for fold in result["folds"]:  # each fold names the images it got wrong
        assert len(fold["misclassified"]) == fold["missed_cracks"] + fold["false_alarms"]
    wrong = [entry for fold in result["folds"] for entry in fold["misclassified"]]
    assert wrong, "a one-epoch model on a random base gets some images wrong"
    assert all(entry["predicted"] != entry["label"] for entry in wrong)


@pytest.mark.slow
def test_repeated_cross_validation_sums_its_seeds_and_counts_each_image_wrong(tmp_path, synth_data):
    """Two seeds: each is a full cross-validation of its own; sums and per-image counts agree with them."""
    result = repeat_cross_validation(
        synth_data, tmp_path / "cv", DataConfig(image_size=32, batch_size=16, seed=5), repeats=2,
        model_config=ModelConfig(weights="none", alpha=0.35), train_config=TrainConfig(epochs=1), folds=2,
        feature_cache_dir=tmp_path / "cache", augmented_views=0,
    )  # fmt: skip
    assert [repeat["seed"] for repeat in result["repeats"]] == [5, 6]
    runs = [json.loads((tmp_path / "cv" / f"seed-{seed}" / "cv.json").read_text()) for seed in (5, 6)]
    assert [run["config"]["data"]["seed"] for run in runs] == [5, 6]
    assert result["scored"] == 160
    for count in ("missed_cracks", "false_alarms"):
        assert result[count] == sum(run["pooled"][count] for run in runs)
    wrong = Counter(entry["uri"] for run in runs for fold in run["folds"] for entry in fold["misclassified"])
    assert {entry["uri"]: entry["repeats_wrong"] for entry in result["misclassified"]} == wrong
    assert sum(wrong.values()) == result["missed_cracks"] + result["false_alarms"]
    assert wrong, "a one-epoch model on a random base gets some images wrong"
    assert json.loads((tmp_path / "cv" / "cv-repeats.json").read_text())["scored"] == 160


@pytest.mark.slow
def test_cross_validation_pools_each_slice(tmp_path, synth_data):
    """With two slices, each is pooled over its folds too; the slices add up to the pooled figures."""
    import shutil

    for class_dir in sorted(path for path in synth_data.iterdir() if path.is_dir()):
        for index, photo in enumerate(sorted(class_dir.iterdir())):
            target = tmp_path / "pool" / class_dir.name / ("old-site" if index % 4 else "new-site") / photo.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target)
    result = cross_validate(
        tmp_path / "pool", tmp_path / "cv", DataConfig(image_size=32, batch_size=16),
        ModelConfig(weights="none", alpha=0.35), TrainConfig(epochs=1), folds=2,
        feature_cache_dir=tmp_path / "cache", augmented_views=0,
    )  # fmt: skip
    slices = result["pooled_per_slice"]
    assert {name: figures["images"] for name, figures in slices.items()} == {"new-site": 20, "old-site": 60}
    assert {name: figures["cracks"] for name, figures in slices.items()} == {"new-site": 10, "old-site": 30}
    for count in ("missed_cracks", "false_alarms"):
        assert sum(figures[count] for figures in slices.values()) == result["pooled"][count]
    for figures in slices.values():
        low, high = figures["exact_intervals"]["accuracy"]
        assert 0 <= low <= figures["metrics"]["accuracy"] <= high <= 1
    assert "pooled_per_slice" in json.loads((tmp_path / "cv" / "cv.json").read_text())
