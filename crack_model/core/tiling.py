"""Cut large photos into overlapping tiles the size of the training patches.

The training images are 227x227 crops of 4032x3024 phone photos; squashing a whole photo
into one 224x224 input would shrink a hairline crack below a pixel. A photo larger than
the tile size is cut into overlapping tiles, each tile is scored, and the photo's crack
probability is the highest tile's.

Work per image is bounded: an image that would need more than ``max_tiles`` tiles (a 4032x3024
phone photo needs 432) is scored shrunk to fit, and a very thin one is also padded to one tile
high (or wide), since tiles of a thin strip are as small as the strip and their number does not
fall with the scale. ``TileFit`` records what was done, for the result row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageStat

from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import fit_array_to_input, fit_to_input

Box = tuple[int, int, int, int]  # left, top, right, bottom

# The tile budget a run may ask for (``score --max-tiles``, the nightly DAG's ``max_tiles``). 512 keeps a 12 MP
# phone photo (432 tiles) at full resolution. Below 64 a phone photo is scored under a third of its scale, where
# hairline cracks are gone. 2048 scores a 50 MP drone photo (1,734 tiles) at its own scale and keeps every image
# it tiles at full size within the decoder's 80 MP limit (``imaging.DEFAULT_MAX_PIXELS``; 60 MP for a 4:3 photo,
# 79 MP for the longest strip): a higher budget would turn a 100 MP JPEG, scored at 512 from a reduced decode,
# into a "too large" row.
DEFAULT_MAX_TILES = 512
MIN_TILE_BUDGET = 64
MAX_TILE_BUDGET = 2048


@dataclass(frozen=True)
class TileConfig:
    tile_size: int = 227
    overlap: float = 0.25
    # Images up to this factor of the tile size are scored whole: tiling a 256x256
    # image into four near-identical tiles gains nothing.
    whole_image_slack: float = 1.25
    # 512 keeps a 12 MP phone photo (432 tiles, the photos the training patches come from) at
    # full resolution and bounds an image's tiles to ~77 MB at 224 px.
    max_tiles: int = DEFAULT_MAX_TILES

    def __post_init__(self) -> None:
        if self.tile_size < 32:
            raise ValueError(f"tile size must be at least 32 pixels, got {self.tile_size}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"tile overlap must be in [0, 1), got {self.overlap}")
        if self.max_tiles < 1:
            raise ValueError(f"max tiles must be at least 1, got {self.max_tiles}")

    @property
    def stride(self) -> int:
        return max(1, round(self.tile_size * (1 - self.overlap)))


def check_tile_budget(max_tiles: object) -> int:
    """``max_tiles`` if a run may score with it (``MIN_TILE_BUDGET`` to ``MAX_TILE_BUDGET``), else a CrackModelError."""
    budgets = f"{MIN_TILE_BUDGET} to {MAX_TILE_BUDGET} tiles per photo"
    advice = f"(default {DEFAULT_MAX_TILES}; a 12 MP photo needs 432, a 50 MP one 1,734)"
    if isinstance(max_tiles, bool) or not isinstance(max_tiles, int):
        raise CrackModelError(f"the tile budget must be an integer from {budgets}, got {max_tiles!r} {advice}")
    if not MIN_TILE_BUDGET <= max_tiles <= MAX_TILE_BUDGET:
        raise CrackModelError(f"the tile budget must be from {budgets}, got {max_tiles} {advice}")
    return max_tiles


def parse_tile_budget(value: object) -> int:
    """A tile budget as a person gave it: ``--max-tiles``'s or a Variable's text (" 2048 " too), or a DAG param's
    JSON number, 1000.0 being an integer to its schema; checked (``check_tile_budget``), the range given for text
    that is no integer ("abc", "1e3", "512.0") as for a number out of it."""
    return check_tile_budget(_as_integer(value))


def _as_integer(value: object) -> object:
    """1000.0 and "1000" as 1000; anything else as given, for ``check_tile_budget`` to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - tile) / stride) + 1
    # Spread evenly so the last tile ends exactly at the edge.
    return [round(index * (length - tile) / (count - 1)) for index in range(count)]


def _count(length: int, tile: int, stride: int) -> int:
    return 1 if length <= tile else math.ceil((length - tile) / stride) + 1


def tile_count(width: int, height: int, config: TileConfig) -> int:
    """len(tile_boxes(width, height, config)), without building the boxes."""
    limit = config.tile_size * config.whole_image_slack
    if width <= limit and height <= limit:
        return 1
    tile = min(config.tile_size, width, height)
    stride = max(1, round(tile * (1 - config.overlap)))
    return _count(width, tile, stride) * _count(height, tile, stride)


