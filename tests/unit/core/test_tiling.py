"""Tiling: large photos are covered by overlapping tiles; small ones are scored whole."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from crack_model.core.tiling import (
    TileConfig,
    cut_tiles,
    fit_to_tile_budget,
    grid_shape,
    pad_to_fit,
    tile_boxes,
    tile_count,
)


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


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (10, 10),
        (227, 227),
        (300, 200),
        (1000, 600),
        (3000, 240),
        (4032, 3024),
        (60000, 40),
        (100000, 300),
        (40, 300000),
    ],
)
def test_tile_count_is_the_number_of_boxes(width, height):
    """tile_count predicts tile_boxes without building the boxes."""
    assert tile_count(width, height, TileConfig()) == len(tile_boxes(width, height, TileConfig()))


def test_a_phone_photo_is_within_the_tile_budget_and_left_alone():
    """A 4032x3024 photo (432 tiles) is scored at full resolution."""
    fit = fit_to_tile_budget(4032, 3024, TileConfig())
    assert not fit.changed and fit.note == ""
    assert fit.scaled == fit.padded == (4032, 3024)


@pytest.mark.parametrize(
    ("width", "height"), [(10000, 8000), (8064, 6048), (300000, 40), (40, 300000), (60000, 40), (100000, 300)]
)
def test_any_image_fits_the_tile_budget(width, height):
    """Giants and thin strips come out with at most max_tiles tiles, aspect ratio kept, and a note saying so."""
    config = TileConfig()
    fit = fit_to_tile_budget(width, height, config)
    boxes = tile_boxes(*fit.padded, config)
    assert len(boxes) <= config.max_tiles
    assert fit.changed and fit.note
    assert ("to stay within 512 tiles" in fit.note) == (fit.scaled != (width, height))
    assert fit.scaled[0] / fit.scaled[1] == pytest.approx(width / height, rel=0.1)
    assert fit.padded[0] >= config.tile_size and fit.padded[1] >= config.tile_size
    assert {box[2] - box[0] for box in boxes} == {config.tile_size}  # full-size tiles, none shrunk to the strip


def test_a_thin_strip_is_downscaled_and_padded():
    """The 300000x40 strip that made 10,000 tiles is shrunk and padded to one row of at most 512 tiles."""
    fit = fit_to_tile_budget(300000, 40, TileConfig())
    assert tile_count(300000, 40, TileConfig()) == 10000
    assert fit.padded[1] == 227 and fit.scaled[1] < 40
    assert fit.note.startswith("Downscaled from 300000x40 to ") and " and padded to " in fit.note
    rows, _columns = grid_shape(tile_boxes(*fit.padded, TileConfig()))
    assert rows == 1


def test_a_giant_keeps_more_than_its_biggest_possible_downscale():
    """The budget is used, not wasted: a 10000x8000 image keeps nearly 512 tiles, not a thumbnail."""
    config = TileConfig()
    fit = fit_to_tile_budget(10000, 8000, config)
    assert fit.padded == fit.scaled
    assert 0.9 * config.max_tiles <= tile_count(*fit.scaled, config) <= config.max_tiles


def test_boxes_map_back_to_the_original_image():
    """Tiles of the padded canvas, mapped back, lie inside the original strip and cover its whole length."""
    fit = fit_to_tile_budget(300000, 40, TileConfig())
    boxes = [fit.to_original(box) for box in tile_boxes(*fit.padded, TileConfig())]
    assert all(0 <= left < right <= 300000 and 0 <= top < bottom <= 40 for left, top, right, bottom in boxes)
    assert min(box[0] for box in boxes) == 0 and max(box[2] for box in boxes) == 300000
    assert {(box[1], box[3]) for box in boxes} == {(0, 40)}


def test_padding_centres_the_image_on_its_mean_colour():
    """The pad is the image's own mean colour (no dark border a detector could take for a crack)."""
    fit = fit_to_tile_budget(60000, 40, TileConfig())
    strip = Image.new("RGB", (60000, 40), (100, 150, 200))
    strip.paste((120, 170, 220), (0, 0, 60000, 20))
    padded = np.asarray(pad_to_fit(strip, fit))
    assert padded.shape == (227, 60000, 3)
    top = fit.offset[1]
    assert (padded[top, 0] == (120, 170, 220)).all() and (padded[top + 39, 0] == (100, 150, 200)).all()
    assert (padded[0, 0] == (110, 160, 210)).all() and (padded[-1, -1] == (110, 160, 210)).all()


