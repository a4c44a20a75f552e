"""The card's ``patch_confirm_threshold``: chosen on the validation split, applied to the split's labels.

Scoring confirms a one-tile image scored from the threshold up to ``PATCH_CONFIRM_BELOW`` by its
flips (serving/photo_confirmation.py). The threshold its mean over itself and its flips must reach
starts at the patch threshold, is lowered to the lowest mean of any validation crack patch in the
band (the validation split loses no crack it found), and then by ``UNSEEN_SURFACE_MARGIN`` more.

The margin is for surfaces and photos the validation split has not seen. Without it, the METU-only
model missed 5 more of the 450 site-b cracks it was scored on (pavement and plaster, never trained
on; 1 more on another host): those crack patches averaged as low as 0.40 over their flips, METU's
in the band no lower than 0.78. A margin of 0.1 kept them, but over ten models trained with 100
site-b photos (five splits) it still lost 5 site-b cracks the threshold found, which averaged as
low as 0.34: the split's few site cracks in the band had all averaged higher. At 0.2 none was lost,
and the confirmation removes less (METU cross-validation: 12 false alarms of 4,000 against 14 by
the threshold alone and 10 at 0.1; ``python -m bench.adaptation``'s ``by_margin``, ``crack-model
evaluate --cv``; README "Patches confirmed by flips"). The split's figures in
``metrics.json`` (and so cross-validation's) are those of the confirmed labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from crack_model.core.config import DataConfig
from crack_model.core.imaging import decode_to_array
from crack_model.data.labeled import LabeledImage, read_labeled
from crack_model.evaluation.metrics import predicted_labels
from crack_model.serving.photo_confirmation import PATCH_CONFIRM_BELOW, flipped, patch_needs_confirmation

BATCH = 32
# Below the lowest validation crack's mean: what a surface the split has not seen needs (module docstring).
UNSEEN_SURFACE_MARGIN = 0.2


def band_flip_means(
    classifier: Any, images: Sequence[LabeledImage], crack_probabilities: np.ndarray, threshold: float,
    data_config: DataConfig, *, patches: Sequence[bool],
) -> np.ndarray:  # fmt: skip
    """Each patch's mean crack probability over itself and its flips where it needs confirmation, else NaN.

    ``patches``: which images are one-tile images (a photo's label comes from its tiles, not from this).
    """
    means = np.full(len(images), np.nan)
    band = [index for index, probability in enumerate(crack_probabilities)
            if patches[index] and patch_needs_confirmation(float(probability), threshold)]  # fmt: skip
    for start in range(0, len(band), BATCH):
        chosen = band[start : start + BATCH]
        pixels = [decode_to_array(read_labeled(images[index]), data_config.image_size) for index in chosen]
        views = [np.stack(pixels)] + [np.stack([flipped(tile)[flip] for tile in pixels]) for flip in range(3)]
        scores = [np.asarray(classifier.predict_on_batch(view.astype(np.float32)))[:, data_config.crack_index]
                  for view in views]  # fmt: skip
        means[chosen] = np.mean(scores, axis=0)
    return means


def choose_patch_confirmation(is_crack: Sequence[bool], means: np.ndarray, threshold: float) -> dict[str, Any]:
    """The threshold that keeps every validation crack in the band, with a margin below it, and why.

    Never above the patch threshold less the margin, nor below 0.
    """
    crack_means = [float(mean) for crack, mean in zip(is_crack, means, strict=True) if crack and not np.isnan(mean)]
    lowest = min(crack_means, default=None)
    return {
        "threshold": confirm_threshold_below(threshold, lowest),
        "margin": UNSEEN_SURFACE_MARGIN,
        "confirm_below": PATCH_CONFIRM_BELOW,
        "validation_cracks_in_band": len(crack_means),
        "validation_images_in_band": int(np.count_nonzero(~np.isnan(means))),
        "lowest_crack_mean": lowest,
    }


def confirm_threshold_below(
    threshold: float, lowest_crack_mean: float | None, margin: float = UNSEEN_SURFACE_MARGIN
) -> float:
    """``margin`` below the lowest validation crack's mean (or the threshold, if lower or none), never below 0."""
    highest_allowed = threshold if lowest_crack_mean is None else min(threshold, lowest_crack_mean)
    return max(0.0, highest_allowed - margin)


def confirmed_labels(
    probabilities: np.ndarray, means: np.ndarray, threshold: float, confirm_threshold: float | None,
    class_names: Sequence[str], crack_class: str,
) -> list[str]:  # fmt: skip
    """The labels scoring gives: crack at the threshold and, where a mean was taken, at the confirmation too.

    An unconfirmed crack gets the most likely other class, as an image under the threshold does.
    """
    labels = predicted_labels(probabilities, threshold, class_names, crack_class)
    if confirm_threshold is None:
        return labels
    for index, mean in enumerate(means):
        if labels[index] == crack_class and not np.isnan(mean) and mean < confirm_threshold:
            labels[index] = predicted_labels(probabilities[index : index + 1], np.inf, class_names, crack_class)[0]
    return labels
