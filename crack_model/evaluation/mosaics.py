"""Full-size test photos made of labeled patches, with the crack patches' places recorded.

A photo-level rule (serving/photo_decision.py) needs photos whose truth is known: a mosaic pastes
``rows`` x ``columns`` labeled patches side by side on a grid of ``cell_size`` cells (the tile
size), so it has the seams between unrelated surfaces that raised false alarms on real
full-size photos, and its crack patches sit in known cells. Clean mosaics hold only no-crack
patches; crack mosaics hold 1 to ``max_cracks`` crack patches in random cells. A patch is never
used twice in one mosaic. Everything depends only on the keys given and the seed.

Planning is separate from drawing: ``plan_mosaics`` picks the patches (cheap, deterministic),
``render_mosaic`` pastes them when the photo is needed, so a set of mosaics never sits in memory
at once (``PatchLoader`` keeps recently decoded patches: each recurs in many mosaics).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import open_image
from crack_model.core.tiling import Box

Read = Callable[[str], bytes]
# Below this a "photo" has too few seams and tiles to say anything about full-size photos.
MIN_CELLS = 4


class TooFewPatchesError(CrackModelError):
    """The split has too few patches for mosaics: a fact about the data, not a failure of the check."""


@dataclass(frozen=True)
class MosaicConfig:
    """How many mosaics, of what shape; 8 x 10 cells of 227 px make the 2270x1816 photos of the issue (154 tiles)."""

    rows: int = 8
    columns: int = 10
    clean: int = 40
    with_cracks: int = 40
    max_cracks: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.columns < 1 or self.rows * self.columns < MIN_CELLS:
            msg = f"a mosaic needs at least {MIN_CELLS} cells, got {self.rows} x {self.columns}"
            raise ValueError(msg)
        if self.clean < 0 or self.with_cracks < 0:
            raise ValueError(f"mosaic counts must not be negative, got {self.clean} and {self.with_cracks}")
        if self.max_cracks < 1:
            raise ValueError(f"max cracks per mosaic must be at least 1, got {self.max_cracks}")


@dataclass(frozen=True)
class MosaicPlan:
    """One mosaic: the patch key of each cell (row-major) and the cells holding a crack patch."""

    name: str
    rows: int
    columns: int
    keys: tuple[str, ...]
    crack_cells: tuple[tuple[int, int], ...]  # (row, column)

    def cell_box(self, row: int, column: int, cell_size: int) -> Box:
        """The pixel box (left, top, right, bottom) of one cell in the rendered mosaic."""
        return column * cell_size, row * cell_size, (column + 1) * cell_size, (row + 1) * cell_size

    def crack_boxes(self, cell_size: int) -> list[Box]:
        """Pixel boxes of the crack patches in the rendered mosaic."""
        return [self.cell_box(row, column, cell_size) for row, column in self.crack_cells]

    def size(self, cell_size: int) -> tuple[int, int]:
        """(width, height) of the rendered mosaic."""
        return self.columns * cell_size, self.rows * cell_size


def grid_for(config: MosaicConfig, clean_patches: int) -> tuple[int, int]:
    """The configured grid, or the largest one of about its shape that ``clean_patches`` patches can fill.

    A clean mosaic needs a different clean patch in every cell; a small split gets smaller mosaics
    rather than repeated patches.
    """
    if clean_patches >= config.rows * config.columns:
        return config.rows, config.columns
    scale = math.sqrt(clean_patches / (config.rows * config.columns))
    rows, columns = max(1, math.floor(config.rows * scale)), max(1, math.floor(config.columns * scale))
    while rows * columns > clean_patches:
        rows, columns = (rows - 1, columns) if rows >= columns else (rows, columns - 1)
    if rows * columns < MIN_CELLS:
        msg = (
            f"{clean_patches} no-crack patches cannot fill a mosaic of {MIN_CELLS} cells: "
            "the photo-level check needs more no-crack images in its split"
        )
        raise TooFewPatchesError(msg)
    return rows, columns


def plan_mosaics(clean_keys: Sequence[str], crack_keys: Sequence[str], config: MosaicConfig) -> list[MosaicPlan]:
    """``config.clean`` clean mosaics, then ``config.with_cracks`` mosaics with 1..max_cracks crack patches.

    The counts do not shrink with a small pool: the photo threshold goes above the highest clean
    mosaic, so the chance that a new clean photo crosses it is about 1 in (clean mosaics + 1),
    however few patches the mosaics are drawn from (each mosaic is a new draw of seams). Capped at
    the 15 clean patches of the demo's validation split, the rule let 4 of 30 clean holdout photos
    through; with 120 mosaics, none of 40.

    Raises:
        TooFewPatchesError: too few patches (names how many there are and what is needed).
    """
    if config.with_cracks and not crack_keys:
        raise TooFewPatchesError("no crack patches to build crack mosaics from: the split has no crack images")
    clean_pool, crack_pool = sorted(set(clean_keys)), sorted(set(crack_keys))
    rows, columns = grid_for(config, len(clean_pool))
    cells = rows * columns
    rng = np.random.default_rng(config.seed)
    plans = []
    for index in range(config.clean):
        picked = rng.choice(len(clean_pool), size=cells, replace=False)
        plans.append(MosaicPlan(f"clean-{index:03d}.png", rows, columns, tuple(clean_pool[i] for i in picked), ()))
    for index in range(config.with_cracks):
        count = int(rng.integers(1, min(config.max_cracks, len(crack_pool), cells) + 1))
        places = sorted(int(cell) for cell in rng.choice(cells, size=count, replace=False))
        cracks = [crack_pool[i] for i in rng.choice(len(crack_pool), size=count, replace=False)]
        clean = [clean_pool[i] for i in rng.choice(len(clean_pool), size=cells - count, replace=False)]
        keys = []
        for cell in range(cells):
            keys.append(cracks.pop(0) if cell in places else clean.pop(0))
        crack_cells = tuple((cell // columns, cell % columns) for cell in places)
        plans.append(MosaicPlan(f"crack-{index:03d}.png", rows, columns, tuple(keys), crack_cells))
    return plans


class PatchLoader:
    """Decoded patches fitted to the cell, the ``limit`` most recently used kept: a patch recurs in many mosaics."""

    def __init__(self, read: Read, cell_size: int, limit: int = 512) -> None:
        self.read = read
        self.cell_size = cell_size
        self._load = lru_cache(maxsize=limit)(self._decode)

    def _decode(self, key: str) -> Image.Image:
        patch = open_image(self.read(key))
        if patch.size != (self.cell_size, self.cell_size):
            patch = patch.resize((self.cell_size, self.cell_size), Image.Resampling.BILINEAR)
        return patch

    def __call__(self, key: str) -> Image.Image:
        return self._load(key)


def render_mosaic(plan: MosaicPlan, patches: PatchLoader) -> Image.Image:
    """Paste the plan's patches, each resized to the cell when it is not that size already."""
    cell_size = patches.cell_size
    mosaic = Image.new("RGB", plan.size(cell_size))
    for cell, key in enumerate(plan.keys):
        mosaic.paste(patches(key), ((cell % plan.columns) * cell_size, (cell // plan.columns) * cell_size))
    return mosaic


def mosaic_bytes(plan: MosaicPlan, patches: PatchLoader) -> bytes:
    """The rendered mosaic as an uncompressed BMP: lossless, and ~10x cheaper to write and read than a PNG."""
    buffer = io.BytesIO()
    render_mosaic(plan, patches).save(buffer, format="BMP")
    return buffer.getvalue()
