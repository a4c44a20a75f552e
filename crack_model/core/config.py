"""Defaults for each concern, one frozen dataclass each; override with CLI flags or DAG params."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_CLASS_NAMES = ("Negative", "Positive")
DEFAULT_CRACK_CLASS = "Positive"
# Model input sizes, in pixels: MobileNetV2's smallest, and a largest that still trains in memory (100,000 got the
# process killed for memory, a partial output left behind). The retraining DAG's image_size Param says the same.
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class DataConfig:
    """How labeled images are found, split and fed to the model."""

    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    crack_class: str = DEFAULT_CRACK_CLASS
    image_size: int = 224
    batch_size: int = 32
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42

    def __post_init__(self) -> None:
        if self.crack_class not in self.class_names:
            msg = f"crack class {self.crack_class!r} is not one of the class names {list(self.class_names)}"
            raise ValueError(msg)
        if len(set(self.class_names)) != len(self.class_names) or len(self.class_names) < 2:
            msg = f"class names must be at least two distinct names, got {list(self.class_names)}"
            raise ValueError(msg)
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.test_fraction < 1:
            msg = "validation and test fractions must each be in [0, 1)"
            raise ValueError(msg)
        if self.validation_fraction + self.test_fraction >= 1:
            msg = "validation + test fractions must leave something to train on (sum < 1)"
            raise ValueError(msg)
        if not MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE:
            msg = f"image size must be from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, got {self.image_size}"
            raise ValueError(msg)

    @property
    def crack_index(self) -> int:
        return self.class_names.index(self.crack_class)


@dataclass(frozen=True)
class ModelConfig:
    """The network: MobileNetV2 base plus a small classifier head."""

    alpha: float = 1.0
    # "imagenet" (Keras download), a path to a weights file (air-gapped sites), or "none".
    weights: str = "imagenet"
    dropout: float = 0.2
    # A hidden ReLU layer of this many units between the pooled features and the output; 0: none
    # (a linear head on the pooled features).
    hidden_units: int = 0
    # Base layers whose pooled outputs join the last layer's in the features the head sees (MobileNetV2
    # layer names, e.g. block_13_expand_relu); empty: the last layer alone. A lever (README "Cross-validation").
    pooled_layers: tuple[str, ...] = ()
    augment: bool = True
    rotation_factor: float = 0.1
    # Augmented views are also zoomed in or out by up to this fraction (the surface seen nearer or
    # further; a zoomed-out border is reflected). Cross-validated over 8 seeds it missed 10 METU cracks
    # against 15, fewer or as many with every seed; on another surface it changed nothing measurable
    # (README "Augmentation: a surface seen nearer, further and in other light"; bench/transfer.py).
    zoom_factor: float = 0.3
    # Brightness and contrast changed by up to these fractions: levers, off by default (on another
    # surface they traded missed cracks for false alarms, and a missed crack is the costly error).
    brightness_factor: float = 0.0
    contrast_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.hidden_units < 0:
            raise ValueError(f"hidden_units must be 0 (no hidden layer) or more, got {self.hidden_units}")
        if isinstance(self.pooled_layers, str):
            raise ValueError(f"pooled_layers is a sequence of layer names, got the text {self.pooled_layers!r}")
        object.__setattr__(self, "pooled_layers", tuple(self.pooled_layers))  # a list (JSON, a DAG param) too
        if len(set(self.pooled_layers)) != len(self.pooled_layers):
            raise ValueError(f"pooled_layers names a layer twice: {list(self.pooled_layers)}")
        for name in ("zoom_factor", "brightness_factor", "contrast_factor"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation schedule."""

    epochs: int = 10
    learning_rate: float = 1e-3
    early_stopping_patience: int = 3
    # Second phase: unfreeze the top N layers of the base and fine-tune; 0 skips it.
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 5
    fine_tune_learning_rate: float = 1e-5
    # Missing a crack is the costly error: the threshold is lowered until the
    # validation split reaches this crack recall.
    target_recall: float = 0.99
    default_threshold: float = 0.5
    # Validation slices with at least this many images must each reach target_recall too.
    min_slice_images: int = 10
    # Balance classes, then slices within each class, in the loss: 1 = each class, and each slice of a class,
    # weighs the same; 0 = each image does (data/balance.py).
    slice_balance: float = 1.0
    # Each crack image's weight is multiplied by this (after slice balancing): above 1 trades false
    # alarms for crack recall, since a missed crack is the costly error.
    crack_weight: float = 1.0
    label_smoothing: float = 0.0
    # Focal loss's focusing exponent (training/fitting.py): above 0, images the model already gets
    # right weigh less in the loss than the hard ones. 0: plain cross-entropy.
    focal_gamma: float = 0.0
    # Tiles across the borders of training patches, as a share of each (class, slice)'s training
    # images (training/seams.py): a photo's changes of texture are not cracks. 0: none.
    seam_share: float = 0.25
    # Retraining from a champion (training/warm_start.py): its head is the start; above 0, each head weight's
    # squared distance from the champion's, times this, joins the loss (a pull toward it). Over 15 runs on a
    # new surface, 0.1 missed as many cracks as the start alone, with a fifth more false alarms, so it is a
    # lever, off by default. (The pull is part of val_loss too, which early stopping reads.)
    anchor_weight: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.seam_share < 0:
            raise ValueError(f"seam_share must not be negative, got {self.seam_share}")
        if not (self.anchor_weight >= 0 and math.isfinite(self.anchor_weight)):  # NaN and infinity too
            raise ValueError(f"anchor_weight must be 0 (no pull toward the champion) or more, got {self.anchor_weight}")
        if not self.focal_gamma >= 0:  # NaN too
            raise ValueError(f"focal_gamma must be 0 (plain cross-entropy) or more, got {self.focal_gamma}")
        if not 0 <= self.slice_balance <= 1:  # NaN too
            raise ValueError(f"slice_balance must be from 0 (none) to 1 (full), got {self.slice_balance}")
        if not (self.crack_weight > 0 and math.isfinite(self.crack_weight)):
            raise ValueError(f"crack_weight must be above 0 (1: as much as a non-crack image), got {self.crack_weight}")
        if self.fine_tune_layers < 0:
            raise ValueError(f"fine_tune_layers must be 0 (the base frozen) or more, got {self.fine_tune_layers}")
        if not 0 <= self.label_smoothing < 1:  # NaN too; at 1 every label is the same
            raise ValueError(f"label_smoothing must be from 0 (none) to below 1, got {self.label_smoothing}")
        for name in ("learning_rate", "fine_tune_learning_rate"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a number above 0, got {getattr(self, name)}")
