"""Mosaics of labeled patches: deterministic, no patch twice in a mosaic, cracks where recorded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from crack_model.core.errors import CrackModelError
from crack_model.evaluation.mosaics import (
    MosaicConfig,
    PatchLoader,
    grid_for,
    mosaic_bytes,
    plan_mosaics,
    render_mosaic,
)
from tests import imagefiles

CELL = 32


def solid(value: int, size: int = CELL) -> bytes:
    """A one-colour PNG patch; its colour says which patch it is."""
    return imagefiles.encode(Image.new("RGB", (size, size), (value, value, value)), "PNG")


# Clean patches are light (100..179), crack patches dark (0..19): a pixel says which kind it is.
PATCHES = {f"clean/{n:02d}.png": solid(100 + n) for n in range(80)}
PATCHES |= {f"crack/{n:02d}.png": solid(n) for n in range(20)}
CLEAN = sorted(key for key in PATCHES if key.startswith("clean/"))
CRACKS = sorted(key for key in PATCHES if key.startswith("crack/"))


def test_plans_depend_only_on_the_seed():
    """The same seed gives the same mosaics; another seed other ones."""
    config = MosaicConfig(rows=4, columns=5, clean=3, with_cracks=5, seed=7)
    assert plan_mosaics(CLEAN, CRACKS, config) == plan_mosaics(list(reversed(CLEAN)), CRACKS, config)
    other = plan_mosaics(CLEAN, CRACKS, MosaicConfig(rows=4, columns=5, clean=3, with_cracks=5, seed=8))
    assert other != plan_mosaics(CLEAN, CRACKS, config)


def test_each_mosaic_uses_a_patch_once_and_records_its_crack_cells():
    """Clean mosaics hold only clean patches; crack mosaics 1-3 crack patches, exactly in the recorded cells."""
    plans = plan_mosaics(CLEAN, CRACKS, MosaicConfig(rows=4, columns=5, clean=10, with_cracks=30, seed=1))
    assert [plan.name for plan in plans[:2]] == ["clean-000.png", "clean-001.png"] and len(plans) == 40
    counts = set()
    for plan in plans:
        assert len(plan.keys) == 20 and len(set(plan.keys)) == 20
        crack_cells = {row * plan.columns + column for row, column in plan.crack_cells}
        assert {cell for cell, key in enumerate(plan.keys) if key in CRACKS} == crack_cells
        if plan.name.startswith("clean"):
            assert not crack_cells
        else:
            counts.add(len(crack_cells))
    assert counts == {1, 2, 3}


def test_rendering_puts_each_patch_in_its_cell():
    """Every crack box of the rendered mosaic is dark, every other cell light; BMP keeps pixels exact."""
    plan = plan_mosaics(CLEAN, CRACKS, MosaicConfig(rows=3, columns=4, clean=0, with_cracks=1, max_cracks=3, seed=2))[0]
    image = np.asarray(Image.open(io.BytesIO(mosaic_bytes(plan, PatchLoader(PATCHES.__getitem__, CELL)))))
    assert image.shape == (3 * CELL, 4 * CELL, 3)
    crack_boxes = plan.crack_boxes(CELL)
    assert crack_boxes
    for cell, key in enumerate(plan.keys):
        row, column = divmod(cell, plan.columns)
        box = (column * CELL, row * CELL, (column + 1) * CELL, (row + 1) * CELL)
        pixels = image[box[1] : box[3], box[0] : box[2]]
        expected = int(key[-6:-4]) + (100 if key.startswith("clean/") else 0)
        assert np.all(pixels == expected)
        assert (pixels[0, 0, 0] < 20) == (box in crack_boxes)


def test_patches_of_another_size_are_fitted_to_the_cell():
    """A 227x170 patch (site-b) fills a whole cell."""
    read = {"wide.png": imagefiles.encode(Image.new("RGB", (227, 170), (9, 9, 9)), "PNG")} | PATCHES
    plan = plan_mosaics(CLEAN, ["wide.png"], MosaicConfig(rows=2, columns=2, clean=0, with_cracks=1, seed=0))[0]
    image = np.asarray(render_mosaic(plan, PatchLoader(read.__getitem__, CELL)))
    (left, top, right, bottom) = plan.crack_boxes(CELL)[0]
    assert np.all(image[top:bottom, left:right] == 9)


def test_a_small_split_gets_smaller_mosaics_and_a_tiny_one_a_clear_error():
    """Fewer clean patches than cells shrink the grid (about its shape); fewer than four cells is refused."""
    config = MosaicConfig()
    assert grid_for(config, 500) == (8, 10)
    rows, columns = grid_for(config, 30)
    assert rows * columns <= 30 and rows >= 4 and columns >= 5
    plans = plan_mosaics(CLEAN[:30], CRACKS, MosaicConfig(clean=2, with_cracks=2))
    assert all(len(set(plan.keys)) == len(plan.keys) == rows * columns for plan in plans)
    with pytest.raises(CrackModelError, match="3 no-crack patches cannot fill a mosaic"):
        plan_mosaics(CLEAN[:3], CRACKS, config)
    with pytest.raises(CrackModelError, match="no crack patches"):
        plan_mosaics(CLEAN, [], config)


def test_a_small_pool_still_gets_every_mosaic_asked_for():
    """The counts are the configured ones however few the patches (each mosaic draws its own seams)."""
    plans = plan_mosaics(CLEAN[:30], CRACKS[:12], MosaicConfig(clean=120, with_cracks=40))
    assert sum(not plan.crack_cells for plan in plans) == 120 and sum(bool(plan.crack_cells) for plan in plans) == 40
    assert len({plan.keys for plan in plans}) == 160  # no two alike


@pytest.mark.parametrize("changes", [{"rows": 1, "columns": 3}, {"clean": -1}, {"max_cracks": 0}])
def test_a_config_that_cannot_make_mosaics_is_refused(changes):
    """Too few cells, negative counts or no crack per crack mosaic are errors naming the value."""
    with pytest.raises(ValueError, match=r"mosaic|max cracks"):
        MosaicConfig(**changes)
