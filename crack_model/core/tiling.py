"""Cut large photos into overlapping tiles the size of the training patches.

The training images are 227x227 crops of 4032x3024 phone photos; squashing a whole photo
into one 224x224 input would shrink a hairline crack below a pixel. A photo larger than
the tile size is cut into overlapping tiles, each tile is scored, and the photo's crack
probability is the highest tile's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from crack_model.core.imaging import fit_to_input

Box = tuple[int, int, int, int]  # left, top, right, bottom


@dataclass(frozen=True)
class TileConfig:
    tile_size: int = 227
    overlap: float = 0.25
    # Images up to this factor of the tile size are scored whole: tiling a 256x256
    # image into four near-identical tiles gains nothing.
    whole_image_slack: float = 1.25

    def __post_init__(self) -> None:
        if self.tile_size < 32:
            raise ValueError(f"tile size must be at least 32 pixels, got {self.tile_size}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"tile overlap must be in [0, 1), got {self.overlap}")


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    # Spread evenly so the last tile ends exactly at the edge.
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def tile_boxes(width: int, height: int, config: TileConfig) -> list[Box]:
    """Tile boxes covering the image; one box (the whole image) for small images."""
    limit = config.tile_size * config.whole_image_slack
    if width <= limit and height <= limit:
        return [(0, 0, width, height)]
    tile = min(config.tile_size, width, height)
    stride = max(1, round(tile * (1 - config.overlap)))
    return [
        (left, top, left + tile, top + tile)
        for top in _starts(height, tile, stride)
        for left in _starts(width, tile, stride)
    ]


def grid_shape(boxes: list[Box]) -> tuple[int, int]:
    """(rows, columns) of a tile grid made by tile_boxes."""
    columns = len({box[0] for box in boxes})
    return len(boxes) // max(columns, 1), columns


def cut_tiles(image: Image.Image, boxes: list[Box], size: int) -> np.ndarray:
    """Crop each box and resize it to the model's input: uint8 array (tiles, size, size, 3)."""
    tiles = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for index, box in enumerate(boxes):
        crop = image if box == (0, 0, *image.size) else image.crop(box)
        tiles[index] = np.asarray(fit_to_input(crop, size), dtype=np.uint8)
    return tiles
