"""The confirmation of a photo's highest tiles by their flips: the pure parts, and the scoring core queuing flips."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core.model_card import ModelCard
from crack_model.core.tiling import TileConfig, tile_boxes
from crack_model.serving import inference
from crack_model.serving.photo_confirmation import (
    PATCH_CONFIRM_BELOW,
    confirmation_candidates,
    confirmation_score,
    flipped,
)
from crack_model.serving.scorer import Scorer
from tests import imagefiles

TILE = 227
SIZE = 224
BRIGHT, DARK = 230, 25  # a corner's red: crack probability 230/255 = 0.90 or 25/255 = 0.10
CARD = ModelCard(version="test", image_size=SIZE, tile_size=TILE, threshold=0.5, photo_confirm_threshold=0.5)


class CornerRuntime:
    """Scores a tile by the red of its top-left corner: a flip reads another corner of the same tile."""

    name = "corner"
    preferred_batch = 4

    def __init__(self, fixed_batch: bool) -> None:
        self.fixed_batch = fixed_batch
        self.tiles_scored = 0
        self.lock = threading.Lock()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        crack = pixels[:, :2, :2, 0].astype(np.float64).mean(axis=(1, 2)) / 255
        with self.lock:
            self.tiles_scored += int(np.count_nonzero(pixels.reshape(len(pixels), -1).any(axis=1)))
        return np.stack([1 - crack, crack], axis=1).astype(np.float32)


def photo(width: int, height: int, corners: dict[int, tuple[int, int, int, int]]) -> bytes:
    """A PNG whose tile ``index`` has its corners (top-left, top-right, bottom-left, bottom-right) that red.

    A 6-px block survives the 227 to 224 resize; every other pixel is 1 (no tile is blank to the counter).
    """
    pixels = np.ones((height, width, 3), np.uint8)
    boxes = tile_boxes(width, height, TileConfig(tile_size=TILE))
    for index, reds in corners.items():
        left, top, right, bottom = boxes[index]
        corner_points = ((left, top), (right - 6, top), (left, bottom - 6), (right - 6, bottom - 6))
        for red, (x, y) in zip(reds, corner_points, strict=True):
            pixels[y : y + 6, x : x + 6, 0] = red
    return imagefiles.encode(Image.fromarray(pixels), "PNG")


SEAM = (BRIGHT, DARK, DARK, DARK)  # lit as cut, dark when flipped: a mean of 0.30
CRACK = (BRIGHT, BRIGHT, BRIGHT, BRIGHT)  # lit whichever way up


def uploads() -> dict[str, bytes]:
    wide, high = 3 * TILE, 2 * TILE  # 4 x 3 tiles
    return {
        "crack.png": photo(wide, high, {0: CRACK, 5: SEAM}),
        "seam.png": photo(wide, high, {4: SEAM}),
        # The 4th-highest lit tile would confirm: only the 3 highest count.
        "seams-above-a-crack.png": photo(
            wide, high, {0: (250, 0, 0, 0), 3: (245, 0, 0, 0), 6: (240, 0, 0, 0), 9: (235, 235, 235, 235)}
        ),
        "dark.png": photo(wide, high, {}),
        "patch.png": photo(TILE, TILE, {0: SEAM}),
    }


def score_all(
    card: ModelCard, runtime: CornerRuntime, copies: int, files: dict[str, bytes] | None = None, **options: object
) -> dict[str, inference.ImageScore]:
    scorer = Scorer(card, runtime, Path("unused"))
    files = files or uploads()
    return {score.key: score for score in inference.score_images(files, files.__getitem__, scorer, workers=2,
                                                                  inference_copies=copies, **options)}  # fmt: skip


def test_the_flips_are_the_tile_mirrored_each_way():
    tile = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    left_right, top_bottom, both = flipped(tile)
    assert left_right[0, 0].tolist() == tile[0, 2].tolist()
    assert top_bottom[0, 0].tolist() == tile[1, 0].tolist()
    assert both[0, 0].tolist() == tile[1, 2].tolist()


def test_candidates_are_the_three_highest_tiles_of_a_lit_photo_and_none_for_one_tile():
    assert confirmation_candidates([0.6, 0.9, 0.1, 0.7, 0.8], 0.5) == [1, 4, 3]
    assert confirmation_candidates([0.6, 0.2, 0.1, 0.2], 0.5) == [0, 1, 3]  # a neighbour may read the crack better
    assert confirmation_candidates([0.4, 0.3, 0.1], 0.5) == []  # no tile lit: no rule calls it crack
    assert confirmation_candidates([0.9], 0.5) == []


def test_the_score_is_the_best_candidates_mean_over_its_flips():
    assert confirmation_score([0.9, 0.8], [0.1, 0.1, 0.1, 0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert confirmation_score([], []) is None
    with pytest.raises(ValueError, match="2 candidate tiles need 6 flip scores, got 3"):
        confirmation_score([0.9, 0.8], [0.1, 0.1, 0.1])


@pytest.mark.parametrize("copies", [1, 2], ids=["one-interpreter", "two-copies"])
@pytest.mark.parametrize("fixed_batch", [False, True], ids=["litert", "keras-shaped"])
def test_a_photo_lit_only_as_cut_is_not_confirmed_and_a_crack_is(copies, fixed_batch):
    runtime = CornerRuntime(fixed_batch)
    scores = score_all(CARD, runtime, copies)
    assert sorted(scores) == sorted(uploads())
    crack, seam, seams = scores["crack.png"], scores["seam.png"], scores["seams-above-a-crack.png"]
    assert crack.confirmation == pytest.approx(BRIGHT / 255, abs=0.01)  # the crack tile, not the seam beside it
    assert crack.label == CARD.crack_class
    assert seam.confirmation == pytest.approx((BRIGHT + 3 * DARK) / 255 / 4, abs=0.01)
    assert seam.label != CARD.crack_class
    assert "not confirmed when flipped" in seam.note and "< 0.5000" in seam.note
    assert seams.confirmation == pytest.approx(250 / 255 / 4, abs=0.01)
    assert seams.label != CARD.crack_class
    for unlit in (scores["dark.png"], scores["patch.png"]):  # no tile lit; one tile keeps the patch rule
        assert unlit.confirmation is None
    assert scores["patch.png"].label == CARD.crack_class
    # Every tile once, and the flips of the 3 highest tiles of the 3 lit photos of several tiles.
    tiles = sum(score.tile_count for score in scores.values())
    assert runtime.tiles_scored == tiles + 3 * 3 * 3


def test_without_a_confirmation_in_the_card_no_flip_is_scored():
    runtime = CornerRuntime(fixed_batch=False)
    card = replace(CARD, photo_confirm_threshold=None)
    scores = score_all(card, runtime, copies=1)
    assert all(score.confirmation is None for score in scores.values())
    assert scores["seam.png"].label == card.crack_class  # the rule alone: its highest tile is 0.90
    assert runtime.tiles_scored == sum(score.tile_count for score in scores.values())
    asked = score_all(card, CornerRuntime(fixed_batch=False), copies=1, confirm=True)  # as the photo checks ask
    assert asked["seam.png"].confirmation == pytest.approx((BRIGHT + 3 * DARK) / 255 / 4, abs=0.01)
    assert asked["seam.png"].label == card.crack_class  # scored, but the card does not ask for it


def test_crack_model_predict_says_why_a_lit_photo_is_no_crack():
    """The row of ``crack-model predict`` carries the note, as the night's rows do."""
    import csv
    import io

    from crack_model.serving.predict import PREDICTION_COLUMNS, prediction_row, write_predictions

    runtime = CornerRuntime(fixed_batch=False)
    scores = score_all(CARD, runtime, copies=1)
    rows = [prediction_row(scores[key], Scorer(CARD, runtime, Path("unused"))) for key in sorted(scores)]
    handle = io.StringIO()
    write_predictions(rows, handle)
    written = {row["path"]: row for row in csv.DictReader(io.StringIO(handle.getvalue()))}
    assert PREDICTION_COLUMNS[-1] == "note" and set(written) == set(scores)
    seam = written["seam.png"]
    assert seam["label"] == "Negative" and float(seam["crack_probability"]) > float(seam["threshold"])
    assert "not confirmed when flipped" in seam["note"]
    assert written["crack.png"]["note"] == ""


