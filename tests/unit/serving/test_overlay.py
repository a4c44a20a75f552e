"""Heat-map overlays: red where tiles score high, outlines on tiles at or above the threshold."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from crack_model.serving.overlay import MAX_SIDE, OPACITY, render_overlay
from tests import imagefiles

GREY = (120, 120, 120)


def grey_photo(width: int, height: int) -> bytes:
    return imagefiles.encode(Image.new("RGB", (width, height), GREY), "PNG")


def blended(probability: float) -> np.ndarray:
    """The grey photo under red at the opacity a tile of this probability gets."""
    alpha = OPACITY * probability
    return np.array([GREY[0] * (1 - alpha) + 255 * alpha, GREY[1] * (1 - alpha), GREY[2] * (1 - alpha)])


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_tiles_at_or_above_the_threshold_are_red_and_outlined():
    """A high tile turns red and gets a yellow outline; a tile at the threshold is outlined; a low one stays grey."""
    boxes = [(0, 0, 100, 100), (100, 0, 200, 100), (200, 0, 300, 100)]
    image = pixels(render_overlay(grey_photo(300, 200), boxes, [0.95, 0.5, 0.02], threshold=0.5))
    assert image.shape == (200, 300, 3)
    high, at_threshold, low, untouched = image[60, 50], image[60, 150], image[60, 250], image[150, 150]
    assert np.abs(high - blended(0.95)).max() <= 2 and high[0] > GREY[0] + 60
    assert np.abs(at_threshold - blended(0.5)).max() <= 2
    assert np.abs(low - blended(0.02)).max() <= 2 and tuple(untouched) == GREY
    yellow = (255, 255, 0)
    assert tuple(image[50, 0]) == yellow and tuple(image[50, 101]) == yellow  # outlines of the high and the 0.5 tile
    assert tuple(image[50, 201]) != yellow and tuple(image[50, 299]) != yellow  # none on the low tile


def test_overlapping_tiles_show_the_highest_probability():
    """Where tiles overlap, the pixel takes the higher tile's red, whatever the order of the boxes."""
    boxes = [(0, 0, 80, 80), (40, 0, 120, 80)]
    first = pixels(render_overlay(grey_photo(120, 80), boxes, [0.1, 0.9], threshold=1.0))
    second = pixels(render_overlay(grey_photo(120, 80), boxes[::-1], [0.9, 0.1], threshold=1.0))
    assert np.array_equal(first, second)
    assert np.abs(first[40, 60] - blended(0.9)).max() <= 2 and np.abs(first[40, 20] - blended(0.1)).max() <= 2


def test_a_large_photo_is_drawn_at_most_1024_pixels_a_side():
    """A 4000x3000 photo's overlay is 1024x768, its boxes scaled with it."""
    photo = imagefiles.encode(Image.new("RGB", (4000, 3000), GREY), "JPEG", quality=90)
    image = pixels(render_overlay(photo, [(2000, 1500, 4000, 3000)], [1.0], threshold=0.5))
    assert image.shape == (768, MAX_SIDE, 3)
    assert np.abs(image[700, 900] - blended(1.0)).max() <= 3 and np.abs(image[100, 100] - GREY).max() <= 3
