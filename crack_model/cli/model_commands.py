"""``crack-model train|evaluate|export|synth``: build and check models from labeled images."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from crack_model.cli.arguments import (
    SEAM_SHARE_HELP,
    add_augmentation_options,
    add_data_options,
    add_head_options,
    class_names,
    data_config_from,
    default_weights,
    exponent,
    fold_count,
    fraction,
    model_config_from,
    non_negative,
    non_negative_int,
    positive,
    positive_int,
    probability,
    seed,
    share,
    unit_interval,
    width_multiplier,
)
from crack_model.cli.cv_command import figure, run_cross_validation
from crack_model.core.config import DataConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import CARD_NAME, MODEL_NAME, SPLIT_NAME, ModelCard
from crack_model.core.tiling import TileConfig
from crack_model.core.uploads import Fetch, read_photo_uri
from crack_model.data.labeled import LabeledImage, fingerprint_all, load_labeled
from crack_model.data.synth import generate_dataset
from crack_model.evaluation.assess import evaluate_scorer, read_split_manifest, recorded_fetch
from crack_model.registry.model_uri import is_model_uri, registered_file
from crack_model.registry.naming import refuse_a_registered_version
from crack_model.serving.scorer import fetch_model_dir, load_scorer
from crack_model.training.export import export_model, keras_model_file
from crack_model.training.photo_tiles import PhotoTiles
from crack_model.training.plots import save_confusion_matrix
from crack_model.training.train import train


def add_train_command(commands: Any) -> None:
    train = commands.add_parser(
        "train",
        help="train a classifier on a labeled folder or manifest",
        description="Train MobileNetV2 transfer learning on <data>/<class>/* or a uri,label CSV.",
    )
    train.add_argument(
        "--data", required=True, help="labeled folder (<data>/Positive, <data>/Negative) or manifest .csv"
    )
    train.add_argument("--out", required=True, type=Path, help="folder for model.keras, metrics.json, plots, logs")
    add_data_options(train)
    train.add_argument("--epochs", type=positive_int, default=10, help="maximum epochs (default: 10; early stopping)")
    train.add_argument("--learning-rate", type=positive, default=1e-3, help="Adam learning rate (default: 1e-3)")
    train.add_argument(
        "--alpha", type=width_multiplier, default=1.0, help="MobileNetV2 width multiplier (default: 1.0)"
    )
    train.add_argument(
        "--weights",
        default=default_weights(),
        help="base weights: imagenet (download), none, or a local .h5 path (default: $CRACK_MODEL_WEIGHTS or imagenet)",
    )
    train.add_argument(
        "--fine-tune-layers", type=non_negative_int, default=0, help="unfreeze the top N base layers for a second phase"
    )
    train.add_argument("--fine-tune-epochs", type=positive_int, default=5, help="epochs of the fine-tuning phase")
    train.add_argument(
        "--target-recall",
        type=probability,
        default=0.99,
        help="lower the threshold until validation crack recall reaches this (default: 0.99)",
    )
    train.add_argument(
        "--no-augment",
        action="store_true",
        help="train without augmentation (flips, rotations, zoom, brightness, contrast)",
    )
    train.add_argument(
        "--skip-unreadable", action="store_true", help="skip images that fail to decode instead of stopping"
    )
    train.add_argument("--no-export", action="store_true", help="skip the LiteRT exports (fp32, int8)")
    train.add_argument(
        "--feature-cache",
        type=Path,
        help="cache the frozen base's features per image here and train only the head on them (much faster)",
    )
    train.add_argument(
        "--augmented-views", type=non_negative_int, default=1, help="augmented copies cached per image (default: 1)"
    )
    train.add_argument("--seam-share", type=share, default=TrainConfig.seam_share, help=SEAM_SHARE_HELP)
    add_head_options(train)
    train.add_argument("--start-from", type=Path, metavar="MODEL_DIR",
                       help="start the head from this trained model's head (crack-model retrain starts from the "
                       "champion by itself)")  # fmt: skip
    train.add_argument("--anchor-weight", type=non_negative, default=TrainConfig.anchor_weight,
                       help=f"with --start-from: weight of the squared distance from its head "
                       f"(default: {TrainConfig.anchor_weight}: no pull; needs --feature-cache)")  # fmt: skip
    add_augmentation_options(train)
    train.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    if args.anchor_weight and args.start_from is None:
        raise CrackModelError("--anchor-weight pulls toward the --start-from model's head: give --start-from too")
    data_config = data_config_from(args)
    model_config = model_config_from(args, alpha=args.alpha, weights=args.weights, augment=not args.no_augment)
    train_config = TrainConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        fine_tune_layers=args.fine_tune_layers,
        fine_tune_epochs=args.fine_tune_epochs,
        target_recall=args.target_recall,
        seam_share=args.seam_share,
        anchor_weight=args.anchor_weight,
    )
    run = train(
        args.data,
        args.out,
        data_config,
        model_config,
        train_config,
        export_runtimes=not args.no_export,
        feature_cache_dir=args.feature_cache,
        augmented_views=args.augmented_views,
        skip_unreadable=args.skip_unreadable,
        verbose=0 if args.quiet else 2,
        progress=not args.quiet,
        start_from=args.start_from,
    )
    test = run.metrics.get("test") or run.metrics["validation"]
    split_name = "test" if "test" in run.metrics else "validation"
    print(f"model {run.card.version}  threshold {run.card.threshold:.4f}")
    print(
        f"{split_name}: crack recall {figure(test['crack_recall'])}  accuracy {test['accuracy']:.4f}  "
        f"crack precision {figure(test['crack_precision'])}  "
        f"({test['images']} images, {test['missed_cracks']} missed cracks)"
    )
    for name, path in sorted(run.artifacts.items()):
        print(f"  {name:<18} {path}")
    return 0


def add_evaluate_command(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model on labeled images",
        description="Metrics (crack recall first) of a saved model on labeled data; or, with --cv K, "
        "K-fold cross-validation of the training recipe on --data (near-duplicates kept in one fold, "
        "exact Clopper-Pearson intervals per fold and pooled).",
    )
    evaluate.add_argument("--model", help="model folder (local or s3://); not with --cv")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="labeled folder or manifest .csv to evaluate on (all of it)")
    source.add_argument(
        "--split",
        choices=["test", "validation", "train"],
        help="evaluate on one split recorded in the model's split.csv",
    )
    evaluate.add_argument("--out", type=Path, help="write metrics.json and confusion_matrix.png here")
    evaluate.add_argument("--runtime", default="auto", help="auto, keras, litert-fp32 or litert-int8 (default: auto)")
    evaluate.add_argument("--threshold", type=probability, help="override the model's decision threshold")
    recipe = evaluate.add_argument_group("cross-validation (--cv): the training recipe to measure")
    recipe.add_argument("--cv", type=fold_count, help="K-fold cross-validation of training on --data (K >= 2)")
    recipe.add_argument("--repeats", type=positive_int, default=1,
                        help="run --cv with seeds --seed, --seed + 1, ... and sum them (default: 1)")  # fmt: skip
    add_data_options(recipe)
    recipe.add_argument("--weights", default=default_weights(),
                        help="base weights: imagenet, none or a .h5 path (default: $CRACK_MODEL_WEIGHTS)")  # fmt: skip
    recipe.add_argument("--epochs", type=positive_int, default=30, help="maximum epochs per fold (default: 30)")
    recipe.add_argument("--feature-cache", type=Path, help="feature cache folder (strongly advised: K trainings)")
    recipe.add_argument(
        "--augmented-views", type=non_negative_int, default=2, help="augmented copies cached per image (default: 2)"
    )
    recipe.add_argument("--fine-tune-layers", type=non_negative_int, default=0, help="unfreeze the top N base layers")
    recipe.add_argument("--label-smoothing", type=fraction, default=0.0, help="label smoothing in [0, 1) (default: 0)")
    recipe.add_argument("--focal-gamma", type=exponent, default=TrainConfig.focal_gamma,
                        help="focal loss exponent: hard images weigh more (default: 0: cross-entropy)")  # fmt: skip
    recipe.add_argument("--slice-balance", type=unit_interval, default=1.0, help="0 (none) to 1 (full) slice balancing")
    recipe.add_argument("--crack-weight", type=positive, default=1.0, help="weight of a crack image (default: 1)")
    recipe.add_argument("--target-recall", type=probability, default=0.99, help="validation crack recall target")
    recipe.add_argument("--seam-share", type=share, default=TrainConfig.seam_share, help=SEAM_SHARE_HELP)
    add_head_options(recipe)
    add_augmentation_options(recipe)
    evaluate.set_defaults(handler=run_evaluate, usage_error=evaluate.error)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.cv is not None:
        return run_cross_validation(args)
    if args.repeats > 1:
        raise CrackModelError("--repeats repeats a cross-validation: add --cv K")
    if args.classes or args.crack_class:  # they were ignored, and then a missing folder asked for --classes
        args.usage_error("--classes and --crack-class name the class folders --cv trains on: a model is "
                         "evaluated with its own class names (its model.json's class_names), one folder of --data "
                         "each")  # fmt: skip
    if not args.model:
        raise CrackModelError("evaluate needs --model (or --cv K to cross-validate the training recipe on --data)")
    if args.out:
        refuse_a_model_folder(args.out)
    scorer = load_scorer(args.model, runtime=args.runtime)
    read: Fetch = read_photo_uri
    if args.split:
        if is_model_uri(args.model):
            manifest = registered_file(args.model, scorer.version, SPLIT_NAME)
        else:
            manifest = fetch_model_dir(args.model) / SPLIT_NAME
        images = read_split_manifest(manifest, args.split)
        read = recorded_fetch(images, manifest)
    else:
        names = tuple(scorer.card.class_names)
        if Path(args.data).is_dir() and (missing := [name for name in names if not (Path(args.data) / name).is_dir()]):
            raise CrackModelError(f"--data {args.data} has no folder {missing[0]}: model {scorer.version} is evaluated "
                                  f"on one folder per class it knows ({', '.join(names)}); name them so")  # fmt: skip
        config = DataConfig(class_names=names, crack_class=scorer.card.crack_class)
        images = load_labeled(args.data, config, progress=not args.quiet)
    metrics = evaluate_scorer(scorer, images, threshold=args.threshold, read=read)
    print(
        f"model {metrics['model_version']} ({metrics['runtime']}) on {metrics['images']} images, "
        f"threshold {metrics['threshold']:.4f}"
    )
    print(
        f"crack recall {figure(metrics['crack_recall'])}  crack precision {figure(metrics['crack_precision'])}  "
        f"accuracy {metrics['accuracy']:.4f}  ROC AUC {figure(metrics['roc_auc'])}  "
        f"PR AUC {figure(metrics['pr_auc'])}  "
        f"missed cracks {metrics['missed_cracks']}  false alarms {metrics['false_alarms']}"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        matrix = metrics["confusion_matrix"]
        save_confusion_matrix(
            matrix["rows_true_columns_predicted"], matrix["labels"], args.out / "confusion_matrix.png"
        )
        print(f"  metrics            {args.out / 'metrics.json'}")
        print(f"  confusion_matrix   {args.out / 'confusion_matrix.png'}")
    return 0


def refuse_a_model_folder(out: Path) -> None:
    """``evaluate --out <the model folder>`` wrote over training's metrics.json and confusion matrix (and a
    registered version's, whose files are hash-checked): refuse a folder holding a model."""
    advice = "give a new folder, e.g. --out build/evaluation"
    refuse_a_registered_version(out, advice)
    if any((out / name).is_file() for name in (CARD_NAME, MODEL_NAME)):
        raise CrackModelError(f"--out {out} holds a model, whose training metrics.json and confusion_matrix.png "
                              f"evaluate would overwrite: {advice}")  # fmt: skip


