"""A site that labels full-size photos: lays out a pool of METU patches plus site-b *photos*, and held-out sets.

``site-b-pavement`` has patches only, so its "photos" are mosaics of its patches (``--grid`` of
227-px cells): a clean photo is all clean patches, a crack photo has one crack patch in a random
cell and says nothing of where (as a photo's label does). Training photos draw their clean patches
(with reuse between photos, never within one) from 250 of site-b's 500 clean patches; the held-out
photos and patches come from the rest, so no held-out image shares a patch with training. (The
pool's own validation and test photos do share patches with its training photos: judge a model
by the held-out folders, not by its ``metrics.json``.)

    python -m bench.labeled_photos --lay-out build/labeled-photos [--photos 20] [--grid 4x5]

writes ``pool/`` (all 2,000 METU patches in slice ``metu``, N clean and N crack photos in slice
``siteb``), ``eval-photos/`` (40 clean and 40 crack photos) and ``eval-patches/`` (the held-out
site-b patches). Then train on ``pool/`` and score the two held-out folders with ``bench.closeups
--zoom 1 --data`` (README, "Adapting to a new surface").
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from bench.run import PROJECT

SHARED_DATA = PROJECT.parent / "shared" / "data"
TRAINING_CLEAN_PATCHES = 250
HELD_OUT_PHOTOS = 40


def lay_out(out: Path, photos: int, rows: int, columns: int, seed: int) -> dict[str, int]:
    from crack_model.core.storage import read_uri
    from crack_model.evaluation.mosaics import MosaicPlan, PatchLoader, render_mosaic

    metu, site = SHARED_DATA / "metu-sample", SHARED_DATA / "site-b-pavement"
    rng = np.random.default_rng(seed)
    shutil.rmtree(out, ignore_errors=True)
    for label in ("Positive", "Negative"):
        (out / "pool" / label / "metu").mkdir(parents=True)
        for path in sorted((metu / label).rglob("*.jpg")):
            shutil.copy(path, out / "pool" / label / "metu" / path.name)
    clean = [str(path) for path in sorted((site / "Negative").rglob("*.jpg"))]
    cracks = [str(path) for path in sorted((site / "Positive").rglob("*.jpg"))]
    rng.shuffle(clean)
    rng.shuffle(cracks)
    training_clean, held_clean = clean[:TRAINING_CLEAN_PATCHES], clean[TRAINING_CLEAN_PATCHES:]
    training_cracks, held_cracks = cracks[:photos], cracks[photos:]
    patches, cells = PatchLoader(read_uri, 227), rows * columns

    def save(pool: list[str], crack: str | None, path: Path) -> None:
        keys = [pool[index] for index in rng.choice(len(pool), cells - (crack is not None), replace=False)]
        if crack is not None:
            keys.insert(int(rng.integers(cells)), crack)
        path.parent.mkdir(parents=True, exist_ok=True)
        render_mosaic(MosaicPlan(path.name, rows, columns, tuple(keys), ()), patches).save(path, quality=95)

    for index in range(photos):
        save(training_clean, None, out / "pool" / "Negative" / "siteb" / f"photo-{index:03d}.jpg")
        save(training_clean, training_cracks[index], out / "pool" / "Positive" / "siteb" / f"photo-{index:03d}.jpg")
    for index in range(HELD_OUT_PHOTOS):
        save(held_clean, None, out / "eval-photos" / "Negative" / f"photo-{index:03d}.jpg")
        save(held_clean, held_cracks[index], out / "eval-photos" / "Positive" / f"photo-{index:03d}.jpg")
    for label, pool in (("Negative", held_clean), ("Positive", held_cracks)):
        (out / "eval-patches" / label).mkdir(parents=True)
        for path in pool:
            shutil.copy(path, out / "eval-patches" / label / Path(path).name)
    return {"training_photos": 2 * photos, "held_out_photos": 2 * HELD_OUT_PHOTOS,
            "held_out_patches": len(held_clean) + len(held_cracks)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lay-out", type=Path, required=True, help="folder to write pool/, eval-photos/, eval-patches/"
    )
    parser.add_argument("--photos", type=int, default=20, help="site-b photos per class in the pool (default 20)")
    parser.add_argument("--grid", default="4x5", help="patches per photo, ROWSxCOLUMNS (default 4x5: 1135x908)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    rows, columns = (int(part) for part in args.grid.split("x"))
    counts = lay_out(args.lay_out, args.photos, rows, columns, args.seed)
    sys.stdout.write(f"{args.lay_out}: {counts}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
