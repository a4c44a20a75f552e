"""Seam examples: tiles across the borders of four training patches of one slice, clean or with one crack patch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from crack_model.data.labeled import LabeledImage
from crack_model.training.seams import CRACK_COVER, MARGIN, seam_examples

TILE = 100


def flat_patches(folder: Path, label: str, slice_name: str, shades: list[int]) -> list[LabeledImage]:
    """One flat grey patch per shade, so each crop shows which patch lies where."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for shade in shades:
        path = folder / f"{label}-{slice_name}-{shade}.png"
        Image.new("RGB", (TILE, TILE), (shade, shade, shade)).save(path)
        images.append(LabeledImage(str(path), label, slice=slice_name))
    return images


def test_examples_are_crops_that_both_borders_cross(tmp_path):
    site_a = flat_patches(tmp_path / "in", "Negative", "a", [10, 60, 110, 160, 210, 250])
    site_b = flat_patches(tmp_path / "in", "Negative", "b", [20, 70, 120, 170])
    cracks = flat_patches(tmp_path / "in", "Positive", "a", [0, 5, 15, 25, 30])
    examples = seam_examples(site_a + site_b + cracks, 1.0, TILE, tmp_path / "seams", crack_class="Positive", seed=3)

    cells = [(example.label, example.slice) for example in examples]  # share x each (class, slice)'s images
    assert (cells.count(("Negative", "a")), cells.count(("Negative", "b")), cells.count(("Positive", "a"))) == (6, 4, 5)
    site_shades = {"a": {10, 60, 110, 160, 210, 250}, "b": {20, 70, 120, 170}}
    crack_shades = {0, 5, 15, 25, 30}
    for example in examples:
        data = Path(example.uri).read_bytes()
        assert example.sha256 == hashlib.sha256(data).hexdigest()  # the feature cache's key
        pixels = np.asarray(Image.open(example.uri).convert("L"))
        assert pixels.shape == (TILE, TILE)
        quadrants = [pixels[:2, :2], pixels[:2, -2:], pixels[-2:, :2], pixels[-2:, -2:]]  # PNG: exact
        shades = {int(np.median(quadrant)) for quadrant in quadrants}
        assert len(shades) == 4  # four distinct patches meet inside the crop, so both borders cross it
        border = int(np.argmax(pixels[0] != pixels[0, 0]))
        assert MARGIN * TILE - 1 <= border <= (1 - MARGIN) * TILE + 1
        crack_area = float(np.isin(pixels, list(crack_shades)).mean())
        if example.label == "Negative":  # clean patches of its own slice only
            assert shades <= site_shades[example.slice] and crack_area == 0
        else:  # one crack patch, mostly inside the crop (CRACK_COVER of it on each axis), among clean ones
            assert len(shades & crack_shades) == 1 and shades - crack_shades <= site_shades["a"]
            assert (CRACK_COVER[0] - 0.02) ** 2 <= crack_area <= (CRACK_COVER[1] + 0.02) ** 2


def test_same_inputs_same_bytes_and_small_slices_or_share_zero_give_none(tmp_path):
    patches = flat_patches(tmp_path / "in", "Negative", "a", [10, 60, 110, 160, 210])
    first = seam_examples(patches, 0.6, TILE, tmp_path / "one", crack_class="Positive", seed=3)
    second = seam_examples(patches, 0.6, TILE, tmp_path / "two", crack_class="Positive", seed=3)
    assert [example.sha256 for example in first] == [example.sha256 for example in second] and len(first) == 3
    assert seam_examples(patches, 0.0, TILE, tmp_path / "none", crack_class="Positive", seed=3) == []
    few = flat_patches(tmp_path / "few", "Negative", "small", [10, 60, 110])
    assert seam_examples(few, 1.0, TILE, tmp_path / "few-out", crack_class="Positive", seed=3) == []
