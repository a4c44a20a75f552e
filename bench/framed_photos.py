"""Round pictures on a black square: mosaics of held-out patches in a frame, scored before and after frames.py.

Mosaics of METU patches a model never saw (in neither its train nor its validation split), framed as a
borescope or fisheye photo comes: a disc on black (several radii, off centre, with a feathered edge, a dark
vignette, JPEG-compressed, with a thin ring of noise outside it, with a caption burnt into a black corner), a
rounded rectangle, an octagon, letterbox bars; and, unframed: plain mosaics, crack mosaics whose crack patch
lies on the photo's edge, dark (underexposed) and half-shadowed mosaics. Crack patches of a framed mosaic lie
inside its picture. Each is scored through the scoring core with the model's runtime, frames found (``after``)
and not looked for (``before``).

    python -m bench.framed_photos --model build/demo/store/models/crack/versions/<v>

Writes ``bench/results/framed-photos.json`` and ``framed-photos.md``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from bench.run import SAMPLE, write_results

CELL = 227
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
Shape = Callable[[int, int, np.random.Generator], Image.Image]  # (width, height) -> "L" mask, 255: picture


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    crack_boxes: tuple[tuple[int, int, int, int], ...]
    outside: np.ndarray | None = None  # True where the frame is (no picture)


def disc(radius: float, centre: tuple[float, float] = (0.5, 0.5)) -> Shape:
    def draw(width: int, height: int, rng: np.random.Generator) -> Image.Image:
        mask = Image.new("L", (width, height), 0)
        side = min(width, height)
        x, y, r = centre[0] * width, centre[1] * height, radius * side
        ImageDraw.Draw(mask).ellipse((x - r, y - r, x + r, y + r), fill=255)
        return mask

    return draw


def rounded(corner: float) -> Shape:
    def draw(width: int, height: int, rng: np.random.Generator) -> Image.Image:
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, width - 1, height - 1), round(corner * min(width, height)), 255)
        return mask

    return draw


def octagon(cut: float) -> Shape:
    def draw(width: int, height: int, rng: np.random.Generator) -> Image.Image:
        c = cut * min(width, height)
        mask = Image.new("L", (width, height), 0)
        points = [(c, 0), (width - c, 0), (width, c), (width, height - c), (width - c, height), (c, height),
                  (0, height - c), (0, c)]  # fmt: skip
        ImageDraw.Draw(mask).polygon(points, fill=255)
        return mask

    return draw


def bars(share: float) -> Shape:
    def draw(width: int, height: int, rng: np.random.Generator) -> Image.Image:
        mask = Image.new("L", (width, height), 0)
        bar = round(share * height)
        ImageDraw.Draw(mask).rectangle((0, bar, width, height - bar), fill=255)
        return mask

    return draw


def noise_ring(photo: Image.Image, mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A thin ring of noise just outside the picture, as a lens rim leaves."""
    width, height = photo.size
    grown = np.asarray(mask.filter(ImageFilter.MaxFilter(2 * (min(width, height) // 120) + 1))) > 127
    ring = grown & ~(np.asarray(mask) > 127)
    pixels = np.asarray(photo).copy()
    pixels[ring] = rng.integers(0, 200, size=(int(ring.sum()), 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def caption(photo: Image.Image, mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A borescope's caption burnt into the black top-left corner."""
    draw = ImageDraw.Draw(photo)
    size = max(12, min(photo.size) // 45)
    font = ImageFont.truetype(str(FONT), size) if FONT.is_file() else ImageFont.load_default()
    draw.text((size // 2, size // 2), "CAM1 2026-12-08", fill=(255, 255, 255), font=font)
    draw.text((size // 2, 2 * size), "14:32:07 T 21C", fill=(230, 230, 40), font=font)
    return photo


def vignette(photo: Image.Image, mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A strong dark vignette inside the picture, falling towards the circle's edge."""
    width, height = photo.size
    y, x = np.mgrid[0:height, 0:width]
    distance = np.hypot((x - width / 2) / (min(width, height) / 2), (y - height / 2) / (min(width, height) / 2))
    falloff = np.clip(1 - 0.85 * distance**3, 0.05, 1)[..., None]
    return Image.fromarray((np.asarray(photo) * falloff).astype(np.uint8))


@dataclass(frozen=True)
class Variant:
    name: str
    grid: tuple[int, int]  # rows, columns
    shape: Shape | None = None
    feather: float = 0.0  # Gaussian blur of the mask, of the short side
    extra: Callable[[Image.Image, Image.Image, np.random.Generator], Image.Image] | None = None
    jpeg: int | None = None
    darken: float | None = None  # the whole photo's brightness times this
    shadow: float | None = None  # the left part's brightness times this
    edge_crack: bool = False  # the crack patch on the photo's edge
    rim_crack: bool = False  # the crack patch across the picture's rim, running into the frame
    clean: bool = True


VARIANTS = (
    Variant("circle r0.50", (8, 8), disc(0.5)),
    Variant("circle r0.45", (8, 8), disc(0.45)),
    Variant("circle r0.40 (4:3)", (8, 10), disc(0.4)),
    Variant("circle off centre", (8, 8), disc(0.42, (0.44, 0.56))),
    Variant("circle feathered", (8, 8), disc(0.47), feather=0.02),
    Variant("circle vignette", (8, 8), disc(0.48), extra=vignette),
    Variant("circle JPEG q80", (8, 8), disc(0.48), jpeg=80),
    Variant("circle noise ring", (8, 8), disc(0.46), extra=noise_ring),
    Variant("circle caption", (8, 8), disc(0.47), extra=caption, jpeg=90),
    Variant("rounded rectangle", (8, 10), rounded(0.2)),
    Variant("octagon", (8, 10), octagon(0.22)),
    Variant("letterbox bars", (8, 10), bars(0.1)),
    Variant("unframed", (8, 10)),
    Variant("crack on the edge", (8, 10), edge_crack=True, clean=False),
    Variant("dark x0.12", (8, 10), darken=0.12),
    Variant("shadowed half x0.1", (8, 10), shadow=0.1),
    Variant("circle, crack at the rim", (8, 8), disc(0.45), rim_crack=True, clean=False),
)


def held_out(model: Path) -> tuple[list[Path], list[Path]]:
    """The METU sample's patches the model never saw (not in its train or validation split): clean, crack."""
    with open(model / "split.csv", newline="", encoding="utf-8") as handle:
        seen = {row["sha256"] for row in csv.DictReader(handle) if row["split"] in ("train", "validation")}
    clean, crack = [], []
    for path in sorted(SAMPLE.glob("*/*.jpg")):
        if hashlib.sha256(path.read_bytes()).hexdigest() not in seen:
            (crack if path.parent.name == "Positive" else clean).append(path)
    return clean, crack


def inside(mask: Image.Image | None, row: int, column: int) -> float:
    """The share of the cell inside the picture."""
    box = (column * CELL, row * CELL, (column + 1) * CELL, (row + 1) * CELL)
    return 1.0 if mask is None else float(np.asarray(mask.crop(box)).mean()) / 255


def make_photos(variant: Variant, clean: list[Path], crack: list[Path], count: int, seed: int) -> Iterator[Photo]:
    rng = np.random.default_rng(seed)
    rows, columns = variant.grid
    width, height = columns * CELL, rows * CELL
    mask = variant.shape(width, height, rng) if variant.shape else None
    kinds = (["clean"] * count if variant.clean else []) + ["crack"] * count
    for index, kind in enumerate(kinds):
        cells = [(row, column) for row in range(rows) for column in range(columns)]
        picked = rng.choice(len(clean), size=len(cells), replace=False)
        patches = [clean[i] for i in picked]
        boxes = []
        if kind == "crack":
            edge = [i for i, (row, column) in enumerate(cells) if row in (0, rows - 1) or column in (0, columns - 1)]
            shares = [inside(mask, *cell) for cell in cells]
            places = [i for i, share in enumerate(shares) if share >= 0.95]
            if variant.rim_crack:
                places = [i for i, share in enumerate(shares) if 0.4 <= share <= 0.85]
            if variant.edge_crack:
                places = edge
            chosen = rng.choice(places, size=int(rng.integers(1, 4)), replace=False)
            for place, patch in zip(chosen, rng.choice(len(crack), size=len(chosen), replace=False), strict=True):
                patches[place] = crack[patch]
                row, column = cells[place]
                boxes.append((column * CELL, row * CELL, (column + 1) * CELL, (row + 1) * CELL))
        photo = Image.new("RGB", (width, height))
        for (row, column), path in zip(cells, patches, strict=True):
            with Image.open(path) as patch:
                photo.paste(patch.convert("RGB").resize((CELL, CELL)), (column * CELL, row * CELL))
        photo = dress(photo, variant, mask, rng)
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=variant.jpeg) if variant.jpeg else photo.save(
            buffer, "PNG", compress_level=1
        )
        outside = None if mask is None else np.asarray(mask) <= 127
        yield Photo(f"{variant.name}/{kind}-{index:02d}", buffer.getvalue(), tuple(boxes), outside)


def dress(photo: Image.Image, variant: Variant, mask: Image.Image | None, rng: np.random.Generator) -> Image.Image:
    if variant.darken is not None:
        photo = Image.fromarray((np.asarray(photo) * variant.darken).astype(np.uint8))
    if variant.shadow is not None:
        width = photo.size[0]
        x = np.arange(width)[None, :, None]
        light = variant.shadow + (1 - variant.shadow) / (1 + np.exp(-(x - 0.45 * width) / (0.02 * width)))
        photo = Image.fromarray((np.asarray(photo) * light).astype(np.uint8))
    if mask is not None:
        soft = mask.filter(ImageFilter.GaussianBlur(variant.feather * min(photo.size))) if variant.feather else mask
        if variant.extra is vignette:
            photo = vignette(photo, mask, rng)
        photo = Image.composite(photo, Image.new("RGB", photo.size), soft)
        if variant.extra is not None and variant.extra is not vignette:
            photo = variant.extra(photo, mask, rng)
    return photo


@contextmanager
def frames_ignored(ignored: bool) -> Iterator[None]:
    """Score as before frames.py: no frame is ever found."""
    from crack_model.core import frames

    search = frames.frame_of_thumbnail
    if ignored:
        frames.frame_of_thumbnail = lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        frames.frame_of_thumbnail = search


def score(model: Path, runtime: str, photos: list[Photo], ignored: bool) -> dict[str, dict[str, Any]]:
    from crack_model.evaluation.photo_check import MARKED_SHARE, marked_share
    from crack_model.serving.inference import score_images
    from crack_model.serving.scorer import load_scorer

    scorer = load_scorer(model, runtime)
    by_name = {photo.name: photo for photo in photos}
    threshold = scorer.card.threshold
    results: dict[str, dict[str, Any]] = {}
    with frames_ignored(ignored):
        for row in score_images(list(by_name), lambda key: by_name[key].data, scorer, workers=2):
            photo = by_name[row.key]
            shares = [marked_share(box, row.boxes, row.tile_probabilities, threshold) for box in photo.crack_boxes]
            lit = [box for box, value in zip(row.boxes, row.tile_probabilities, strict=True) if value >= threshold]
            framed = (
                [] if photo.outside is None else [float(photo.outside[b[1] : b[3], b[0] : b[2]].mean()) for b in lit]
            )
            results[row.key] = {"label": row.label, "crack": row.label == scorer.card.crack_class,
                                "highest": round(row.crack_probability or 0.0, 4), "note": row.note,
                                "marked": sum(share >= MARKED_SHARE for share in shares), "patches": len(shares),
                                "lit_tiles": len(lit), "lit_in_frame": sum(share >= 0.9 for share in framed),
                                "lit_half_in_frame": sum(share >= 0.5 for share in framed),
                                "status": row.status}  # fmt: skip
    return results


def frame_share(outside: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The share of a tile in the frame."""
    left, top, right, bottom = box
    return float(outside[top:bottom, left:right].mean())


def summary(variant: Variant, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    mine = {name: row for name, row in results.items() if name.startswith(variant.name + "/")}
    clean = [row for name, row in mine.items() if "/clean-" in name]
    crack = [row for name, row in mine.items() if "/crack-" in name]
    return {"false_alarms": f"{sum(row['crack'] for row in clean)}/{len(clean)}" if clean else "-",
            "found": f"{sum(row['crack'] for row in crack)}/{len(crack)}",
            "marked": f"{sum(row['marked'] for row in crack)}/{sum(row['patches'] for row in crack)}",
            "in_frame": f"{sum(row.get('lit_in_frame', 0) for row in mine.values())}/"
                        f"{sum(row.get('lit_half_in_frame', 0) for row in mine.values())}/"
                        f"{sum(row.get('lit_tiles', 0) for row in mine.values())}"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--count", type=int, default=8, help="clean and crack photos per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="variants whose name contains this")
    parser.add_argument("--save", type=Path, help="also write the photos to this folder")
    parser.add_argument("--name", default="framed-photos", help="the results' file names")
    arguments = parser.parse_args()
    clean, crack = held_out(arguments.model)
    variants = [variant for variant in VARIANTS if arguments.only in variant.name]
    # Each variant's seed is its place in VARIANTS: a variant run alone (--only) draws the same photos.
    photos = []
    for variant in variants:
        photos += make_photos(variant, clean, crack, arguments.count, arguments.seed + VARIANTS.index(variant))
    if arguments.save:
        for photo in photos:
            path = arguments.save / (
                photo.name.replace(" ", "_") + (".jpg" if photo.data[:2] == b"\xff\xd8" else ".png")
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(photo.data)
    started = time.perf_counter()
    before = score(arguments.model, arguments.runtime, photos, ignored=True)
    after = score(arguments.model, arguments.runtime, photos, ignored=False)
    table = {
        variant.name: {"before": summary(variant, before), "after": summary(variant, after)} for variant in variants
    }
    results = {"model": str(arguments.model), "runtime": arguments.runtime, "held_out": [len(clean), len(crack)],
               "variants": table, "photos": {"before": before, "after": after},
               "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    lines = ["| set | false alarms (clean) before | after | crack photos found before | after | crack patches in "
             "marked tiles before | after | marked tiles >= 90 % / >= 50 % in the frame / all, before | after |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in table.items():
        b, a = row["before"], row["after"]
        lines.append(f"| {name} | {b['false_alarms']} | {a['false_alarms']} | {b['found']} | {a['found']} | "
                     f"{b['marked']} | {a['marked']} | {b['in_frame']} | {a['in_frame']} |")  # fmt: skip
    write_results(arguments.name, results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
