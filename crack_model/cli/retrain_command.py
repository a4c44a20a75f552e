"""``crack-model retrain``: validate the labeled pool, train a candidate, register it and optionally gate it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from crack_model.cli.arguments import (
    SEAM_SHARE_HELP,
    default_weights,
    fraction,
    image_size,
    layer_names,
    non_negative,
    non_negative_int,
    positive,
    positive_int,
    probability,
    share,
    unit_interval,
)
from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.pipelines.retraining import (
    check_settings,
    gate_candidate,
    require_holdout,
    train_and_register,
    validate_pool,
)
from crack_model.registry.naming import validate_name


def add_retrain_command(commands: Any) -> None:
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
    retrain.add_argument("--epochs", type=positive_int, default=30,
                         help="max head epochs on cached features; early stopping ends it (default: 30)")  # fmt: skip
    retrain.add_argument("--fine-tune-layers", type=non_negative_int, default=0, help="unfreeze the top N base layers")
    retrain.add_argument("--target-recall", type=probability, default=0.99,
                         help="validation crack recall target, overall and on each big-enough slice")  # fmt: skip
    retrain.add_argument(
        "--slice-balance",
        type=unit_interval,
        default=1.0,
        help="balance classes, then labeled/<class>/<slice>/ slices within each, in training: 0 (none) to 1 (full, "
        "default)",
    )
    retrain.add_argument("--crack-weight", type=positive, default=1.0,
                         help="weight of a crack image relative to a balanced non-crack one (default: 1)")  # fmt: skip
    retrain.add_argument("--seam-share", type=share, default=TrainConfig.seam_share, help=SEAM_SHARE_HELP)
    retrain.add_argument("--zoom-factor", type=fraction, default=ModelConfig.zoom_factor,
                         help=f"augmented views are zoomed in or out by up to this fraction "
                         f"(default: {ModelConfig.zoom_factor}; 0: off)")  # fmt: skip
    retrain.add_argument("--image-size", type=image_size, default=DataConfig.image_size,
                         help=f"model input size in pixels, 32-1024 (default: {DataConfig.image_size}; a size other "
                         "than the champion's trains afresh)")  # fmt: skip
    retrain.add_argument("--fresh", action="store_true",
                         help="train the candidate afresh, not from the champion's head (starting from it is the "
                         "default: fewer false alarms, fewer candidates that miss more than the champion)")  # fmt: skip
    retrain.add_argument("--anchor-weight", type=non_negative, default=TrainConfig.anchor_weight,
                         help="pull toward the champion's head: weight of the squared distance from it "
                         f"(default: {TrainConfig.anchor_weight}: start from it, no pull)")  # fmt: skip
    retrain.add_argument("--pooled-layers", type=layer_names, default=ModelConfig.pooled_layers,
                         help="comma-separated base layers pooled beside the last for the head (default: "
                         f"{','.join(ModelConfig.pooled_layers) or 'none'}; other layers than the champion's "
                         "train afresh)")  # fmt: skip
    retrain.add_argument("--augmented-views", type=non_negative_int, default=2,
                         help="augmented copies cached per image (default: 2)")  # fmt: skip
    retrain.add_argument("--weights", default=default_weights(),
                         help="base weights: imagenet, none or a .h5 path")  # fmt: skip
    retrain.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    retrain.add_argument("--gate", action="store_true", help="run the holdout gate on the new candidate")
    retrain.add_argument("--promote", action="store_true", help="with --gate: promote a passing candidate")
    retrain.set_defaults(handler=run_retrain)


def run_retrain(args: argparse.Namespace) -> int:
    """The crack_retraining DAG's steps in a row (crack_model.pipelines.retraining)."""
    if args.fresh and args.anchor_weight:
        raise CrackModelError("--anchor-weight pulls toward the champion, which --fresh does not start from: drop one")
    if args.promote and not args.gate:
        raise CrackModelError("--promote promotes a candidate that passed the gate: give --gate too")
    # Before the pool is read and the candidate trained: a mistake here should cost seconds, not a training run.
    validate_name(args.name)
    check_settings(retrain_settings(args))
    pool = validate_pool(args.store)
    if args.gate:
        require_holdout(pool)
    print(f"labeled pool: {pool['outcome']} ({pool['objects']} objects, {len(pool['quarantined'])} quarantined)")
    candidate = train_and_register(
        args.store,
        pool,
        retrain_settings(args),
        name=args.name,
        actor=os.environ.get("USER", "crack-model"),
        work_dir=args.work,
    )
    print(f"candidate {candidate['version']} registered as challenger: {candidate['model_uri']}")
    start = candidate.get("started_from")
    if start and start["used"]:
        print(f"its head started from champion {start['version']}'s")
    else:
        print("trained afresh" + (f" ({start['version']} could not be a start: {start['reason']})" if start else ""))
    if not args.gate:
        return 0

    decision = gate_candidate(args.store, args.name, candidate["version"], promote=args.promote)
    failed = decision["failed_checks"]
    print(f"gate: {decision['decision']}" + (f" (failed: {', '.join(failed)})" if failed else ""))
    print(f"report: {decision['html_url']}")
    return 0 if decision["decision"] == "promote" else 3


def retrain_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options as the crack_retraining DAG's params of the same names (``retrain_config`` reads both)."""
    return {"epochs": args.epochs, "fine_tune_layers": args.fine_tune_layers,
            "target_recall": args.target_recall, "weights": args.weights, "slice_balance": args.slice_balance,
            "crack_weight": args.crack_weight, "augmented_views": args.augmented_views,
            "seam_share": args.seam_share, "zoom_factor": args.zoom_factor, "image_size": args.image_size,
            "start_from_champion": not args.fresh, "anchor_weight": args.anchor_weight,
            "pooled_layers": list(args.pooled_layers)}  # fmt: skip
