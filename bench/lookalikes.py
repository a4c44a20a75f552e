"""The gate's look-alike check: how well ``same_picture`` tells copies of a photo from chance hash matches.

Copies: photos of both labeled sets saved again (JPEG 70), halved, cropped by 2 and 6 px, brightened 10 %.
Chance pairs: distinct photos whose perceptual hashes are within ``LOOKALIKE_BITS`` (same bytes left out), within
site-b, and site-b against the METU sample (the new surface's holdout against the old training data). For each,
the texture correlation ``same_picture`` compares with ``SAME_PICTURE_CORRELATION``: copies should be above it,
chance pairs below.

    python -m bench.lookalikes [--copies 90]

Writes ``bench/results/lookalikes.json`` and ``lookalikes.md``.
"""

from __future__ import annotations

import argparse
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from bench.run import write_results

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {"metu": SHARED / "metu-sample", "site-b": SHARED / "site-b-pavement"}


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _cropped(pixels: int) -> Callable[[Image.Image], Image.Image]:
    return lambda image: image.crop((pixels, pixels, image.width - pixels, image.height - pixels))


COPIES: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg 70": lambda image: _jpeg(image, 70),
    "halved": lambda image: image.resize((image.width // 2, image.height // 2)),
    "cropped 2 px": _cropped(2),
    "cropped 6 px": _cropped(6),
    "brightened 10 %": lambda image: ImageEnhance.Brightness(image).enhance(1.10),
}


def main(argv: list[str] | None = None) -> None:
    from crack_model.core.config import DataConfig
    from crack_model.core.imaging import open_image
    from crack_model.data.labeled import load_labeled
    from crack_model.evaluation.holdout_checks import LOOKALIKE_BITS, SAME_PICTURE_CORRELATION, texture_correlation

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=90, help="photos copied per kind (two thirds METU)")
    args = parser.parse_args(argv)
    images = {name: load_labeled(str(folder), DataConfig()) for name, folder in SETS.items()}

    def picture(uri: str) -> Image.Image:
        return open_image(Path(uri).read_bytes()).convert("RGB")

    rng = random.Random(1)
    sample = rng.sample(images["metu"], args.copies * 2 // 3) + rng.sample(images["site-b"], args.copies // 3)
    copies = {
        kind: [texture_correlation(picture(image.uri), edit(picture(image.uri))) for image in sample]
        for kind, edit in COPIES.items()
    }

    def chance_pairs(first: str, second: str) -> list[float]:
        hashes = np.array([int(image.perceptual_hash, 16) for image in images[second]], dtype=np.uint64)
        found = []
        for index, image in enumerate(images[first]):
            distances = np.bitwise_count(hashes ^ np.uint64(int(image.perceptual_hash, 16)))
            for other in np.nonzero(distances <= LOOKALIKE_BITS)[0]:
                twin = images[second][other]
                if (first == second and other <= index) or twin.sha256 == image.sha256:
                    continue
                found.append(texture_correlation(picture(image.uri), picture(twin.uri)))
        return found

    chance = {"site-b pairs": chance_pairs("site-b", "site-b"), "site-b against metu": chance_pairs("site-b", "metu")}

    def summary(values: list[float], extreme: str) -> dict[str, float | int]:
        found = min(values, default=0.0) if extreme == "lowest" else max(values, default=0.0)
        return {"count": len(values), extreme: round(found, 3),
                "confirmed": sum(value >= SAME_PICTURE_CORRELATION for value in values)}  # fmt: skip

    results = {
        "threshold": SAME_PICTURE_CORRELATION,
        "lookalike_bits": LOOKALIKE_BITS,
        "copies": {kind: summary(values, "lowest") for kind, values in copies.items()},
        "chance_pairs": {kind: summary(values, "highest") for kind, values in chance.items()},
    }
    lines = [f"# Look-alikes: texture correlation against the threshold {SAME_PICTURE_CORRELATION}", "",
             "| kind | count | extreme | taken for a copy |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| copy: {kind} | {row['count']} | lowest {row['lowest']} | {row['confirmed']} |"
              for kind, row in results["copies"].items()]  # fmt: skip
    lines += [f"| chance: {kind} (within {LOOKALIKE_BITS} bits) | {row['count']} | highest {row['highest']} | "
              f"{row['confirmed']} |" for kind, row in results["chance_pairs"].items()]  # fmt: skip
    write_results("lookalikes", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
