"""Seam examples: training tiles that straddle the borders between unrelated patches.

A full-size photo is cut into overlapping tiles, and where its surface changes (a formwork joint,
a repair, the edge of a shadow, or the seams of the photo check's mosaics) a tile sees a straight
border between two textures. A model trained on whole patches only has never seen one labeled
clean, and reads it as a crack: on mosaics of clean test patches, seams scored up to 0.92 and
decided most photo-level false alarms and misses (README, "Full-size photos").

So training adds some: each is a tile-sized crop of a 2 x 2 canvas of four distinct *training*
patches of one slice, cut at a random place that both borders cross: four clean patches labeled
clean, or one crack patch among three clean ones, mostly inside the crop, labeled crack (so a
border alone says nothing either way). They are written to a folder the caller owns and
discarded after training (never evaluated, never in ``split.csv``); the same split and seed give
the same bytes, so the feature cache keeps their features.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crack_model.core.log_lines import module_logger
from crack_model.data.labeled import LabeledImage, labeled_fetch
from crack_model.evaluation.mosaics import MosaicPlan, PatchLoader, render_mosaic

log = module_logger(__name__)

PATCHES_PER_EXAMPLE = 4
# Where the crop starts, as a share of the tile: both borders stay at least this far inside it.
MARGIN = 0.05
# A crack example's crop covers this share range of its crack patch on each axis.
CRACK_COVER = (0.8, 0.95)


def seam_examples(
    images: Sequence[LabeledImage],
    share: float,
    tile_size: int,
    folder: Path,
    *,
    crack_class: str,
    seed: int,
) -> list[LabeledImage]:
    """About ``share`` x the images of each (class, slice) as seam examples (PNG files in ``folder``).

    A clean example is four clean patches, the borders anywhere but the outer ``MARGIN`` of the
    crop. A crack example puts one crack patch among three clean ones and covers ``CRACK_COVER`` of
    it on each axis, so the crack is almost surely inside. Without crack examples a border meant
    clean: crack patches scoring 0.996 alone scored 0.06-0.17 in every tile of a mosaic. With them
    covering 65-85 %, the label was often wrong and seams rose back to 0.98. A slice with fewer than
    four clean images gets none.
    """
    by_cell: dict[tuple[str, bool], list[str]] = defaultdict(list)
    for image in images:
        by_cell[(image.slice, image.label == crack_class)].append(image.uri)
    labels = {image.label == crack_class: image.label for image in images}
    rng = np.random.default_rng(seed)
    patches = PatchLoader(labeled_fetch(images), tile_size)
    folder.mkdir(parents=True, exist_ok=True)
    examples = []
    for slice_name, is_crack in sorted(by_cell):
        clean = sorted(by_cell[(slice_name, False)])
        if len(clean) < PATCHES_PER_EXAMPLE:
            continue
        pool = sorted(by_cell[(slice_name, True)]) if is_crack else clean
        for _ in range(round(share * len(pool))):
            others = PATCHES_PER_EXAMPLE - 1 if is_crack else PATCHES_PER_EXAMPLE
            picked = [clean[i] for i in rng.choice(len(clean), size=others, replace=False)]
            if is_crack:  # the crack patch in a random quadrant, the crop mostly over it
                quadrant = int(rng.integers(PATCHES_PER_EXAMPLE))
                picked.insert(quadrant, pool[int(rng.integers(len(pool)))])
                # crack cell left (top): the crop starts 5-20 % into it; right (bottom): 80-95 % into the cell before
                low = [1 - CRACK_COVER[1] if side == 0 else CRACK_COVER[0] for side in (quadrant % 2, quadrant // 2)]
                left, top = (int(rng.uniform(at, at + CRACK_COVER[1] - CRACK_COVER[0]) * tile_size) for at in low)
            else:
                left, top = (
                    int(offset) for offset in rng.integers(int(MARGIN * tile_size), int((1 - MARGIN) * tile_size), 2)
                )
            canvas = render_mosaic(MosaicPlan("seam", 2, 2, tuple(picked), ()), patches)
            buffer = io.BytesIO()
            canvas.crop((left, top, left + tile_size, top + tile_size)).save(buffer, format="PNG")
            data = buffer.getvalue()
            digest = hashlib.sha256(data).hexdigest()
            path = folder / f"seam-{digest[:16]}.png"
            path.write_bytes(data)
            examples.append(LabeledImage(str(path), labels[is_crack], sha256=digest, slice=slice_name))
    log.info("seam examples: %d tiles across the borders of training patches", len(examples))
    return examples
