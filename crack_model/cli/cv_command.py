"""``crack-model evaluate --cv K [--repeats R]``: cross-validate the training recipe and print its folds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crack_model.cli.arguments import data_config_from, model_config_from
from crack_model.core.config import TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.training.cross_validation import cross_validate, repeat_cross_validation

# Wrong images printed after a cross-validation; the JSON has them all (a weak recipe can get hundreds wrong).
PRINTED_IMAGES = 40


def run_cross_validation(args: argparse.Namespace) -> int:
    if not args.data:
        raise CrackModelError("--cv needs --data (a labeled folder or manifest)")
    if args.model:
        raise CrackModelError("--cv trains its own models: leave out --model")
    if args.seed + args.repeats > 2**32:
        raise CrackModelError(f"--seed {args.seed} with --repeats {args.repeats} runs past the last seed, {2**32 - 1}")
    out = args.out or Path("build") / f"cv-{args.cv}"
    train_config = TrainConfig(epochs=args.epochs, fine_tune_layers=args.fine_tune_layers,
                               label_smoothing=args.label_smoothing, focal_gamma=args.focal_gamma,
                               slice_balance=args.slice_balance,
                               crack_weight=args.crack_weight, target_recall=args.target_recall,
                               seam_share=args.seam_share)  # fmt: skip
    options: dict[str, Any] = {
        "model_config": model_config_from(args, weights=args.weights),
        "train_config": train_config, "folds": args.cv,
        "feature_cache_dir": args.feature_cache, "augmented_views": args.augmented_views,
    }  # fmt: skip
    if args.repeats > 1:
        return print_repeats(repeat_cross_validation(args.data, out, data_config_from(args), repeats=args.repeats,
                                                     **options), out)  # fmt: skip
    result = cross_validate(args.data, out, data_config_from(args), **options)
    print(f"{args.cv}-fold cross-validation on {args.data} ({result['near_duplicate_groups']} near-duplicate groups)")
    rows = [(f"fold {row['fold']}", row) for row in result["folds"]] + [("pooled", result["pooled"])]
    rows += [(f"slice {name}", row) for name, row in result.get("pooled_per_slice", {}).items()]  # pooled per slice
    for label, row in rows:
        print_cv_row(label, row)
    print(f"  (exact Clopper-Pearson intervals at {result['confidence']:.0%}; details in {out / 'cv.json'})")
    wrong = [(fold, entry) for fold in result["folds"] for entry in fold["misclassified"]]
    for fold, entry in wrong[:PRINTED_IMAGES]:
        print(f"  wrong in fold {fold['fold']}: {entry['uri']} ({entry['label']}, crack probability "
              f"{entry['crack_probability']:.3f}, threshold {fold['threshold']:.3f})")  # fmt: skip
    if len(wrong) > PRINTED_IMAGES:
        print(f"  ... and {len(wrong) - PRINTED_IMAGES} more wrong images in {out / 'cv.json'}")
    return 0


def print_cv_row(label: str, row: dict[str, Any]) -> None:
    metrics, exact = row["metrics"], row["exact_intervals"]
    recall, accuracy = exact["crack_recall"] or (None, None), exact["accuracy"]  # no cracks: no recall
    print(
        f"  {label:<14} {row['images']:>5} images  crack recall {figure(metrics['crack_recall'])} "
        f"[{figure(recall[0])}, {figure(recall[1])}]  accuracy {metrics['accuracy']:.4f} [{accuracy[0]:.4f}, "
        f"{accuracy[1]:.4f}]  missed cracks {row['missed_cracks']}  false alarms {row['false_alarms']}"
        + without_patch_confirmation(row)
    )


def without_patch_confirmation(row: dict[str, Any]) -> str:
    """The counts before patches were confirmed by flips (serving/photo_confirmation.py), where a row has them."""
    before = row.get("without_patch_confirmation")
    if not before:
        return ""
    return f"  (unconfirmed: {before['missed_cracks']} / {before['false_alarms']})"


def print_repeats(result: dict[str, Any], out: Path) -> int:
    repeats = result["repeats"]
    print(f"cross-validation of {result['data']} repeated with {len(repeats)} seeds (pooled per seed)")
    for repeat in repeats:
        print_cv_row(f"seed {repeat['seed']}", repeat["pooled"])
    print(f"  all seeds: {result['missed_cracks']} missed cracks and {result['false_alarms']} false alarms in "
          f"{result['scored']} scored images (each image once per seed; {out / 'cv-repeats.json'})"
          + without_patch_confirmation(result))  # fmt: skip
    wrong = result["misclassified"]
    for entry in wrong[:PRINTED_IMAGES]:
        print(f"  wrong with {entry['repeats_wrong']} of {len(repeats)} seeds: {entry['uri']} ({entry['label']})")
    if len(wrong) > PRINTED_IMAGES:
        print(f"  ... and {len(wrong) - PRINTED_IMAGES} more wrong images in {out / 'cv-repeats.json'}")
    return 0


def figure(value: float | None) -> str:
    """A metric to 4 places, or n/a where it is undefined (recall of a slice without cracks)."""
    return "n/a" if value is None else f"{value:.4f}"
