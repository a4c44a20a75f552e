"""Phone formats: what HEIC (an iPhone's default) changes against the JPEG a photo came as.

Each of a trained model's held-out test patches (or every image of ``--data``) is scored as it is
stored (JPEG), then re-encoded from its pixels as HEIC and as JPEG at ``--quality``, the HEIC stored
turned with an EXIF orientation of 6 (libheif writes it as an irot box, as an iPhone held upright
does), and scored again through the scoring core: labels, crack probabilities and what each format
finds. Then a 12 MP phone photo (the patches side by side, 4032x3024) in each format: decode time
to the tile budget (median of 3), the photo scored end to end, and 8 copies scored together.

    python -m bench.phone_formats --model build/metu-224 [--data DIR] [--quality 80] [--runtime litert-int8]

Writes ``bench/results/phone-formats.json`` and ``.md`` (``--name`` changes the file names).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.closeups import labeled_images
from bench.run import write_results

PHONE_PHOTO = (4032, 3024)
NIGHT = 8  # photos scored together, through the engine's threads


def encoders(quality: int) -> dict[str, Callable[[bytes], bytes]]:
    """Format name to a function from the stored bytes to the same picture in that format."""
    import numpy as np
    import pillow_heif  # the encoder (the product's pi-heif only decodes)
    from PIL import Image

    from crack_model.core.imaging import open_image

    def pixels(data: bytes) -> Image.Image:
        """The upright picture without the original's metadata: pillow-heif would copy its EXIF and XMP
        orientation, and write a file whose EXIF says "turned" and whose irot box does not."""
        return Image.fromarray(np.asarray(open_image(data)))

    def heic(data: bytes) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = 6  # stored turned a quarter, shown upright: as an iPhone held upright writes it
        buffer = io.BytesIO()
        turned = pixels(data).transpose(Image.Transpose.ROTATE_90)
        pillow_heif.from_pillow(turned).save(buffer, format="HEIF", quality=quality, exif=exif.tobytes())
        return buffer.getvalue()

    def jpeg(data: bytes) -> bytes:
        buffer = io.BytesIO()
        pixels(data).save(buffer, format="JPEG", quality=quality)
        return buffer.getvalue()

    return {"heic": heic, "jpeg": jpeg}


def score_all(model: Path, runtime: str, labels: dict[str, str], fetch: Callable[[str], bytes]) -> dict[str, Any]:
    from crack_model.serving.inference import score_images
    from crack_model.serving.scorer import load_scorer

    scores = list(score_images(list(labels), fetch, load_scorer(model, runtime)))
    failed = [f"{score.key}: {score.error}" for score in scores if score.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} images could not be scored: {failed[:3]}")
    return {score.key: score for score in scores}


def compare(stored: dict[str, Any], scores: dict[str, Any], labels: dict[str, str], crack: str) -> dict[str, Any]:
    differences = [abs(scores[key].crack_probability - stored[key].crack_probability) for key in labels]
    cracks = [key for key in labels if labels[key] == crack]
    return {
        "images": len(labels),
        "found": sum(scores[key].label == crack for key in cracks),
        "crack_images": len(cracks),
        "false_alarms": sum(scores[key].label == crack for key in labels if key not in cracks),
        "labels_as_stored": sum(scores[key].label == stored[key].label for key in labels),
        "probability_change_median": statistics.median(differences),
        "probability_change_max": max(differences),
        "sizes": sorted({f"{score.width}x{score.height}" for score in scores.values()}),
    }


def phone_photos(model: Path, runtime: str, patches: list[str], quality: int) -> list[dict[str, Any]]:
    """One 12 MP photo per format (the patches side by side, cracks among them): decode time to the tile
    budget, then the photo scored end to end."""
    from PIL import Image

    from crack_model.core.imaging import open_header, open_image
    from crack_model.core.storage import read_uri
    from crack_model.core.tiling import TileConfig, fit_to_tile_budget
    from crack_model.serving.inference import score_images
    from crack_model.serving.scorer import load_scorer

    photo = Image.new("RGB", PHONE_PHOTO)
    side = open_image(read_uri(patches[0])).width
    cells = [(left, top) for top in range(0, PHONE_PHOTO[1], side) for left in range(0, PHONE_PHOTO[0], side)]
    for index, (left, top) in enumerate(cells):
        photo.paste(open_image(read_uri(patches[index % len(patches)])).resize((side, side)), (left, top))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    scorer = load_scorer(model, runtime)
    rows = []
    for name, encode in encoders(quality).items():
        data = encode(buffer.getvalue())
        header = open_header(data).header
        budget = fit_to_tile_budget(header.width, header.height, TileConfig(tile_size=scorer.card.tile_size)).scaled
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            open_image(data, size=budget)
            seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        (score,) = score_images([name], lambda _key, data=data: data, scorer)
        alone = time.perf_counter() - started
        started = time.perf_counter()
        night = list(score_images([f"{name}-{index}" for index in range(NIGHT)], lambda _key, data=data: data, scorer))
        assert all(row.status == "ok" for row in night), night
        rows.append({
            "format": name, "bytes": len(data), "size": f"{header.width}x{header.height}",
            "decode_seconds": statistics.median(seconds), "decoded_to": f"{budget[0]}x{budget[1]}",
            "peak_bytes_estimate": header.peak_bytes(budget), "score_seconds": alone,
            "night_photos_per_second": NIGHT / (time.perf_counter() - started),
            "tiles": score.tile_count, "label": score.label, "crack_probability": score.crack_probability,
        })  # fmt: skip
    return rows


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Model {results['model_version']} (`{results['model']}`), {results['runtime']}; {results['images']}; "
        f"re-encoded at quality {results['quality']} (HEIC stored turned, EXIF orientation 6).",
        "",
        "| format | found | false alarms | labels as stored | crack probability change, median / max | sizes |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in results["formats"].items():
        lines.append(
            f"| {name} | {run['found']} of {run['crack_images']} | {run['false_alarms']} of "
            f"{run['images'] - run['crack_images']} | {run['labels_as_stored']} of {run['images']} | "
            f"{run['probability_change_median']:.4f} / {run['probability_change_max']:.4f} | "
            f"{', '.join(run['sizes'][:3])} |"
        )
    lines += [
        "",
        "| 12 MP photo | bytes | decoded to | decode, s (median of 3) | peak estimate, MB | scored end to end, s | "
        f"{NIGHT} scored together, photos/s | tiles | label (probability) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["phone_photos"]:
        lines.append(
            f"| {row['format']} | {row['bytes']:,} | {row['decoded_to']} | {row['decode_seconds']:.2f} | "
            f"{row['peak_bytes_estimate'] / 1e6:.0f} | {row['score_seconds']:.1f} | "
            f"{row['night_photos_per_second']:.2f} | {row['tiles']} | "
            f"{row['label']} ({row['crack_probability']:.3f}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by crack-model train")
    parser.add_argument("--runtime", default="litert-int8", help="auto, keras, litert-fp32 or litert-int8")
    parser.add_argument("--data", help="a labeled folder to use instead of the model's test patches (all of it)")
    parser.add_argument("--quality", type=int, default=80, help="HEIC and JPEG quality (default 80)")
    parser.add_argument("--name", default="phone-formats", help="results file name (default phone-formats)")
    args = parser.parse_args(argv)
    from crack_model.core.model_card import ModelCard
    from crack_model.core.storage import read_uri

    card = ModelCard.load(args.model)
    labels = labeled_images(args.model, args.data)
    stored = score_all(args.model, args.runtime, labels, read_uri)
    formats = {"as stored": compare(stored, stored, labels, card.crack_class)}
    for name, encode in encoders(args.quality).items():
        scores = score_all(args.model, args.runtime, labels, lambda uri, encode=encode: encode(read_uri(uri)))
        formats[name] = compare(stored, scores, labels, card.crack_class)
    results = {
        "model": str(args.model), "model_version": card.version, "runtime": args.runtime, "quality": args.quality,
        "images": f"{args.data} ({len(labels)} images)" if args.data else f"{len(labels)} test patches",
        "formats": formats, "phone_photos": phone_photos(args.model, args.runtime, sorted(labels), args.quality),
    }  # fmt: skip
    write_results(args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
