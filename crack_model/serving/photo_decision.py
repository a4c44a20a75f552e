"""A photo's label from its tile scores: the photo rule of the model card.

The threshold in the card is chosen per 227-px patch. A full-size photo is cut into ~150 tiles
(a phone photo into ~430), and labeling it by its highest tile makes every tile a chance for a
false alarm: on photos built from clean patches, tiles straddling a change of texture scored
0.56-0.75, above the patch threshold, while real cracks scored 0.92-1.00. So a photo of more than
one tile is a crack only when

* its highest tile reaches ``photo_threshold`` (chosen on mosaics of validation patches and on the
  validation split's labeled photos, never below the patch threshold), and
* at least ``photo_min_tiles`` tiles at or above the patch threshold touch one another (a crack
  crosses the overlap of neighbouring tiles and lights several; a seam often lights one), in a photo of
  at least ``GROUPED_FROM_TILES`` tiles.

``photo_threshold`` holds for photos of up to ``photo_tiles`` tiles (the calibration mosaics' count,
or with none the median of the labeled photos it was chosen on). A photo of more tiles gives a clean
surface more chances, so for it the threshold rises in log-odds by ``photo_tail_scale`` per e-fold
of tiles: the tail of clean tiles' log-odds falls off about exponentially (photo_calibration.py), so
a photo's chance of a false alarm stays about what it was on the calibration photos. The rise stops
at ``photo_max_threshold``, the highest tile 90 % of the validation crack photos reach: however big
the photo, a crack as clear as most is still found (int8 cannot score above 0.996; a rise past that
would find nothing). It never falls for smaller photos: on 42-tile mosaics of METU test patches the
patch threshold had 6 false alarms in 120 clean photos and the photo threshold 1, finding the same
120 crack photos (README "Full-size photos").

A photo the rule calls crack must also be *confirmed* when the card has ``photo_confirm_threshold``:
one of its highest tiles, averaged with its flips, still reaches it (photo_confirmation.py).

A photo of one tile (a patch, a small image) keeps the patch rule, confirmed by its flips when the
card has ``patch_confirm_threshold`` and its score is below ``PATCH_CONFIRM_BELOW``. Crack *tiles*, for overlays
and ``tile_probabilities``, stay those at or above the patch threshold. A card without a photo
rule (``photo_threshold`` None, ``photo_min_tiles`` 1) labels photos as before: highest tile
at or above the threshold. Every runtime goes through ``photo_is_crack``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from crack_model.core.model_card import ModelCard
from crack_model.core.tiling import Box
from crack_model.serving.photo_confirmation import patch_needs_confirmation

# The touching tiles asked for apply from this many tiles: the fewest of a mosaic the rule is chosen or gated on
# (4 cells in a row). A photo of 2 or 3 tiles could not show 3 touching ones: with both tiles at 0.996, 200 of 200
# two-tile crack photos were missed. Below it, the highest tile and the confirmation decide.
GROUPED_FROM_TILES = 6


@dataclass(frozen=True)
class PhotoRule:
    """The decision inputs taken from a model card."""

    tile_threshold: float
    photo_threshold: float | None = None
    min_tiles: int = 1
    calibrated_tiles: int | None = None  # photo_threshold holds up to this many tiles; None: for any count
    tail_scale: float = 0.0  # log-odds added per e-fold of tiles beyond calibrated_tiles
    max_threshold: float | None = None  # the rise stops here (None: no limit)
    confirm_threshold: float | None = None  # a top tile's mean over its flips must reach this (None: no confirmation)
    patch_confirm_threshold: float | None = None  # the same for a one-tile image in the band (photo_confirmation.py)

    def __post_init__(self) -> None:
        if self.min_tiles < 1:
            raise ValueError(f"photo_min_tiles must be at least 1, got {self.min_tiles} (fix the model card)")
        if self.tail_scale < 0 or (self.calibrated_tiles is not None and self.calibrated_tiles < 1):
            msg = (f"photo_tail_scale must not be negative and photo_tiles must be at least 1, got "
                   f"{self.tail_scale} and {self.calibrated_tiles} (fix the model card)")  # fmt: skip
            raise ValueError(msg)

    @classmethod
    def of(cls, card: ModelCard) -> PhotoRule:
        return cls(card.threshold, card.photo_threshold, card.photo_min_tiles, card.photo_tiles,
                   card.photo_tail_scale or 0.0, card.photo_max_threshold, card.photo_confirm_threshold,
                   card.patch_confirm_threshold)  # fmt: skip

    @property
    def highest_needed(self) -> float:
        """What the highest tile of a photo of several tiles must reach: never less than a patch needs.

        (A threshold raised by hand above the card's photo threshold, say to silence a model, wins.)
        """
        return self.tile_threshold if self.photo_threshold is None else max(self.photo_threshold, self.tile_threshold)

    def needed_for(self, tiles: int) -> float:
        """What the highest tile of a photo of ``tiles`` tiles must reach (``highest_needed``, risen for big photos)."""
        if self.photo_threshold is None or self.calibrated_tiles is None or tiles <= self.calibrated_tiles:
            return self.highest_needed
        risen = 1.0 / (1.0 + math.exp(-(log_odds(self.photo_threshold)
                                        + self.tail_scale * math.log(tiles / self.calibrated_tiles))))  # fmt: skip
        if self.max_threshold is not None:
            risen = min(risen, self.max_threshold)
        return max(self.highest_needed, risen)  # never below it (nor below it by rounding)

    def capped_for(self, tiles: int) -> bool:
        """Whether a photo of ``tiles`` tiles needs the rise's cap: the threshold stopped rising below what would
        keep its chance of a false alarm that of a calibration photo, which grows with the tile count beyond it."""
        if self.photo_threshold is None or self.calibrated_tiles is None or self.max_threshold is None:
            return False
        if tiles <= self.calibrated_tiles:
            return False
        uncapped = log_odds(self.photo_threshold) + self.tail_scale * math.log(tiles / self.calibrated_tiles)
        return uncapped > log_odds(self.max_threshold) and self.max_threshold > self.highest_needed

    def describe(self, tiles: int | None = None) -> str:
        """The rule in words; for a photo of ``tiles`` tiles, with the threshold that photo needs."""
        needed = self.highest_needed if tiles is None else self.needed_for(tiles)
        parts = [f"highest tile >= {needed:.4f}"]
        if tiles is None and self.calibrated_tiles is not None and self.tail_scale > 0:
            rise = f"up to {self.calibrated_tiles} tiles; +{self.tail_scale:.2f} log-odds per e-fold more"
            if self.max_threshold is not None:
                rise += f", at most {max(self.max_threshold, self.highest_needed):.4f}"
            parts[0] += f" ({rise})"
        if self.min_tiles > 1 and (tiles is None or tiles >= GROUPED_FROM_TILES):
            parts.append(f"{self.min_tiles} touching tiles >= {self.tile_threshold:.4f}")
        if self.confirm_threshold is not None:
            parts.append(f"a top tile's mean over its flips >= {self.confirm_threshold:.4f}")
        return " and ".join(parts)


def log_odds(probability: float) -> float:
    """ln(p / (1 - p)), with p kept off 0 and 1 (a threshold of 1.0 stays finite)."""
    clipped = min(max(probability, 1e-7), 1 - 1e-7)
    return math.log(clipped / (1 - clipped))


def largest_group(probabilities: Sequence[float], boxes: Sequence[Box], threshold: float) -> int:
    """The number of tiles in the largest group of tiles at or above ``threshold`` whose boxes overlap.

    Neighbouring tiles overlap (25 % by default, diagonal ones at a corner), so a group is a
    connected patch of crack tiles.
    """
    if len(boxes) != len(probabilities):
        msg = f"{len(probabilities)} tile probabilities but {len(boxes)} tile boxes: they must pair up"
        raise ValueError(msg)
    hot = [box for box, probability in zip(boxes, probabilities, strict=True) if probability >= threshold]
    parent = list(range(len(hot)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first in range(len(hot)):
        for second in range(first + 1, len(hot)):
            if overlap(hot[first], hot[second]):
                parent[root(first)] = root(second)
    sizes: dict[int, int] = {}
    for index in range(len(hot)):
        sizes[root(index)] = sizes.get(root(index), 0) + 1
    return max(sizes.values(), default=0)


def overlap(first: Box, second: Box) -> bool:
    """Whether two pixel boxes share some area."""
    return min(first[2], second[2]) > max(first[0], second[0]) and min(first[3], second[3]) > max(first[1], second[1])


def photo_is_crack(
    probabilities: Sequence[float], boxes: Sequence[Box], rule: PhotoRule, confirmation: float | None = None
) -> bool:
    """Whether a photo with these tile scores (and confirmation score, photo_confirmation.py) is a crack under ``rule``.

    Raises:
        ValueError: no tile scores, scores and boxes that do not pair up, or a rule that asks for a
            confirmation the photo was scored without.
    """
    if not lit_by_rule(probabilities, boxes, rule):
        return False
    needed = confirmation_needed(probabilities, rule)
    if needed is None:
        return True
    if confirmation is None:
        raise ValueError("the model card asks for a confirmation by flips, but the image was scored without "
                         "one: score it with confirmation on (inference.score_images: confirm for photos, "
                         "confirm_patches for one-tile images)")  # fmt: skip
    return confirmation >= needed


def confirmation_needed(probabilities: Sequence[float], rule: PhotoRule) -> float | None:
    """What the confirmation score of a lit image must reach under ``rule``; None: it needs no confirmation."""
    if len(probabilities) > 1:
        return rule.confirm_threshold
    if rule.patch_confirm_threshold is None or not patch_needs_confirmation(probabilities[0], rule.tile_threshold):
        return None
    return rule.patch_confirm_threshold


def lit_by_rule(probabilities: Sequence[float], boxes: Sequence[Box], rule: PhotoRule) -> bool:
    """Whether the photo is a crack by its tile scores alone: the rule before any confirmation."""
    if not probabilities:
        raise ValueError("a photo needs at least one tile probability to be labeled")
    highest = max(probabilities)
    if len(probabilities) == 1:
        return highest >= rule.tile_threshold
    if highest < rule.needed_for(len(probabilities)):
        return False
    return has_group(probabilities, boxes, rule.tile_threshold, rule.min_tiles)


def has_group(probabilities: Sequence[float], boxes: Sequence[Box], threshold: float, min_tiles: int) -> bool:
    """Whether ``min_tiles`` tiles at or above ``threshold`` touch, as the rule asks of a photo of that many tiles
    (of fewer than ``GROUPED_FROM_TILES``, nothing): the one test serving and calibration apply."""
    if min_tiles <= 1 or len(probabilities) < GROUPED_FROM_TILES:
        return True
    return largest_group(probabilities, boxes, threshold) >= min_tiles


def decision_note(
    probabilities: Sequence[float], rule: PhotoRule, is_crack: bool, unconfirmed: float | None = None
) -> str:
    """Why a photo is not a crack although a tile reached the tile threshold, or why a crack photo deserves a look
    (its threshold at the rise's cap); "" when the rules agree.

    ``unconfirmed``: the confirmation score of a photo the rule lit (``lit_by_rule``) but the confirmation did not keep.
    """
    highest = max(probabilities)
    tiles = len(probabilities)
    if is_crack and tiles > 1 and rule.capped_for(tiles):
        return (f"crack by the photo rule over {tiles} tiles with its threshold at the cap, "
                f"{rule.needed_for(tiles):.4f} (it rises with the tile count up to there, from the "
                f"{rule.calibrated_tiles} tiles it was calibrated on): a photo this big raises false alarms more "
                f"often; check the overlay")  # fmt: skip
    if is_crack or highest < rule.tile_threshold:
        return ""
    needed = confirmation_needed(probabilities, rule)
    if unconfirmed is not None and needed is not None and len(probabilities) == 1:
        return (f"no crack: not confirmed when flipped (mean of the image and its flips {unconfirmed:.4f} < "
                f"{needed:.4f}); crack probability {highest:.4f}")  # fmt: skip
    if unconfirmed is not None and needed is not None:
        return (f"no crack: the highest tiles are not confirmed when flipped (mean {unconfirmed:.4f} < "
                f"{needed:.4f}); highest tile {highest:.4f}")  # fmt: skip
    return f"no crack by the photo rule over {tiles} tiles ({rule.describe(tiles)}); highest tile {highest:.4f}"
