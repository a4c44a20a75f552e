"""A round picture on a black square is scored as its picture: the frame's curved edge lights no tile (a model
that finds dark lines read it as a crack), and the crack inside the picture is still found and marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core import frames
from crack_model.core.tiling import Box
from crack_model.serving.inference import ImageScore, score_images
from crack_model.serving.scorer import load_scorer
from tests import imagefiles
from tests.gate_models import build_detector
from tests.imagefiles import METU, concrete, disc_mask, framed

CRACK_CELL = (454, 227, 681, 454)  # a cell well inside the disc


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    """The dark-line detector (tests/gate_models.py): a tile is a crack when its darkest spot is far below its mean
    (by 0.4 of the range: it then calls no tile of these METU patches a crack, and every one by a frame's edge)."""
    return build_detector(tmp_path_factory.mktemp("detector") / "model", "det-frames", feature_threshold=0.4)


def photos() -> dict[str, tuple[bytes, Box | None]]:
    """A clean mosaic and a crack mosaic of METU patches (4 x 4), each a round picture on black, as a JPEG."""
    if not (METU / "Positive").is_dir():
        pytest.skip(f"the METU sample is not at {METU}")
    picture = disc_mask(908, 908, 0.47)
    clean = concrete()
    with_crack = clean.copy()
    with Image.open(sorted((METU / "Positive").glob("*.jpg"))[3]) as patch:
        with_crack[CRACK_CELL[1] : CRACK_CELL[3], CRACK_CELL[0] : CRACK_CELL[2]] = np.asarray(patch.convert("RGB"))
    encoded = {name: imagefiles.encode(Image.fromarray(framed(pixels, picture)), "JPEG", quality=92)
               for name, pixels in (("clean.jpg", clean), ("crack.jpg", with_crack))}  # fmt: skip
    return {"clean.jpg": (encoded["clean.jpg"], None), "crack.jpg": (encoded["crack.jpg"], CRACK_CELL)}


def scored(model: Path, runtime: str, made: dict[str, tuple[bytes, Box | None]]) -> dict[str, ImageScore]:
    scorer = load_scorer(model, runtime)
    rows = score_images(list(made), lambda key: made[key][0], scorer, workers=1)
    return {row.key: row for row in rows}


def marked(row: ImageScore, threshold: float) -> list[Box]:
    return [box for box, probability in zip(row.boxes, row.tile_probabilities, strict=True) if probability >= threshold]


@pytest.mark.parametrize("runtime", ["litert-int8", "keras"])
def test_a_framed_clean_photo_is_clean_and_a_framed_crack_is_found_where_it_is(detector, runtime, monkeypatch):
    """Before: the frame's edge lit tiles all round the disc and the clean photo was a crack. Now the clean photo is
    no crack, the crack photo is, every marked tile covers the crack patch, and the row says what was done."""
    made = photos()
    with monkeypatch.context() as before:
        before.setattr(frames, "frame_of_thumbnail", lambda *args: None)
        unmasked = scored(detector, runtime, made)
    assert unmasked["clean.jpg"].label == "Positive", "the frame's edge should read as a crack without frames.py"
    rows = scored(detector, runtime, made)
    assert rows["clean.jpg"].label == "Negative", rows["clean.jpg"]
    assert rows["crack.jpg"].label == "Positive", rows["crack.jpg"]
    lit = marked(rows["crack.jpg"], 0.5)
    left, top, right, bottom = CRACK_CELL
    assert lit and all(box[0] < right and box[2] > left and box[1] < bottom and box[3] > top for box in lit), lit
    assert "dark frame around the picture" in rows["clean.jpg"].note
