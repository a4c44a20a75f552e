"""A second look at a photo's highest tiles: are they still crack tiles when flipped?

On mosaics of clean METU patches, the clean photos the photo rule labels crack are single tiles
over a seam or a stain scoring 0.60-0.93; flipped, the same tiles average 0.26-0.62, while a crack
photo keeps a top tile at 0.75-1.00 in every view (``python -m bench.top_tile_views``, README
"Full-size photos"). A crack reads as a crack whichever way up; the texture change the model
takes for one often does not.

So a photo of several tiles whose highest tile reaches the tile threshold gets a *confirmation
score*: for each of its ``CONFIRM_TILES`` highest tiles, the mean crack probability over the tile
and its three flips (left-right, top-bottom, both), and the highest of these means. The highest
three, not only those at the threshold: a crack lights the tiles it crosses unevenly, and a
neighbour at 0.42 may read it better flipped (on the default model's weakest validation crack
photo the best tile, 0.61, averaged 0.21 over its flips and the third, 0.28, averaged 0.48). The
card's ``photo_confirm_threshold`` (chosen on the validation split, photo_calibration.py) is what
a photo the photo rule calls crack must also reach. Flips are cut from the tile's own pixels, so
no runtime needs the photo again: 9 more tiles for a photo of 150 (6 %), none for a photo no tile
lit (a one-tile image: below). The scoring core keeps copies of each photo's three highest tiles so
far while its tiles are scored (its batches are reused), and queues their flips once they all are.

A one-tile image (a patch) is confirmed the same way when the card has ``patch_confirm_threshold``
and its score lies from the threshold up to ``PATCH_CONFIRM_BELOW``: its mean over itself and its
three flips must reach that threshold. In 5-fold cross-validation on the METU sample (4 seeds,
8,000 scored patches), the false alarms the confirmation removes are stains and joints scoring
0.55-0.81 one way up that average 0.19-0.47 over their flips, while the 17 crack patches in the
band average 0.78-0.97. Training sets the threshold a margin below what its validation cracks
reach, for surfaces it has not seen (training/patch_confirmation.py). No flip removes the false
alarms above 0.9 (a drawn line scores 0.96-0.999 every way up), and 3,978 of the 4,000 cracks
score above it: so a patch above 0.9 is taken as it is, and a night of cracks scores few flips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONFIRM_TILES = 3
FLIPS = 3  # left-right, top-bottom, both: with the tile as cut, the four views averaged
# A one-tile image scoring at least this is not confirmed: no flip changed a label there (module docstring).
PATCH_CONFIRM_BELOW = 0.9


def patch_needs_confirmation(probability: float, threshold: float) -> bool:
    """Whether a one-tile image with this crack probability is confirmed by its flips before it is called crack."""
    return threshold <= probability < PATCH_CONFIRM_BELOW


def flipped(tile: np.ndarray) -> list[np.ndarray]:
    """The tile's three flips (views of its pixels: copy them where they must outlive it)."""
    return [tile[:, ::-1], tile[::-1, :], tile[::-1, ::-1]]


def confirmation_candidates(probabilities: Sequence[float], tile_threshold: float) -> list[int]:
    """Indices of the photo's ``CONFIRM_TILES`` highest tiles, highest first (ties: the first), if it is lit.

    None (``[]``) for a photo no tile lit (its highest under the tile threshold: no rule calls it crack)
    and for a one-tile image (confirmed on its own terms: ``patch_needs_confirmation``).
    """
    if len(probabilities) < 2 or max(probabilities) < tile_threshold:
        return []
    return sorted(range(len(probabilities)), key=lambda index: -probabilities[index])[:CONFIRM_TILES]


def confirmation_score(candidates: Sequence[float], flips: Sequence[float]) -> float | None:
    """The highest mean over a candidate tile and its flips.

    ``candidates``: the candidate tiles' probabilities; ``flips``: their flips', ``FLIPS`` per
    candidate in the same order. None without candidates.

    Raises:
        ValueError: flips that do not pair up with the candidates.
    """
    if len(flips) != FLIPS * len(candidates):
        raise ValueError(f"{len(candidates)} candidate tiles need {FLIPS * len(candidates)} flip scores, "
                         f"got {len(flips)}")  # fmt: skip
    means = [(candidate + sum(flips[FLIPS * i : FLIPS * (i + 1)])) / (FLIPS + 1)
             for i, candidate in enumerate(candidates)]  # fmt: skip
    return max(means, default=None)
