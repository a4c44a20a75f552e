"""``crack-model validate``: check a batch (or a labeled pool) before it is scored (or trained on).

Wired into ``crack_model.cli.main`` with ``add_validate_command(commands)``. Heavy imports (pandas,
Great Expectations) happen inside ``run_validate``, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
from typing import Any

from crack_model.cli.arguments import non_negative_int, positive_int, tile_budget
from crack_model.core import layout
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.storage import open_store
from crack_model.core.tiling import DEFAULT_MAX_TILES, MAX_TILE_BUDGET, MIN_TILE_BUDGET, TileConfig
from crack_model.quality.batch_validation import load_hashes, validate_batch, validate_labeled
from crack_model.quality.expectations import SUITES
from crack_model.quality.profile import ProfileConfig
from crack_model.quality.thresholds import ValidationThresholds

log = module_logger(__name__)

LABELED = "labeled"
HOLDOUT = "holdout"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def add_validate_command(commands: Any) -> argparse.ArgumentParser:
    """Add ``validate`` to the CLI's sub-parsers (the object ``add_subparsers`` returned)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "validate",
        help="check a batch of uploads (or a labeled pool) with the data-quality suite",
        description=(
            "Profile every object and check it with the Great Expectations suite: passed, passed_with_quarantine "
            "(a few bad objects copied to quarantine/<batch_id>/ and skipped by scoring) or failed (do not score). "
            "Writes validation/<batch_id>/result.json, outcome.json, profile.csv and report.html. "
            "Exit status 0 when the batch may be scored, 1 when it failed."
        ),
    )
    parser.add_argument(
        "--batch",
        required=True,
        help="<store>/incoming/<batch_id> (store = s3://bucket[/prefix] or a folder); with --suite training also "
        "a labeled pool: <store>/labeled or any folder of <class>/ sub-folders",
    )
    parser.add_argument("--suite", default="incoming", help="incoming (default), training, or a suite .json path")
    parser.add_argument("--report", help="also write the HTML report to this file or s3:// object")
    parser.add_argument("--reference", help="drift reference profile JSON (file or s3://); without it no drift check")
    parser.add_argument(
        "--holdout",
        help="training: holdout images (folder or prefix) or a CSV with a sha256 column; default <store>/holdout "
        "when the pool is <store>/labeled and that exists",
    )
    parser.add_argument(
        "--output",
        help="training on a plain folder: store for validation/<name>/ and quarantine/<name>/ "
        "(they must not go among the class folders)",
    )
    parser.add_argument("--name", help="training: the pool's id under validation/ and quarantine/ (default: labeled)")
    parser.add_argument("--write-reference", help="training: if the pool passes, save its drift reference here")
    parser.add_argument("--thresholds", help='JSON file of threshold overrides, e.g. {"blur_min": 2.5}')
    parser.add_argument("--classes", help="training: comma-separated known classes (default: Negative,Positive)")
    parser.add_argument("--min-images-per-class", type=non_negative_int, help="training: images each class needs")
    parser.add_argument("--max-bad-fraction", type=_fraction, help="share of objects that may be quarantined")
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="fetch threads (default: 8 for S3, 2 for a folder, where more only contend)",
    )
    # The night validates at its run's budget: without this a batch checked here at 512 could fail at 2048.
    parser.add_argument(
        "--max-tiles", type=tile_budget, default=DEFAULT_MAX_TILES,
        help=f"the tile budget the batch will be scored with (score --max-tiles, the nightly's max_tiles), "
        f"{MIN_TILE_BUDGET}-{MAX_TILE_BUDGET}: blur and contrast are measured at the scale scoring tiles a photo at "
        f"(default: {DEFAULT_MAX_TILES})",
    )  # fmt: skip
    parser.set_defaults(handler=run_validate)
    return parser


def _thresholds(args: argparse.Namespace) -> Any:

    thresholds = ValidationThresholds.load(args.thresholds) if args.thresholds else ValidationThresholds()
    overrides: dict[str, Any] = {}
    if args.classes:
        names = tuple(name.strip() for name in args.classes.split(",") if name.strip())
        if not names:
            raise CrackModelError(f"--classes {args.classes!r} names no class: use e.g. Negative,Positive")
        overrides["class_names"] = names
    if args.min_images_per_class is not None:
        overrides["min_images_per_class"] = args.min_images_per_class
    if args.max_bad_fraction is not None:
        overrides["max_bad_fraction"] = args.max_bad_fraction
    return thresholds.replace(**overrides) if overrides else thresholds


def _is_incoming(uri: str) -> bool:

    head = uri.rstrip("/").rpartition("/")[0]
    return head.rpartition("/")[2] == layout.INCOMING


def split_labeled_uri(uri: str) -> tuple[str, str]:
    """``<store>/labeled`` -> (store, "labeled"); any other folder or prefix -> (itself, "")."""
    text = uri.rstrip("/")
    head, _, last = text.rpartition("/")
    if last == LABELED and not head.endswith(":/"):
        return head or ".", LABELED
    return text, ""


def _holdout_hashes(args: argparse.Namespace, store_uri: str, prefix: str) -> set[str] | None:

    if args.holdout:
        return load_hashes(args.holdout)
    if prefix == LABELED:
        store = open_store(store_uri)
        if next(iter(store.list(f"{HOLDOUT}/")), None) is not None:
            uri = store.url(HOLDOUT)
            log.info("checking the pool against the holdout at %s", uri)
            return load_hashes(uri)
    return None


def run_validate(args: argparse.Namespace) -> int:
    """Validate, print the outcome; 0 when the batch may be scored (passed or passed_with_quarantine), else 1."""

    suite = args.suite
    if suite not in SUITES and not suite.endswith(".json"):
        raise CrackModelError(f"unknown --suite {suite!r}: use {' or '.join(SUITES)}, or a suite .json file")
    thresholds = _thresholds(args)
    profile_config = ProfileConfig(workers=args.workers, tiles=TileConfig(max_tiles=args.max_tiles))
    if _is_incoming(args.batch) or suite != "training":
        store_uri, batch_id = layout.parse_batch_uri(args.batch)
        holdout = _holdout_hashes(args, store_uri, "") if suite == "training" else None
        outcome = validate_batch(
            store_uri, batch_id, suite, thresholds=thresholds, reference=args.reference, holdout_hashes=holdout,
            report_uri=args.report, profile_config=profile_config,
        )  # fmt: skip
    else:
        store_uri, prefix = split_labeled_uri(args.batch)
        outcome = validate_labeled(
            store_uri, prefix, name=args.name, output_uri=args.output, thresholds=thresholds,
            holdout_hashes=_holdout_hashes(args, store_uri, prefix), reference=args.reference,
            report_uri=args.report, write_reference_uri=args.write_reference, profile_config=profile_config,
        )  # fmt: skip
    print(outcome.summary())
    return 0 if outcome.passed else 1
