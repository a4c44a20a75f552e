"""bench.top_tile_views: the eight views of a tile, and the labels a confirmation would give."""

from __future__ import annotations

import numpy as np
from PIL import Image


def test_a_tile_is_seen_flipped_and_shifted_a_quarter_tile_inside_the_photo():
    from bench.top_tile_views import views

    pixels = np.random.default_rng(0).integers(0, 256, size=(80, 120, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    seen = views(image, (0, 40, 40, 80), size=40)  # the photo's bottom-left corner

    assert seen.shape == (8, 40, 40, 3)
    tile = pixels[40:80, 0:40]
    assert np.array_equal(seen[0], tile)
    assert np.array_equal(seen[1], tile[:, ::-1]) and np.array_equal(seen[2], tile[::-1, :])
    assert np.array_equal(seen[3], tile[::-1, ::-1])
    # Left and down would leave the photo: those shifts stay at its edge; right and up move 10 px.
    assert np.array_equal(seen[4], tile) and np.array_equal(seen[7], tile)
    assert np.array_equal(seen[5], pixels[40:80, 10:50])
    assert np.array_equal(seen[6], pixels[30:70, 0:40])


def test_the_confirmation_only_takes_crack_labels_away():
    from bench.top_tile_views import counts

    photos = [
        {"has_cracks": False, "card_rule": True, "flip_mean": 0.40, "view_mean": 0.30},  # a seam: confirmed away
        {"has_cracks": False, "card_rule": False, "flip_mean": 0.90, "view_mean": 0.90},  # the rule said clean
        {"has_cracks": True, "card_rule": True, "flip_mean": 0.70, "view_mean": 0.45},
        {"has_cracks": True, "card_rule": True, "flip_mean": 0.95, "view_mean": 0.90},
    ]

    assert counts(photos, 0.5, None) == {"false_alarms": 1, "clean": 2, "found": 2, "with_cracks": 2}
    assert counts(photos, 0.5, "flip_mean") == {"false_alarms": 0, "clean": 2, "found": 2, "with_cracks": 2}
    assert counts(photos, 0.5, "view_mean") == {"false_alarms": 0, "clean": 2, "found": 1, "with_cracks": 2}