def readable_split(split_csv: Path, part: str) -> list[LabeledImage]:
    """The photos of one part of ``split.csv``, all of them readable, before export writes anything."""
    readable, unreadable = fingerprint_all(read_split_manifest(split_csv, part))
    if unreadable or not readable:
        missing = f"{len(unreadable)} of its photos cannot be read (e.g. {unreadable[0].uri}: {unreadable[0].reason})"
        msg = (
            f"export calibrates and checks on the model's {part} photos, listed in {split_csv}: "
            f"{missing if unreadable else 'it lists none'}; restore them where it says, then export again"
        )
        raise CrackModelError(msg)  # fmt: skip
    return readable


def add_export_command(commands: Any) -> None:
    export = commands.add_parser(
        "export",
        help="export a model to LiteRT fp32 and int8 and check agreement with Keras",
        description="Write model_fp32.tflite and model_int8.tflite (calibrated on training images) into the "
        "model folder; approve those whose labels agree with Keras on >= 99.5% of the validation split.",
    )
    export.add_argument("--model", required=True, type=Path, help="local model folder with model.keras and split.csv")
    export.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    refuse_a_registered_version(args.model, "copy the folder without its version.json, export the copy, and "
                                "register it as a new version")  # fmt: skip
    split_csv, card = args.model / SPLIT_NAME, ModelCard.load(args.model)
    keras_model_file(args.model)  # before the split's images are read
    # Sizes read again (split.csv has none), so that photos calibrate as the tiles training calibrated on.
    train_images, validation = (readable_split(split_csv, part) for part in ("train", "validation"))
    with tempfile.TemporaryDirectory(prefix="crack-export-") as scratch:
        photos = PhotoTiles(Path(scratch), TileConfig(), card.image_size, card.crack_class)
        checks = export_model(args.model, photos.examples(train_images), photos.examples(validation))
    for check in checks:
        print(
            f"{check.runtime}: label agreement {check.label_agreement:.4f}, "
            f"max probability difference {check.max_probability_difference:.4f} on {check.images} images"
        )
    print(f"approved runtimes: {', '.join(ModelCard.load(args.model).approved_runtimes)}")
    return 0


def add_synth_command(commands: Any) -> None:
    synth = commands.add_parser(
        "synth",
        help="write synthetic concrete textures with and without cracks",
        description="Seeded synthetic images for tests: <out>/<class>/synth_*.jpg.",
    )
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--count", type=positive_int, default=50, help="images per class (default: 50)")
    synth.add_argument("--size", type=positive_int, default=227, help="image side in pixels (default: 227)")
    synth.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    synth.add_argument("--classes", type=class_names, default=("Negative", "Positive"), help="class folder names")
    synth.add_argument("--crack-class", default="Positive", help="which class gets cracks (default: Positive)")
    synth.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    if args.crack_class not in args.classes:
        raise CrackModelError(f"--crack-class {args.crack_class!r} is not one of --classes {list(args.classes)}")
    counts = generate_dataset(
        args.out, args.count, size=args.size, seed=args.seed, class_names=args.classes, crack_class=args.crack_class
    )
    for name, count in counts.items():
        print(f"{count} images in {args.out / name}")
    return 0
