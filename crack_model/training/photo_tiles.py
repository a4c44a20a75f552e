"""Labeled photos larger than one tile train as the tiles scoring cuts them into.

Scoring cuts a photo larger than a tile into overlapping 227-px tiles at full resolution
(core/tiling.py) and labels it by its tiles. Training used to shrink such a photo whole to the
model's 224-px input, so a site that labels full-size photos trained at another scale than it is
scored at: a 12 MP photo shrunk 18 times, its hairline cracks gone.

Now such a photo trains as its tiles, cut as scoring cuts them (the same tile budget, padding and
boxes) and written as PNG files to a folder the caller owns, as seam examples are:

* A clean photo's tiles are all clean: up to ``SAMPLED_TILES`` of them, spread over the photo.
* A crack photo's label says that some tile shows a crack, not which one (multiple-instance
  learning). Training first fits with ``SAMPLED_TILES`` of its tiles labeled crack, then scores all
  of its tiles with that model and fits again with only the highest: the highest tile, and up to
  ``CHOSEN_TILES`` at or above the tile threshold. This is top-instance selection, as in weakly
  supervised whole-slide pathology (Campanella et al., Nature Medicine 2019). The other tiles stay
  out: some may show a crack's faint end, which must not be learned as clean.
* In that second fit a clean photo also trains as its ``CHOSEN_TILES`` highest tiles, the ones the
  first model took most for a crack (a joint, a stain, the edge of the member): a spread sample
  mostly misses them, and they are where a photo's false alarm comes from.
* In validation and test, a photo is scored as scoring labels it: by its highest tile, and for the
  photo rule's figures by all its tiles and the flips of its highest (photo_confirmation.py).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from crack_model.core.frames import image_without_frame
from crack_model.core.imaging import open_image
from crack_model.core.log_lines import module_logger
from crack_model.core.tiling import Box, TileConfig, cut_tiles, fit_to_tile_budget, pad_to_fit, tile_boxes, tile_count
from crack_model.data.labeled import LabeledImage, read_labeled
from crack_model.serving.photo_confirmation import (
    CONFIRM_TILES,
    FLIPS,
    confirmation_candidates,
    confirmation_score,
    flipped,
)
from crack_model.serving.photo_decision import PhotoRule, photo_is_crack

log = module_logger(__name__)

# Tiles of one photo that train before any is chosen (all of a clean photo's, ever).
SAMPLED_TILES = 16
# A crack photo trains as at most this many of its tiles.
CHOSEN_TILES = 4
# Tiles scored at once while choosing (224-px tiles: about 150 KB each).
SCORING_BATCH = 64

# uint8 tiles (n, size, size, 3) -> class probabilities (n, classes)
Predict = Callable[[np.ndarray], np.ndarray]


def is_photo(image: LabeledImage, tiles: TileConfig) -> bool:
    """Whether scoring cuts this image into more than one tile (False when its size was not read)."""
    if image.width <= 0 or image.height <= 0:
        return False
    return tile_count(*fit_to_tile_budget(image.width, image.height, tiles).padded, tiles) > 1


def spread(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` indices of ``range(count)``, evenly spread over it."""
    if count <= wanted:
        return list(range(count))
    return sorted({int(index) for index in np.linspace(0, count - 1, wanted).round()})


