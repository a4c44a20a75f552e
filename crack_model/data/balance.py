"""Sample weights that balance slices (``labeled/<class>/<slice>/``) and classes in training.

Without them, 100 photos of a new site beside 2,000 of the old one are 5 % of every epoch's
loss and the model barely moves. Each (class, slice) cell gets a total weight proportional
to ``count ** (1 - power)``: power 1 gives every cell the same total weight, power 0 leaves
every image at weight 1, in between tempers the boost a small slice gets.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from crack_model.data.labeled import LabeledImage


def balance_weights(
    images: Sequence[LabeledImage], power: float = 1.0, *, crack_class: str | None = None, crack_weight: float = 1.0
) -> np.ndarray:
    """One weight per image, ``count(class, slice) ** -power`` (times ``crack_weight`` for cracks), mean 1.

    Args:
        images: the training images (their ``label`` and ``slice``).
        power: 0 (no balancing) to 1 (every class and slice weighs the same in total).
        crack_class: the label ``crack_weight`` applies to.
        crack_weight: how much more a crack image weighs than a balanced non-crack one.

    Returns:
        float32 weights in the images' order.
    """
    if not 0 <= power <= 1:
        raise ValueError(f"slice balance power must be in [0, 1], got {power}")
    if crack_weight <= 0:
        raise ValueError(f"crack weight must be positive, got {crack_weight}")
    if not images:
        return np.zeros(0, dtype=np.float32)
    counts = Counter((image.label, image.slice) for image in images)
    weights = np.array([counts[(image.label, image.slice)] ** -power for image in images], dtype=np.float64)
    if crack_weight != 1.0:
        weights *= np.array([crack_weight if image.label == crack_class else 1.0 for image in images])
    scaled: np.ndarray = (weights * len(weights) / weights.sum()).astype(np.float32)
    return scaled


def cell_shares(images: Sequence[LabeledImage], weights: np.ndarray) -> dict[str, float]:
    """Each ``<class>/<slice>`` cell's share of the total weight (for logs and reports)."""
    totals: dict[str, float] = defaultdict(float)
    for image, weight in zip(images, weights, strict=True):
        totals[f"{image.label}/{image.slice}"] += float(weight)
    grand = sum(totals.values()) or 1.0
    return {cell: round(total / grand, 4) for cell, total in sorted(totals.items())}
