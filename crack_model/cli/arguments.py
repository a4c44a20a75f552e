"""Argument types and option groups shared by the commands."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from crack_model.core.config import (
    DEFAULT_CLASS_NAMES,
    DEFAULT_CRACK_CLASS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from crack_model.core.errors import CrackModelError
from crack_model.core.layout import Shard
from crack_model.core.tiling import DEFAULT_MAX_TILES, MAX_TILE_BUDGET, MIN_TILE_BUDGET, parse_tile_budget

# A word that starts with a dash and a digit is a value: none of our options looks like that, and argparse's own
# test (a plain negative number) took `--shard -1/2` or `--learning-rate -1e-3` for an option, so the user saw
# "expected one argument" instead of what is wrong with the value.
VALUE_WITH_LEADING_DASH = re.compile(r"^-\.?\d")


class CommandLineParser(argparse.ArgumentParser):
    """An ArgumentParser that reads ``-1/2`` or ``-1e-3`` as a value; its subcommands' parsers are of this class
    too (``add_subparsers`` makes them with the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's switch for what looks like a negative number: it is read where options and values are told
        # apart, and where an option that looks like a number (none here) turns the rule off.
        self._negative_number_matcher = VALUE_WITH_LEADING_DASH


def class_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"need at least two comma-separated class names, got {text!r}")
    return names


def probability(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


SEAM_SHARE_HELP = (
    "seam examples (tiles across the borders of training patches) per training image of each class and slice "
    f"(default: {TrainConfig.seam_share}; 0: none)"
)
HIDDEN_UNITS_HELP = f"units of a hidden ReLU layer in the head (default: {ModelConfig.hidden_units}; 0: a linear head)"


def layer_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"names a layer twice: {text!r}")
    return names


def add_head_options(parser: argparse.ArgumentParser) -> None:
    """What the head sees and is: ``ModelConfig.hidden_units`` and ``pooled_layers``."""
    parser.add_argument(
        "--hidden-units", type=non_negative_int, default=ModelConfig.hidden_units, help=HIDDEN_UNITS_HELP
    )
    parser.add_argument("--pooled-layers", type=layer_names, default=ModelConfig.pooled_layers,
                        help="comma-separated base layers pooled beside the last for the head, e.g. "
                        "block_6_expand_relu,block_13_expand_relu (default: none)")  # fmt: skip


def add_augmentation_options(parser: argparse.ArgumentParser) -> None:
    """The augmentation levers of ``ModelConfig`` (flips and rotations are always on; --no-augment: none)."""
    for name, what in (("zoom", "zoomed in or out"), ("brightness", "made brighter or darker"),
                       ("contrast", "given more or less contrast")):  # fmt: skip
        default = getattr(ModelConfig, f"{name}_factor")
        help_text = f"augmented views are {what} by up to this fraction (default: {default}; 0: off)"
        parser.add_argument(f"--{name}-factor", type=fraction, default=default, help=help_text)


def model_config_from(args: argparse.Namespace, **fields: Any) -> ModelConfig:
    """A ModelConfig with ``add_augmentation_options``' and ``add_head_options``' flags and ``fields``."""
    return ModelConfig(zoom_factor=args.zoom_factor, brightness_factor=args.brightness_factor,
                       contrast_factor=args.contrast_factor, hidden_units=args.hidden_units,
                       pooled_layers=args.pooled_layers, **fields)  # fmt: skip


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 4:
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 4, got {text}")
    return value


def exponent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be an exponent from 0 to 10, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def add_data_options(parser: argparse.ArgumentParser) -> None:
    # No default here (data_config_from fills them in): evaluate must tell them given from not given.
    parser.add_argument(
        "--classes", type=class_names, help="comma-separated class folder names (default: Negative,Positive)"
    )
    parser.add_argument("--crack-class", help="the class that means crack (default: Positive)")
    parser.add_argument(
        "--image-size", type=image_size, default=224, help="model input size in pixels, 32-1024 (default: 224)"
    )
    parser.add_argument("--batch-size", type=batch_size, default=32, help="batch size (default: 32)")
    parser.add_argument("--seed", type=seed, default=42, help="seed for the split and training (default: 42)")


def data_config_from(args: argparse.Namespace) -> DataConfig:

    try:
        return DataConfig(
            class_names=args.classes or DEFAULT_CLASS_NAMES,
            crack_class=args.crack_class or DEFAULT_CRACK_CLASS,
            image_size=args.image_size,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except ValueError as error:
        raise CrackModelError(str(error)) from None


def image_size(text: str) -> int:
    """Model input pixels, ``DataConfig``'s range: 100,000 got the process killed for memory, a partial --out left."""
    value = int(text)
    if not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got {text}")
    return value


def fold_count(text: str) -> int:
    """Cross-validation folds: one fold leaves nothing to train on, found after the data was read."""
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be 2 or more folds, got {text}")
    return value


def shard(text: str) -> Shard:
    """``INDEX/COUNT``: refused when parsed, not after the model is loaded."""
    try:
        return Shard.parse(text)
    except CrackModelError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


MAX_TILES_HELP = (
    f"tiles per photo, {MIN_TILE_BUDGET}-{MAX_TILE_BUDGET}: a larger photo is scored downscaled to fit (default: "
    f"{DEFAULT_MAX_TILES}, a 12 MP phone photo at full size; 2048 keeps a 50 MP drone photo at its own scale, at "
    "about 4 times the time)"
)


def tile_budget(text: str) -> int:
    """``--max-tiles``: refused when parsed, not after the model is loaded or a shard started over; "abc" or "1e3"
    with the range too (``int`` made argparse name this function instead)."""
    try:
        return parse_tile_budget(text)
    except CrackModelError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def batch_size(text: str) -> int:
    """Images per batch, 1 to 1024: 100,000 made one photo allocate a 56 GB array before anything said no."""
    value = int(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be from 1 to 1024, got {text}")
    return value


def default_weights() -> str:
    """``$CRACK_MODEL_WEIGHTS``, else ``imagenet``: a variable set but empty is unset, not "no weights" (it trained
    a random base, at 50 % accuracy, without a word)."""
    return os.environ.get("CRACK_MODEL_WEIGHTS", "").strip() or "imagenet"


def seed(text: str) -> int:
    """A random seed NumPy takes: 0 to 2**32 - 1 (``--repeats`` adds one per repeat, checked where it is read)."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**32 - 1}, got {text}")
    return value


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1000:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number above 0, up to 1000, got {text}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1000:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1000, got {text}")
    return value


# The widths Keras publishes ImageNet weights for; any other leaves the base untrained.
MOBILENET_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def width_multiplier(text: str) -> float:
    value = float(text)
    if value not in MOBILENET_WIDTHS:
        raise argparse.ArgumentTypeError(
            f"must be one of {', '.join(map(str, MOBILENET_WIDTHS))} (MobileNetV2's widths), got {text}"
        )
    return value