class PhotoTiles:
    """The tiles of labeled photos as training examples, written to ``folder`` (see the module's doc)."""

    def __init__(self, folder: Path, tiles: TileConfig, image_size: int, crack_class: str) -> None:
        self.folder, self.tiles, self.image_size, self.crack_class = folder, tiles, image_size, crack_class
        self._sampled: dict[str, list[LabeledImage]] = {}
        self._chosen: dict[str, list[LabeledImage]] = {}
        self._scored: dict[str, tuple[list[float], list[Box]]] = {}  # uri -> crack probability per tile, boxes
        self._flips: dict[str, dict[int, list[float]]] = {}  # uri -> its highest tiles' index -> their flips' scores

    def is_photo(self, image: LabeledImage) -> bool:
        return is_photo(image, self.tiles)

    def crack_photos(self, images: Sequence[LabeledImage]) -> list[LabeledImage]:
        return [image for image in images if image.label == self.crack_class and self.is_photo(image)]

    def examples(self, images: Sequence[LabeledImage], *, unchosen_cracks: bool = True) -> list[LabeledImage]:
        """What ``images`` train as: a patch as itself, a photo as its sampled tiles, or its chosen ones once
        ``choose`` has run. ``unchosen_cracks=False`` leaves out crack photos not chosen yet: most of their
        sampled tiles show no crack, which would mislead early stopping."""
        result: list[LabeledImage] = []
        for image in images:
            if not self.is_photo(image):
                result.append(image)
            elif image.uri in self._chosen:
                result.extend(self._chosen[image.uri])
            elif unchosen_cracks or image.label != self.crack_class:
                result.extend(self.sampled(image))
        return result

    def sampled(self, photo: LabeledImage) -> list[LabeledImage]:
        if photo.uri not in self._sampled:
            picture, boxes = self._cut(photo)
            self._sampled[photo.uri] = [
                self._write(photo, picture, boxes[i]) for i in spread(len(boxes), SAMPLED_TILES)
            ]
        return self._sampled[photo.uri]

    def choose(self, photos: Sequence[LabeledImage], predict: Predict, crack_index: int, threshold: float) -> None:
        """Score every tile of each photo with ``predict``; a crack photo then trains as its highest tiles,
        a clean one as its sampled tiles and its highest (``CHOSEN_TILES``: the tiles most like a crack)."""
        counts = {True: [0, 0], False: [0, 0]}  # is crack -> [photos, tiles]
        for photo in photos:
            picture, boxes = self._cut(photo)
            crack = self._probabilities(picture, boxes, predict)[:, crack_index]
            order = [int(i) for i in np.argsort(-crack, kind="stable")[:CHOSEN_TILES]]
            is_crack = photo.label == self.crack_class
            if is_crack:
                picks = [i for i in order if crack[i] >= threshold] or order[:1]
                chosen = [self._write(photo, picture, boxes[i]) for i in picks]
            else:  # the hardest clean tiles (a joint, a stain, an edge), which a spread sample mostly misses
                sampled = set(spread(len(boxes), SAMPLED_TILES))
                chosen = self.sampled(photo) + [
                    self._write(photo, picture, boxes[i]) for i in order if i not in sampled
                ]
            self._chosen[photo.uri] = chosen
            counts[is_crack][0] += 1
            counts[is_crack][1] += len(chosen)
        log.info("labeled photos: %d with cracks, trained as their %d highest tiles; %d clean, as %d tiles "
                 "(spread and highest)", *counts[True], *counts[False])  # fmt: skip

    def highest_tile(self, photo: LabeledImage, predict: Predict, crack_index: int) -> np.ndarray:
        """The class probabilities of the photo's tile most likely a crack: how scoring labels a photo.

        The photo's tile scores are kept for ``record``'s photo-rule figures: call this with the final model.
        """
        picture, boxes = self._cut(photo)
        probabilities = self._probabilities(picture, boxes, predict)
        crack = probabilities[:, crack_index]
        self._scored[photo.uri] = ([float(p) for p in crack], boxes)
        highest = [int(i) for i in np.argsort(-crack, kind="stable")[:CONFIRM_TILES]] if len(boxes) > 1 else []
        views = [
            view for tile in cut_tiles(picture, [boxes[i] for i in highest], self.image_size) for view in flipped(tile)
        ]
        flips = [float(p) for p in predict(np.stack(views))[:, crack_index]] if views else []
        self._flips[photo.uri] = {index: flips[FLIPS * k : FLIPS * (k + 1)] for k, index in enumerate(highest)}
        return np.asarray(probabilities[int(np.argmax(probabilities[:, crack_index]))])

    def record(self, images: Sequence[LabeledImage], rule: PhotoRule | None = None) -> dict[str, Any]:
        """How many of ``images`` are photos and how many of their tiles the fit used (training examples, or
        early-stopping ones for the validation split); with ``rule``, what it says
        of the photos ``highest_tile`` scored (for metrics.json)."""
        photos = [image for image in images if self.is_photo(image)]
        cracks = self.crack_photos(photos)
        record: dict[str, Any] = {
            "photos": len(photos),
            "crack_photos": len(cracks),
            "tiles_used": sum(len(self._chosen.get(photo.uri) or self._sampled.get(photo.uri, [])) for photo in photos),
            "crack_tiles_chosen": sum(len(self._chosen.get(photo.uri, [])) for photo in cracks),
        }
        scored = [photo for photo in photos if photo.uri in self._scored]
        if rule is not None and scored:
            said = {photo.uri: photo_is_crack(*self._scored[photo.uri], rule, self._confirmation(photo.uri, rule))
                    for photo in scored}  # fmt: skip
            record["photo_rule"] = {
                "runtime": "keras",
                "crack_photos": sum(photo.label == self.crack_class for photo in scored),
                "found": sum(said[photo.uri] for photo in scored if photo.label == self.crack_class),
                "clean_photos": sum(photo.label != self.crack_class for photo in scored),
                "false_alarms": sum(said[photo.uri] for photo in scored if photo.label != self.crack_class),
            }
        return record

    def _confirmation(self, uri: str, rule: PhotoRule) -> float | None:
        """The photo's confirmation score as scoring gives it (photo_confirmation.confirmation_candidates)."""
        probabilities = self._scored[uri][0]
        kept = confirmation_candidates(probabilities, rule.tile_threshold)
        flips = [value for index in kept for value in self._flips[uri][index]]
        return confirmation_score([probabilities[index] for index in kept], flips)

    def _cut(self, photo: LabeledImage) -> tuple[Image.Image, list[Box]]:
        """The photo at the size scoring tiles it at (inference.prepare), and its tile boxes."""
        fit = fit_to_tile_budget(photo.width, photo.height, self.tiles)
        picture, _ = image_without_frame(open_image(read_labeled(photo), size=fit.scaled))  # a round photo's frame
        picture = pad_to_fit(picture, fit)
        return picture, tile_boxes(picture.width, picture.height, self.tiles)

    def _probabilities(self, picture: Image.Image, boxes: list[Box], predict: Predict) -> np.ndarray:
        return np.concatenate([
            predict(cut_tiles(picture, boxes[start : start + SCORING_BATCH], self.image_size))
            for start in range(0, len(boxes), SCORING_BATCH)
        ])  # fmt: skip

    def _write(self, photo: LabeledImage, picture: Image.Image, box: Box) -> LabeledImage:
        buffer = io.BytesIO()
        tile = picture.crop(box)
        tile.save(buffer, format="PNG")
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"tile-{digest[:16]}.png"
        path.write_bytes(data)
        return LabeledImage(str(path), photo.label, sha256=digest, slice=photo.slice, width=tile.width,
                            height=tile.height)  # fmt: skip
