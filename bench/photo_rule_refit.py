"""A trained model's photo rule chosen again on its own validation split, with or without its labeled photos.

Training chooses the photo rule on mosaics of the validation patches and on the validation
split's labeled full-size photos (``training/photo_rule.py``). This copies a trained model to
``--out`` and chooses its rule again from the same ``split.csv``; ``--mosaics-only`` leaves the
photos out, which is how the rule was chosen before they joined. Scoring both copies on the same
held-out photos (``bench.closeups --zoom 1 --data``) shows what the site's own photos change, on
one and the same network.

    python -m bench.photo_rule_refit --model build/lp-s5 --out build/lp-s5-mosaics-only --mosaics-only
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crack_model.data.labeled import LabeledImage


def refit(model: Path, out: Path, *, with_photos: bool) -> dict[str, Any]:
    from crack_model.core.model_card import ModelCard
    from crack_model.core.tiling import TileConfig
    from crack_model.data.labeled import Split
    from crack_model.training.photo_rule import fit_photo_rule
    from crack_model.training.photo_tiles import is_photo

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    tiles = TileConfig(tile_size=ModelCard.load(out).tile_size)  # as scoring cuts them
    validation, test = (split_images(out / "split.csv", name) for name in ("validation", "test"))  # not train: unused
    patches = Split([], [i for i in validation if not is_photo(i, tiles)], [i for i in test if not is_photo(i, tiles)])
    photos = [image for image in validation if is_photo(image, tiles)] if with_photos else []
    return fit_photo_rule(out, patches, labeled_photos=photos)


def split_images(manifest: Path, name: str) -> list[LabeledImage]:
    """One split's readable images from ``split.csv``, with their sizes (photo or patch); none for an empty split."""
    import csv

    from crack_model.data.labeled import LabeledImage, fingerprint
    from crack_model.evaluation.assess import read_split_manifest

    with open(manifest, newline="", encoding="utf-8") as handle:
        if not any(row["split"] == name for row in csv.DictReader(handle)):
            return []
    read = [fingerprint(image) for image in read_split_manifest(manifest, name)]
    return [image for image in read if isinstance(image, LabeledImage)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained model folder (with split.csv)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the copy with the new rule")
    parser.add_argument("--mosaics-only", action="store_true", help="leave the validation photos out")
    args = parser.parse_args(argv)
    if not (args.model / "split.csv").is_file():
        parser.error(f"{args.model} has no split.csv: give a model folder written by crack-model train")
    section = refit(args.model, args.out, with_photos=not args.mosaics_only)
    print(json.dumps({"rule": section.get("rule"), "skipped": section.get("skipped")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
