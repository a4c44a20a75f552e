"""K-fold cross-validation of the training recipe, near-duplicates kept together, exact intervals.

A 300-image test split scores 100 % and cannot tell two recipes apart. Cross-validation scores
every image of the set once, by a model that never saw it or any near-copy of it: the folds are
built from near-duplicate groups (same bytes or same perceptual hash, ``group_near_duplicates``),
stratified by class and slice. Each fold trains with the full recipe (``train``: its own
validation split for early stopping and the threshold) and is scored on its held-out fold; the
pooled figures count every image once, with exact (Clopper-Pearson) intervals. With more than one
slice (``labeled/<class>/<slice>/``), each slice is pooled too: what adding a new site's photos
costs the old site shows on all of the old site's images, not on a 300-image holdout.

One K-fold run is itself one draw: another seed (other folds, another start of training) moves
the pooled counts by a few images, as much as most levers do. ``repeat_cross_validation`` runs
it with several seeds, sums them, and names every image wrong with any seed and how often.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.data.label_conflicts import leave_out_label_conflicts
from crack_model.data.labeled import LabeledImage, Split, group_near_duplicates, load_labeled, split_images
from crack_model.evaluation.intervals import Outcomes, exact_intervals, point_figures
from crack_model.training.train import train

log = module_logger(__name__)


def grouped_folds(images: Sequence[LabeledImage], folds: int, seed: int) -> list[list[int]]:
    """Indices of ``folds`` folds; a near-duplicate group is never split across folds.

    Groups are taken per (class, slice) stratum in a seeded order of their content and each goes
    to the fold holding the fewest images of that stratum so far, so folds are balanced and
    depend only on the images and the seed.
    """
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if any(not image.sha256 for image in images):
        raise ValueError("grouped_folds needs fingerprinted images (see fingerprint_all)")
    by_stratum: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    for group in group_near_duplicates(images):
        first = images[group[0]]
        by_stratum[(first.label, first.slice)].append(group)
    assigned: list[list[int]] = [[] for _ in range(folds)]
    for stratum in sorted(by_stratum):
        filled = [0] * folds

        def order(group: list[int]) -> str:
            anchor = min(images[index].sha256 for index in group)
            return hashlib.sha256(f"{seed}:{anchor}".encode()).hexdigest()

        for group in sorted(by_stratum[stratum], key=order):
            target = min(range(folds), key=lambda fold: (filled[fold], len(assigned[fold]), fold))
            assigned[target].extend(group)
            filled[target] += len(group)
    if any(not fold for fold in assigned):
        raise CrackModelError(f"{len(images)} images in {folds} folds leaves a fold empty: use fewer folds")
    return [sorted(fold) for fold in assigned]


def outcomes_from_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], crack_class: str) -> Outcomes:
    """Per-image outcomes rebuilt from a confusion matrix (order is irrelevant to pooled counts)."""
    crack = list(labels).index(crack_class)
    is_crack, says_crack, correct = [], [], []
    for true_index, row in enumerate(matrix):
        for predicted_index, count in enumerate(row):
            is_crack += [true_index == crack] * int(count)
            says_crack += [predicted_index == crack] * int(count)
            correct += [true_index == predicted_index] * int(count)
    return Outcomes(np.array(is_crack, bool), np.array(says_crack, bool), np.array(correct, bool))


def concatenate(parts: Sequence[Outcomes]) -> Outcomes:
    return Outcomes(*(np.concatenate([getattr(part, name) for part in parts])
                      for name in ("is_crack", "says_crack", "correct")))  # fmt: skip


def summarize(outcomes: Outcomes, confidence: float) -> dict[str, Any]:
    """Point figures, exact intervals and counts of one set of outcomes."""
    return {
        "images": len(outcomes),
        "cracks": int(outcomes.is_crack.sum()),
        "missed_cracks": int((outcomes.is_crack & ~outcomes.says_crack).sum()),
        "false_alarms": int((~outcomes.is_crack & outcomes.says_crack).sum()),
        "metrics": point_figures(outcomes),
        "exact_intervals": exact_intervals(outcomes, confidence=confidence),
    }


def without_confirmation(reports: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Missed cracks and false alarms summed over folds (or repeats) as they were before patch confirmation."""
    key = "without_patch_confirmation"
    return {name: sum(report[key][name] for report in reports) for name in ("missed_cracks", "false_alarms")}


