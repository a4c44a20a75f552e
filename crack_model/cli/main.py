"""``crack-model``: train, evaluate, predict, synth (and more as the workflow grows).

Heavy libraries are imported inside each command, so ``--help`` answers at once.
A user mistake prints one line, ``crack-model: error: ...``, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from crack_model import __version__
from crack_model.cli.registry_commands import add_registry_commands
from crack_model.cli.validate_command import add_validate_command
from crack_model.core import layout
from crack_model.core.cache import cache_root
from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import ModelCard
from crack_model.core.storage import open_store
from crack_model.data.labeled import load_labeled
from crack_model.data.synth import generate_dataset
from crack_model.evaluation.assess import evaluate_scorer, read_split_manifest
from crack_model.evaluation.gate import run_gate
from crack_model.pipelines.retraining import retrain_config, train_candidate, validate_pool
from crack_model.serving.batch import score_shard
from crack_model.serving.predict import expand_paths, predict_files, prediction_row, write_predictions
from crack_model.serving.scorer import fetch_model_dir, load_scorer
from crack_model.training.export import export_model
from crack_model.training.plots import save_confusion_matrix
from crack_model.training.train import train

log = logging.getLogger("crack_model")

Handler = Callable[[argparse.Namespace], int]


def _class_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"need at least two comma-separated class names, got {text!r}")
    return names


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--classes",
        type=_class_names,
        default=("Negative", "Positive"),
        help="comma-separated class folder names (default: Negative,Positive)",
    )
    parser.add_argument("--crack-class", default="Positive", help="the class that means crack (default: Positive)")
    parser.add_argument(
        "--image-size", type=_positive_int, default=224, help="model input size in pixels (default: 224)"
    )
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (default: 32)")
    parser.add_argument("--seed", type=int, default=42, help="seed for the split and training (default: 42)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crack-model", description="Concrete crack classifier: train, evaluate, score."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a classifier on a labeled folder or manifest",
        description="Train MobileNetV2 transfer learning on <data>/<class>/* or a uri,label CSV.",
    )
    train.add_argument(
        "--data", required=True, help="labeled folder (<data>/Positive, <data>/Negative) or manifest .csv"
    )
    train.add_argument("--out", required=True, type=Path, help="folder for model.keras, metrics.json, plots, logs")
    _add_data_options(train)
    train.add_argument("--epochs", type=_positive_int, default=10, help="maximum epochs (default: 10; early stopping)")
    train.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    train.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width multiplier (default: 1.0)")
    train.add_argument(
        "--weights",
        default=os.environ.get("CRACK_MODEL_WEIGHTS", "imagenet"),
        help="base weights: imagenet (download), none, or a local .h5 path (default: $CRACK_MODEL_WEIGHTS or imagenet)",
    )
    train.add_argument(
        "--fine-tune-layers", type=int, default=0, help="unfreeze the top N base layers for a second phase"
    )
    train.add_argument("--fine-tune-epochs", type=_positive_int, default=5, help="epochs of the fine-tuning phase")
    train.add_argument(
        "--target-recall",
        type=_probability,
        default=0.99,
        help="lower the threshold until validation crack recall reaches this (default: 0.99)",
    )
    train.add_argument("--no-augment", action="store_true", help="train without random flips and rotations")
    train.add_argument(
        "--skip-unreadable", action="store_true", help="skip images that fail to decode instead of stopping"
    )
    train.add_argument("--no-export", action="store_true", help="skip the LiteRT exports (fp32, int8)")
    train.add_argument(
        "--feature-cache",
        type=Path,
        help="cache the frozen base's features per image here and train only the head on them (much faster)",
    )
    train.add_argument("--augmented-views", type=int, default=1, help="augmented copies cached per image (default: 1)")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model on labeled images",
        description="Metrics (crack recall first) of a saved model on labeled data.",
    )
    evaluate.add_argument("--model", required=True, help="model folder (local or s3://)")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="labeled folder or manifest .csv to evaluate on (all of it)")
    source.add_argument(
        "--split",
        choices=["test", "validation", "train"],
        help="evaluate on one split recorded in the model's split.csv",
    )
    evaluate.add_argument("--out", type=Path, help="write metrics.json and confusion_matrix.png here")
    evaluate.add_argument("--runtime", default="auto", help="auto, keras, litert-fp32 or litert-int8 (default: auto)")
    evaluate.add_argument("--threshold", type=_probability, help="override the model's decision threshold")
    evaluate.set_defaults(handler=run_evaluate)

    predict = commands.add_parser(
        "predict",
        help="score image files or folders, one CSV row per image",
        description="Score images; an unreadable image is a row with status=error.",
    )
    predict.add_argument("paths", nargs="+", help="image files and/or folders")
    predict.add_argument("--model", required=True, help="model folder (local or s3://)")
    predict.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    predict.add_argument("--runtime", default="auto", help="auto, keras, litert-fp32 or litert-int8 (default: auto)")
    predict.add_argument("--batch-size", type=_positive_int, help="inference batch size (default: suits the runtime)")
    predict.set_defaults(handler=run_predict)

    score = commands.add_parser(
        "score",
        help="score a batch of uploads in object storage and write results next to it",
        description="Score <store>/incoming/<batch_id>/ and write <store>/results/<batch_id>/ "
        "(predictions.csv, summary.json, overlays/, _SUCCESS last). Resumes where a killed run stopped.",
    )
    score.add_argument(
        "--batch", required=True, help="<store>/incoming/<batch_id>; store = s3://bucket[/prefix] or a folder"
    )
    score.add_argument("--model", required=True, help="model folder (local or s3://)")
    score.add_argument("--shard", default="0/1", help="INDEX/COUNT, 0-based: score only this shard (default: 0/1)")
    score.add_argument("--runtime", default="auto", help="auto (fastest approved), keras, litert-fp32, litert-int8")
    score.add_argument("--batch-size", type=_positive_int, help="inference batch size (default: suits the runtime)")
    score.add_argument("--workers", type=_positive_int, default=8, help="fetch/decode threads (default: 8)")
    score.add_argument("--part-rows", type=_positive_int, default=500, help="rows per resumable part (default: 500)")
    score.add_argument("--no-overlays", action="store_true", help="do not write heat-map overlays for crack images")
    score.add_argument("--force", action="store_true", help="rescore even if the batch already has _SUCCESS")
    score.set_defaults(handler=run_score)

    export = commands.add_parser(
        "export",
        help="export a model to LiteRT fp32 and int8 and check agreement with Keras",
        description="Write model_fp32.tflite and model_int8.tflite (calibrated on training images) into the "
        "model folder; approve those whose labels agree with Keras on >= 99.5%% of the validation split.",
    )
    export.add_argument("--model", required=True, type=Path, help="local model folder with model.keras and split.csv")
    export.set_defaults(handler=run_export)

    add_validate_command(commands)

    retrain = commands.add_parser(
        "retrain",
        help="validate the labeled pool, train a candidate, register it, and (with --gate) gate it",
        description="Retrain from <store>/labeled/<class>/...: training suite (holdout overlap rejected), "
        "feature-cached transfer learning, registration as challenger; --gate evaluates it against the "
        "champion on <store>/holdout and --promote makes a passing candidate champion.",
    )
    retrain.add_argument(
        "--store", required=True, help="s3://bucket[/prefix] or a folder holding labeled/ and holdout/"
    )
    retrain.add_argument("--name", default="crack", help="model name in the registry (default: crack)")
    retrain.add_argument("--epochs", type=_positive_int, default=10, help="maximum epochs (default: 10)")
    retrain.add_argument("--fine-tune-layers", type=int, default=0, help="unfreeze the top N base layers")
    retrain.add_argument("--target-recall", type=_probability, default=0.99, help="validation crack recall target")
    retrain.add_argument("--weights", default=os.environ.get("CRACK_MODEL_WEIGHTS", "imagenet"),
                         help="base weights: imagenet, none or a .h5 path")  # fmt: skip
    retrain.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    retrain.add_argument("--gate", action="store_true", help="run the holdout gate on the new candidate")
    retrain.add_argument("--promote", action="store_true", help="with --gate: promote a passing candidate")
    retrain.set_defaults(handler=run_retrain)

    add_registry_commands(commands)

    synth = commands.add_parser(
        "synth",
        help="write synthetic concrete textures with and without cracks",
        description="Seeded synthetic images for tests: <out>/<class>/synth_*.jpg.",
    )
    synth.add_argument("--out", required=True, type=Path, help="output folder")
    synth.add_argument("--count", type=_positive_int, default=50, help="images per class (default: 50)")
    synth.add_argument("--size", type=_positive_int, default=227, help="image side in pixels (default: 227)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--classes", type=_class_names, default=("Negative", "Positive"), help="class folder names")
    synth.add_argument("--crack-class", default="Positive", help="which class gets cracks (default: Positive)")
    synth.set_defaults(handler=run_synth)
    return parser


def run_train(args: argparse.Namespace) -> int:

    data_config = _data_config(args)
    model_config = ModelConfig(alpha=args.alpha, weights=args.weights, augment=not args.no_augment)
    train_config = TrainConfig(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        fine_tune_layers=args.fine_tune_layers,
        fine_tune_epochs=args.fine_tune_epochs,
        target_recall=args.target_recall,
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
    )
    test = run.metrics.get("test") or run.metrics["validation"]
    split_name = "test" if "test" in run.metrics else "validation"
    print(f"model {run.card.version}  threshold {run.card.threshold:.4f}")
    print(
        f"{split_name}: crack recall {test['crack_recall']:.4f}  accuracy {test['accuracy']:.4f}  "
        f"crack precision {test['crack_precision']:.4f}  "
        f"({test['images']} images, {test['missed_cracks']} missed cracks)"
    )
    for name, path in sorted(run.artifacts.items()):
        print(f"  {name:<18} {path}")
    return 0


def _data_config(args: argparse.Namespace) -> DataConfig:

    try:
        return DataConfig(
            class_names=args.classes,
            crack_class=args.crack_class,
            image_size=args.image_size,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except ValueError as error:
        raise CrackModelError(str(error)) from None


def run_evaluate(args: argparse.Namespace) -> int:

    scorer = load_scorer(args.model, runtime=args.runtime)
    if args.split:
        images = read_split_manifest(fetch_model_dir(args.model) / "split.csv", args.split)
    else:
        config = DataConfig(class_names=tuple(scorer.card.class_names), crack_class=scorer.card.crack_class)
        images = load_labeled(args.data, config, progress=not args.quiet)
    metrics = evaluate_scorer(scorer, images, threshold=args.threshold)
    print(
        f"model {metrics['model_version']} ({metrics['runtime']}) on {metrics['images']} images, "
        f"threshold {metrics['threshold']:.4f}"
    )
    print(
        f"crack recall {metrics['crack_recall']:.4f}  crack precision {metrics['crack_precision']:.4f}  "
        f"accuracy {metrics['accuracy']:.4f}  ROC AUC {_fmt(metrics['roc_auc'])}  PR AUC {_fmt(metrics['pr_auc'])}  "
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


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files = expand_paths(args.paths)
    scorer = load_scorer(args.model, runtime=args.runtime)
    scores = tqdm(
        predict_files(scorer, files, batch_size=args.batch_size),
        total=len(files),
        unit="img",
        desc="scoring",
        disable=args.quiet,
        file=sys.stderr,
    )
    rows = (prediction_row(score, scorer) for score in scores)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="", encoding="utf-8") as handle:
            count = write_predictions(rows, handle)
        print(f"{count} predictions written to {args.out}", file=sys.stderr)
    else:
        write_predictions(rows, sys.stdout)
    return 0


def run_score(args: argparse.Namespace) -> int:

    store_uri, batch_id = layout.parse_batch_uri(args.batch)
    shard = layout.Shard.parse(args.shard)
    scorer = load_scorer(args.model, runtime=args.runtime, registry=store_uri)
    report = score_shard(
        store_uri, batch_id, scorer, shard, part_rows=args.part_rows, batch_size=args.batch_size,
        workers=args.workers, overlays=not args.no_overlays, force=args.force, progress=not args.quiet,
    )  # fmt: skip
    results = open_store(store_uri).url(layout.results_key(batch_id))
    if report.already_complete:
        print(f"batch {batch_id} is already complete: {results} (use --force to rescore)")
        return 0
    rate = f", {report.images / report.seconds:.1f} img/s" if report.seconds > 0 and report.images else ""
    print(
        f"{shard.name} of batch {batch_id}: scored {report.images} objects ({report.skipped_already_done} "
        f"already done) in {report.seconds:.1f} s{rate}, model {report.model_version}"
    )
    if report.finalized:
        print(f"batch complete: {results}/{layout.PREDICTIONS}, {layout.SUMMARY}, {layout.SUCCESS}")
    else:
        print(f"shard done; the batch completes when all {shard.count} shards are done")
    return 0


def run_export(args: argparse.Namespace) -> int:

    split_csv = args.model / "split.csv"
    train_images = read_split_manifest(split_csv, "train")
    checks = export_model(args.model, train_images, read_split_manifest(split_csv, "validation"))
    for check in checks:
        print(
            f"{check.runtime}: label agreement {check.label_agreement:.4f}, "
            f"max probability difference {check.max_probability_difference:.4f} on {check.images} images"
        )
    print(f"approved runtimes: {', '.join(ModelCard.load(args.model).approved_runtimes)}")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    import tempfile

    pool = validate_pool(args.store)
    print(f"labeled pool: {pool['outcome']} ({pool['objects']} objects, {len(pool['quarantined'])} quarantined)")
    params = {"epochs": args.epochs, "fine_tune_layers": args.fine_tune_layers, "target_recall": args.target_recall,
              "weights": args.weights}  # fmt: skip
    data, model, training = retrain_config(params)
    with tempfile.TemporaryDirectory(prefix="crack-retrain-") as scratch:
        candidate = train_candidate(
            args.store, args.work or scratch, name=args.name, quarantined=pool["quarantined"], data_config=data,
            model_config=model, train_config=training, feature_cache_dir=cache_root() / "features",
            actor=os.environ.get("USER", "crack-model"),
        )  # fmt: skip
    print(f"candidate {candidate['version']} registered as challenger: {candidate['model_uri']}")
    if not args.gate:
        return 0

    report = run_gate(args.store, args.name, candidate["version"], promote=args.promote)
    print(
        f"gate: {report.decision}" + (f" (failed: {', '.join(report.failed_checks)})" if report.failed_checks else "")
    )
    print(f"report: {report.html_url}")
    return 0 if report.passed else 3


def run_synth(args: argparse.Namespace) -> int:

    if args.crack_class not in args.classes:
        raise CrackModelError(f"--crack-class {args.crack_class!r} is not one of --classes {list(args.classes)}")
    counts = generate_dataset(
        args.out, args.count, size=args.size, seed=args.seed, class_names=args.classes, crack_class=args.crack_class
    )
    for name, count in counts.items():
        print(f"{count} images in {args.out / name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the output
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args) or 0)
    except CrackModelError as error:
        print(f"crack-model: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crack-model: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