@dataclass(frozen=True)
class TileFit:
    """How an image is brought within the tile budget: shrunk to ``scaled``, then centred on a ``padded`` canvas."""

    original: tuple[int, int]
    scaled: tuple[int, int]
    padded: tuple[int, int]
    max_tiles: int
    # Set when the decoder's pixel limit, not the tile budget, decided the scale (``fit_to_tile_budget``).
    decode_limit: int | None = None

    @property
    def changed(self) -> bool:
        return self.padded != self.original

    @property
    def offset(self) -> tuple[int, int]:
        return (self.padded[0] - self.scaled[0]) // 2, (self.padded[1] - self.scaled[1]) // 2

    @property
    def note(self) -> str:
        """What was done, for the result row ("" when the image is tiled as it is)."""
        if not self.changed:
            return ""
        (width, height), (scaled_width, scaled_height) = self.original, self.scaled
        steps = []
        if self.scaled != self.original:
            scaled = f"{scaled_width}x{scaled_height}"
            limit = f"{self.max_tiles} tiles"
            if self.decode_limit is not None:
                limit = f"the {self.decode_limit:,}-pixel decode limit (a reduced decode)"
            steps.append(f"downscaled from {width}x{height} to {scaled} to stay within {limit}")
        if self.padded != self.scaled:
            steps.append(f"padded to {self.padded[0]}x{self.padded[1]}, a side being shorter than a tile")
        text = " and ".join(steps)
        return text[0].upper() + text[1:]  # not str.capitalize(): it would lower-case the rest

    def to_original(self, box: Box) -> Box:
        """A box on the padded canvas, in the original image's pixels (clipped to the image)."""
        (width, height), (scaled_width, scaled_height), (left_pad, top_pad) = self.original, self.scaled, self.offset
        x_scale, y_scale = width / scaled_width, height / scaled_height

        def map_x(x: int) -> int:
            return min(width, max(0, round((x - left_pad) * x_scale)))

        def map_y(y: int) -> int:
            return min(height, max(0, round((y - top_pad) * y_scale)))

        return map_x(box[0]), map_y(box[1]), map_x(box[2]), map_y(box[3])


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_to_tile_budget(width: int, height: int, config: TileConfig, max_pixels: int | None = None) -> TileFit:
    """The size to score an image at so that it needs at most ``config.max_tiles`` tiles, and, given
    ``max_pixels``, no larger than a JPEG over that limit can be decoded at (``reduced_decode_fit``)."""
    fit = _fit_to_tiles(width, height, config)
    return fit if max_pixels is None else reduced_decode_fit(fit, config, max_pixels)


def reduced_decode_fit(fit: TileFit, config: TileConfig, max_pixels: int) -> TileFit:
    """``fit``, or a smaller one for an image too large to decode whole: a JPEG is then decoded at 1/2, 1/4 or 1/8
    scale, the first within ``max_pixels`` (``imaging.open_image``), and must be scored no larger than that.

    At 512 tiles an image over 80 MP is always shrunk below half its size; a larger budget wanted a 100 MP
    inspection photo at 0.77, which no reduced decode gives, and the photo scored at 512 became a "too large" row.
    Other formats over the limit are refused whatever the size asked.
    """
    width, height = fit.original
    if width * height <= max_pixels:
        return fit
    reduction = next((scale for scale in (2, 4, 8) if -(-width // scale) * -(-height // scale) <= max_pixels), None)
    most = (max(1, width // reduction), max(1, height // reduction)) if reduction else fit.scaled
    if fit.scaled[0] <= most[0] and fit.scaled[1] <= most[1]:
        return fit
    padded = (max(most[0], config.tile_size), max(most[1], config.tile_size))
    return TileFit(fit.original, most, padded, config.max_tiles, decode_limit=max_pixels)


def _fit_to_tiles(width: int, height: int, config: TileConfig) -> TileFit:
    if tile_count(width, height, config) <= config.max_tiles:
        return TileFit((width, height), (width, height), (width, height), config.max_tiles)
    tile = config.tile_size
    # Shrinking while the short side stays at least a tile: fewer tiles at each step down.
    lowest = tile / min(width, height)
    if lowest < 1 and tile_count(*_scaled(width, height, lowest), config) <= config.max_tiles:
        low, high = lowest, 1.0
        for _ in range(40):  # bisect to the largest scale that fits
            middle = (low + high) / 2
            fits = tile_count(*_scaled(width, height, middle), config) <= config.max_tiles
            low, high = (middle, high) if fits else (low, middle)
        scaled = _scaled(width, height, low)
        return TileFit((width, height), scaled, scaled, config.max_tiles)
    # Too thin for that: one row (or column) of full tiles, as long as max_tiles of them reach.
    longest = tile + config.stride * (config.max_tiles - 1)
    scaled = _scaled(width, height, min(1.0, longest / max(width, height)))
    padded = (max(scaled[0], tile), max(scaled[1], tile))
    return TileFit((width, height), scaled, padded, config.max_tiles)


def pad_to_fit(image: Image.Image, fit: TileFit) -> Image.Image:
    """Centre an image of ``fit.scaled`` size on the ``fit.padded`` canvas, filled with its mean colour.

    A flat fill of the image's own mean adds no edge a crack detector would take for a crack
    (black would draw a dark line along the border).
    """
    if fit.padded == image.size:
        return image
    mean = tuple(round(value) for value in ImageStat.Stat(image).mean)
    canvas = Image.new(image.mode, fit.padded, mean)
    canvas.paste(image, fit.offset)
    return canvas


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
    """Crop each box of a Pillow RGB image and resize it to the model's input: uint8 array (tiles, size, size, 3).

    ``tile_views`` gives the same tiles of the image's (height, width, 3) pixels (jpeg_fast.py).
    """
    tiles = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    for index, box in enumerate(boxes):
        crop = image if box == (0, 0, *image.size) else image.crop(box)
        tiles[index] = np.asarray(fit_to_input(crop, size), dtype=np.uint8)
    return tiles


def tile_views(pixels: np.ndarray, boxes: list[Box], size: int) -> list[np.ndarray]:
    """``cut_tiles`` of (height, width, 3) uint8 pixels without copying them: each tile a slice of ``pixels``
    where it is (nearly) the model's input size, else a resized copy. The tiles hold ``pixels`` alive."""
    return [fit_array_to_input(pixels[top:bottom, left:right], size) for left, top, right, bottom in boxes]