def cross_validate(
    data_source: str | Path,
    output_dir: str | Path,
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    folds: int = 5,
    feature_cache_dir: str | Path | None = None,
    augmented_views: int = 1,
    confidence: float = 0.95,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train ``folds`` times, each scored on its held-out fold; write and return ``cv.json``.

    Returns:
        ``{"folds": [per fold: images, metrics, exact_intervals, threshold], "pooled": {...}, "config": ...}``.
    """
    data_config = data_config or DataConfig()
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    output_dir = Path(output_dir)
    images = leave_out_label_conflicts(load_labeled(data_source, data_config))
    fold_indices = grouped_folds(images, folds, data_config.seed)
    # Each fold's remaining images are split into train and validation only (the fold is the test).
    inner = replace(
        data_config,
        validation_fraction=data_config.validation_fraction / (1 - data_config.test_fraction),
        test_fraction=0.0,
    )
    reports: list[dict[str, Any]] = []
    pooled: list[Outcomes] = []
    pooled_slices: dict[str, list[Outcomes]] = defaultdict(list)
    for number, held_out in enumerate(fold_indices, start=1):
        held = set(held_out)
        rest = split_images([image for index, image in enumerate(images) if index not in held], inner)
        split = Split(rest.train, rest.validation, [images[index] for index in held_out])
        log.info("fold %d/%d: %d train, %d validation, %d test", number, folds, len(split.train),
                 len(split.validation), len(split.test))  # fmt: skip
        run = train(
            data_source, output_dir / f"fold-{number}", data_config, model_config, train_config, split=split,
            export_runtimes=False, feature_cache_dir=feature_cache_dir, augmented_views=augmented_views,
            verbose=verbose, photo_mosaics=None,  # the recipe is measured on patches: no photo rule per fold
        )  # fmt: skip
        matrix = run.metrics["test"]["confusion_matrix"]
        outcomes = outcomes_from_matrix(
            matrix["rows_true_columns_predicted"], matrix["labels"], data_config.crack_class
        )
        pooled.append(outcomes)
        for name, figures in run.metrics["per_slice"]["test"].items():
            matrix = figures["confusion_matrix"]
            pooled_slices[name].append(
                outcomes_from_matrix(matrix["rows_true_columns_predicted"], matrix["labels"], data_config.crack_class)
            )
        reports.append({"fold": number, "threshold": run.card.threshold, "epochs_run": len(run.history.get("loss", [])),
                        "patch_confirm_threshold": run.card.patch_confirm_threshold,
                        **summarize(outcomes, confidence),
                        "without_patch_confirmation": run.metrics["test"]["without_patch_confirmation"],
                        "misclassified": run.metrics["test"]["misclassified"]})  # fmt: skip
    result = {
        "data": str(data_source),
        "folds": reports,
        "pooled": {
            **summarize(concatenate(pooled), confidence),
            "without_patch_confirmation": without_confirmation(reports),
        },
        "confidence": confidence,
        "near_duplicate_groups": len(group_near_duplicates(images)),
        "config": {
            "data": asdict(data_config),
            "model": asdict(model_config),
            "train": asdict(train_config),
            "augmented_views": augmented_views,
            "folds": folds,
        },
    }
    if len(pooled_slices) > 1:
        result["pooled_per_slice"] = {name: summarize(concatenate(outcomes), confidence)
                                      for name, outcomes in sorted(pooled_slices.items())}  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "cv.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


def repeat_cross_validation(
    data_source: str | Path,
    output_dir: str | Path,
    data_config: DataConfig | None = None,
    *,
    repeats: int,
    **options: Any,
) -> dict[str, Any]:
    """``cross_validate`` with seeds seed, seed + 1, ... (other folds and training draws); write and return
    ``cv-repeats.json``: each repeat's pooled figures, their sums, and every image wrong in any repeat.

    The sums count each image once per repeat, so they are not independent draws: no interval is
    given for them. What they show is whether a lever's difference outlasts a change of seed.
    """
    data_config = data_config or DataConfig()
    output_dir = Path(output_dir)
    seeds = [data_config.seed + number for number in range(repeats)]
    runs = [cross_validate(data_source, output_dir / f"seed-{seed}", replace(data_config, seed=seed), **options)
            for seed in seeds]  # fmt: skip
    times_wrong: Counter[str] = Counter()
    entries: dict[str, dict[str, Any]] = {}
    for run in runs:
        for fold in run["folds"]:
            for entry in fold["misclassified"]:
                times_wrong[entry["uri"]] += 1
                entries.setdefault(entry["uri"], {key: entry[key] for key in ("uri", "slice", "label")})
    result = {
        "data": str(data_source),
        "seeds": seeds,
        "repeats": [{"seed": seed, "pooled": run["pooled"]} for seed, run in zip(seeds, runs, strict=True)],
        "scored": sum(run["pooled"]["images"] for run in runs),
        "missed_cracks": sum(run["pooled"]["missed_cracks"] for run in runs),
        "false_alarms": sum(run["pooled"]["false_alarms"] for run in runs),
        "without_patch_confirmation": without_confirmation([run["pooled"] for run in runs]),
        "misclassified": [{**entries[uri], "repeats_wrong": count} for uri, count in times_wrong.most_common()],
        "config": runs[0]["config"],
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "cv-repeats.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result
