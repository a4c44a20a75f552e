"""Tiling: large photos are covered by overlapping tiles; small ones are scored whole."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from crack_model.core.tiling import TileConfig, cut_tiles, grid_shape, tile_boxes


def test_small_images_are_one_tile():
    """A training-size patch (227) and one a little larger (256) are scored whole."""
    assert tile_boxes(227, 227, TileConfig()) == [(0, 0, 227, 227)]
    assert tile_boxes(256, 200, TileConfig()) == [(0, 0, 256, 200)]


@pytest.mark.parametrize(("width", "height"), [(4032, 3024), (1000, 600), (3000, 240)])
def test_tiles_cover_the_photo_with_overlap(width, height):
    """Every pixel is in some tile, tiles stay inside the photo, neighbours overlap."""
    config = TileConfig(tile_size=227, overlap=0.25)
    boxes = tile_boxes(width, height, config)
    covered = np.zeros((height, width), dtype=bool)
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        covered[top:bottom, left:right] = True
    assert covered.all()
    lefts = sorted({box[0] for box in boxes})
    tile = boxes[0][2] - boxes[0][0]
    assert all(b - a < tile for a, b in itertools.pairwise(lefts))
    rows, columns = grid_shape(boxes)
    assert rows * columns == len(boxes)


def test_a_phone_photo_is_not_squashed():
    """A 4032x3024 photo becomes hundreds of native-size tiles, not one 224 px thumbnail."""
    boxes = tile_boxes(4032, 3024, TileConfig())
    assert len(boxes) > 300
    assert {box[2] - box[0] for box in boxes} == {227}


def test_cut_tiles_resizes_each_tile_to_the_model_input():
    image = Image.new("RGB", (600, 500), (10, 20, 30))
    boxes = tile_boxes(600, 500, TileConfig())
    tiles = cut_tiles(image, boxes, 64)
    assert tiles.shape == (len(boxes), 64, 64, 3) and tiles.dtype == np.uint8
    assert (tiles[..., 2] == 30).all()