IN_BAND = 200  # a corner's red: 0.78, from the threshold up to PATCH_CONFIRM_BELOW


def patch_uploads() -> dict[str, bytes]:
    return {
        "stain.png": photo(TILE, TILE, {0: (IN_BAND, DARK, DARK, DARK)}),  # lit as cut only: a mean of 0.27
        "crack.png": photo(TILE, TILE, {0: (IN_BAND,) * 4}),  # lit whichever way up
        "sure.png": photo(TILE, TILE, {0: SEAM}),  # 0.90 as cut: above the band, taken as it is
        "clean.png": photo(TILE, TILE, {}),
    }


@pytest.mark.parametrize("copies", [1, 2], ids=["one-interpreter", "two-copies"])
@pytest.mark.parametrize("fixed_batch", [False, True], ids=["litert", "keras-shaped"])
def test_a_patch_scored_in_the_band_is_confirmed_by_its_flips(copies, fixed_batch):
    assert BRIGHT / 255 >= PATCH_CONFIRM_BELOW > IN_BAND / 255 >= CARD.threshold
    runtime = CornerRuntime(fixed_batch)
    card = replace(CARD, patch_confirm_threshold=0.5)
    scores = score_all(card, runtime, copies, patch_uploads())
    stain, crack, sure, clean = (scores[name] for name in ("stain.png", "crack.png", "sure.png", "clean.png"))
    assert stain.confirmation == pytest.approx((IN_BAND + 3 * DARK) / 255 / 4, abs=0.01)
    assert stain.label != card.crack_class
    assert stain.crack_probability == pytest.approx(IN_BAND / 255, abs=0.01)  # the score stays what the model said
    assert "not confirmed when flipped (mean of the image and its flips" in stain.note and "< 0.5000" in stain.note
    assert crack.confirmation == pytest.approx(IN_BAND / 255, abs=0.01)
    assert crack.label == card.crack_class and crack.note == ""
    assert sure.confirmation is None and sure.label == card.crack_class
    assert clean.confirmation is None and clean.label != card.crack_class
    assert runtime.tiles_scored == 4 + 2 * 3  # the flips of the two patches in the band only


def test_without_a_patch_confirmation_in_the_card_a_patch_keeps_the_threshold():
    runtime = CornerRuntime(fixed_batch=False)
    scores = score_all(CARD, runtime, copies=1, files=patch_uploads())  # photo confirmation only
    assert scores["stain.png"].label == CARD.crack_class and scores["stain.png"].confirmation is None
    assert runtime.tiles_scored == 4