def test_a_strip_padded_but_not_downscaled_says_why_it_was_padded():
    """10000x10 is within the tile budget as it is: the note names the short side, not the budget."""
    fit = fit_to_tile_budget(10000, 10, TileConfig())
    assert fit.scaled == (10000, 10)
    assert fit.note == "Padded to 10000x227, a side being shorter than a tile"


@pytest.mark.parametrize("budget", [63, 2049, 0, -1])
def test_a_tile_budget_outside_the_range_is_refused_naming_it(budget):
    """`--max-tiles` and the DAG's max_tiles: a budget of 0 tiled nothing, and 100,000 held a worker's memory."""
    from crack_model.core.errors import CrackModelError
    from crack_model.core.tiling import check_tile_budget

    with pytest.raises(CrackModelError, match=rf"from 64 to 2048 tiles per photo, got {budget} \(default 512"):
        check_tile_budget(budget)
    assert check_tile_budget(64) == 64 and check_tile_budget(2048) == 2048


def test_a_tile_budget_given_as_text_or_json_is_read_as_an_integer_or_refused_with_the_range():
    """JSON Schema's "integer" takes 1000.0 (it is whole); "abc" and "1e3" get the range, not a bare type error."""
    from crack_model.core.errors import CrackModelError
    from crack_model.core.tiling import parse_tile_budget

    assert parse_tile_budget(1000.0) == 1000 and type(parse_tile_budget(1000.0)) is int
    assert parse_tile_budget(" 2048 ") == 2048 and parse_tile_budget(512) == 512
    for wrong in ("abc", "1e3", "512.0", 1000.5, True, None):
        with pytest.raises(CrackModelError, match=r"must be an integer from 64 to 2048 tiles per photo, got "):
            parse_tile_budget(wrong)
    with pytest.raises(CrackModelError, match=r"must be from 64 to 2048 tiles per photo, got 4096"):
        parse_tile_budget(4096.0)


def test_the_largest_budget_tiles_no_image_at_full_size_past_the_decoder_limit():
    """2048 tiles at full size: 60 MP for a 4:3 photo, at most 79 MP for a strip, within 80 MP."""
    from crack_model.core.imaging import DEFAULT_MAX_PIXELS
    from crack_model.core.tiling import MAX_TILE_BUDGET

    config = TileConfig(max_tiles=MAX_TILE_BUDGET)
    for width, height in [(8944, 6708), (227, 348_000), (2000, 39_000)]:
        fit = fit_to_tile_budget(width, height, config)
        assert fit.scaled[0] * fit.scaled[1] <= DEFAULT_MAX_PIXELS, (width, height, fit)


def test_a_photo_over_the_decode_limit_is_scored_no_larger_than_a_reduced_decode():
    """A large budget wanted a 100 MP JPEG at 0.77 of its size, which only a full decode gives: it became a
    "too large" row where 512 tiles scored it from a half-size decode. Now it is scored at that half size."""
    config = TileConfig(max_tiles=2048)
    fit = fit_to_tile_budget(11_600, 8_700, config, max_pixels=80_000_000)
    assert fit.scaled == (5_800, 4_350) and fit.padded == fit.scaled
    assert "to stay within the 80,000,000-pixel decode limit" in fit.note
    assert tile_count(*fit.padded, config) <= 2048
    small = fit_to_tile_budget(11_600, 8_700, TileConfig(), max_pixels=80_000_000)  # 512: below half already
    assert small == fit_to_tile_budget(11_600, 8_700, TileConfig()) and "512 tiles" in small.note
    assert fit_to_tile_budget(4_032, 3_024, config, max_pixels=80_000_000).note == ""  # within the limit: as it is
