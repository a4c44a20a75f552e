"""An image in the scoring core between queuing its tiles and its last score (inference.score_images)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crack_model.serving.photo_confirmation import (
    CONFIRM_TILES,
    FLIPS,
    confirmation_score,
    flipped,
    patch_needs_confirmation,
)


@dataclass(eq=False)
class WaitingImage:
    """An image whose tiles are queued: its tile scores so far, and what its confirmation needs."""

    score: Any  # inference.ImageScore (inference imports this module)
    probabilities: list[float]
    unscored: int  # its tiles (then its flips) queued and not yet scored
    confirm: bool = False  # whether its top tiles (a photo's) or its one tile (in the band) are confirmed by flips
    # Copies of its highest tiles so far: (probability, index, pixels), highest first (ties: the first).
    kept: list[tuple[float, int, np.ndarray]] = field(default_factory=list)
    flips: list[float] = field(default_factory=list)  # FLIPS per kept tile, once they are queued
    confirmation: float | None = None

    def keep(self, probability: float, index: int, tile: np.ndarray) -> None:
        """Copy the tile out of its batch (which is reused) if it is among the highest so far."""
        if len(self.kept) < CONFIRM_TILES or probability > self.kept[-1][0]:
            self.kept.append((probability, index, tile.copy()))
            self.kept.sort(key=lambda kept: (-kept[0], kept[1]))
            del self.kept[CONFIRM_TILES:]

    def record(self, index: int, probability: float, tile: np.ndarray | None, tile_threshold: float) -> bool:
        """Take the score of one of its tiles (or of a flip); True when its flips are due (its tiles all scored).

        ``tile``: that tile's pixels while confirming (None: no confirmation). The flips are due only
        for a photo whose highest tile reaches ``tile_threshold`` (no rule calls any other a crack), and
        for a one-tile image only from there up to ``PATCH_CONFIRM_BELOW``.
        """
        tiles = len(self.probabilities)
        if index >= tiles:
            self.flips[index - tiles] = probability
        else:
            self.probabilities[index] = probability
            if tile is not None and (tiles > 1 or patch_needs_confirmation(probability, tile_threshold)):
                self.keep(probability, index, tile)
        self.unscored -= 1
        if self.unscored or not self.kept:
            return False
        if self.flips:  # the flips are scored too
            self.confirmation = confirmation_score([kept[0] for kept in self.kept], self.flips)
        elif self.kept[0][0] >= tile_threshold:
            self.flips = [0.0] * (FLIPS * len(self.kept))
            self.unscored = len(self.flips)
            return True
        self.kept = []  # confirmed, or no tile lit: nothing to confirm
        return False

    def flip_tiles(self) -> Iterator[tuple[int, np.ndarray]]:
        """(index, pixels) of the flips of its kept tiles: indices count on after its own tiles."""
        tiles = len(self.probabilities)
        for kept_index, (_, _, tile) in enumerate(self.kept):
            for flip_index, view in enumerate(flipped(tile)):
                yield tiles + FLIPS * kept_index + flip_index, view
