"""Sample weights that balance slices (``labeled/<class>/<slice>/``) and classes in training.

Without them, 100 photos of a new site beside 2,000 of the old one are 5 % of every epoch's
loss and the model barely moves. Classes are balanced first, then the slices within each class:
a class's total weight is proportional to ``count ** (1 - power)``, and it is shared among its
slices in proportion to theirs. Power 1 gives every class, and every slice within a class, the
same total weight; power 0 leaves every image at weight 1; in between tempers the boost a small
slice gets. (Balancing (class, slice) cells all alike let the number of folders decide a class's
weight: three stray one-photo folders under Negative left the crack class a fifth of the loss.)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from crack_model.data.labeled import LabeledImage


def balance_weights(
    images: Sequence[LabeledImage], power: float = 1.0, *, crack_class: str | None = None, crack_weight: float = 1.0
) -> np.ndarray:
    """One weight per image (times ``crack_weight`` for cracks), mean 1: classes balanced, then slices within each.

    Args:
        images: the training images (their ``label`` and ``slice``).
        power: 0 (no balancing) to 1 (every class, and every slice within a class, weighs the same in total).
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
    keep = 1.0 - power  # of each count, in a class's or a slice's total weight
    cells = Counter((image.label, image.slice) for image in images)
    classes = Counter(image.label for image in images)
    slices_mass: defaultdict[str, float] = defaultdict(float)
    for (label, _), count in cells.items():
        slices_mass[label] += count**keep

    def weight(image: LabeledImage) -> float:
        count = cells[(image.label, image.slice)]
        cell_total = float(classes[image.label] ** keep * count**keep / slices_mass[image.label])
        return cell_total / count

    weights = np.array([weight(image) for image in images], dtype=np.float64)
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
