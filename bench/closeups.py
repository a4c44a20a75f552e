"""Close-up photos: a trained model's photo rule on its held-out test patches, enlarged.

A METU patch is a 227-px crop of a phone photo, and training sees its cracks at that scale. A
photo taken closer, or with more pixels, shows the same crack larger: enlarged F times (bicubic),
a test patch becomes a 227F-px photo cut into overlapping tiles that the crack crosses from edge
to edge, with no seam between unrelated surfaces anywhere. It is the other kind of full-size
photo beside ``bench.mosaics``' (many small cracks among seams), and where a photo threshold
raised above the mosaics' seams costs cracks. Each enlarged patch is scored through the scoring
core and labeled by the card's photo rule and by the highest tile alone; zoom 1 is the patches
themselves (one tile each: the patch rule). ``--data`` enlarges another labeled folder instead,
all of it: close-ups of a surface the model never saw.

    python -m bench.closeups --model build/metu-224 [--zoom 1,2,3] [--runtime litert-int8] [--data DIR]

Writes ``bench/results/closeups.json`` and ``closeups.md`` (``--name`` changes the file names).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from bench.run import write_results


def enlarge(data: bytes, zoom: int) -> bytes:
    """The image ``zoom`` times larger on each side, as a PNG (lossless: only the enlarging changes it)."""
    from PIL import Image

    from crack_model.core.imaging import open_image

    image = open_image(data)
    buffer = io.BytesIO()
    image.resize((image.width * zoom, image.height * zoom), Image.Resampling.BICUBIC).save(buffer, format="PNG")
    return buffer.getvalue()


def labeled_images(model: Path, data: str | None) -> dict[str, str]:
    """Label by image: the model's held-out test patches, or every image of a labeled folder."""
    from crack_model.core.config import DataConfig
    from crack_model.data.labeled import load_labeled
    from crack_model.evaluation.assess import read_split_manifest

    images = load_labeled(data, DataConfig()) if data else read_split_manifest(model / "split.csv", "test")
    return {image.uri: image.label for image in images}


def measure(model: Path, runtime: str, zoom: int, labels: dict[str, str]) -> dict[str, Any]:
    from crack_model.core.storage import read_uri
    from crack_model.serving.inference import score_images
    from crack_model.serving.scorer import load_scorer

    scorer = load_scorer(model, runtime)
    card = scorer.card
    scores = list(score_images(list(labels), lambda uri: enlarge(read_uri(uri), zoom), scorer))
    failed = [f"{score.key}: {score.error}" for score in scores if score.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} images could not be scored: {failed[:3]}")
    cracks = [score for score in scores if labels[score.key] == card.crack_class]
    clean = [score for score in scores if labels[score.key] != card.crack_class]

    def highest_tile_says_crack(score: Any) -> bool:
        return (score.crack_probability or 0.0) >= card.threshold

    return {
        "runtime": runtime,
        "zoom": zoom,
        "photo_sizes": sorted({f"{score.width}x{score.height}" for score in scores}),
        "tiles_per_photo": max(score.tile_count for score in scores),
        "crack_photos": len(cracks),
        "clean_photos": len(clean),
        "found": sum(score.label == card.crack_class for score in cracks),
        "false_alarms": sum(score.label == card.crack_class for score in clean),
        "max_rule": {
            "found": sum(map(highest_tile_says_crack, cracks)),
            "false_alarms": sum(map(highest_tile_says_crack, clean)),
        },
        "missed": sorted(Path(score.key).name for score in cracks if score.label != card.crack_class),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Model {results['model_version']} (`{results['model']}`), photo rule: {results['rule']}; "
        f"tile threshold {results['tile_threshold']:.4f}. {results['images']} enlarged ZOOM times, "
        "each scored as one photo.",
        "",
        "| runtime | zoom | photo | tiles | crack photos found, photo rule | false alarms, photo rule | "
        "found, highest tile >= tile threshold | false alarms, highest tile | missed (photo rule) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        missed = ", ".join(run["missed"][:8]) + (" ..." if len(run["missed"]) > 8 else "")
        lines.append(
            f"| {run['runtime']} | {run['zoom']} | {', '.join(run['photo_sizes'][:3])} | "
            f"{run['tiles_per_photo']} | {run['found']} of {run['crack_photos']} | "
            f"{run['false_alarms']} of {run['clean_photos']} | {run['max_rule']['found']} of {run['crack_photos']} | "
            f"{run['max_rule']['false_alarms']} of {run['clean_photos']} | {missed} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by crack-model train")
    parser.add_argument("--runtime", default="litert-int8", help="auto, keras, litert-fp32 or litert-int8")
    parser.add_argument("--zoom", default="1,2,3", help="comma-separated enlargements (default 1,2,3)")
    parser.add_argument("--data", help="a labeled folder to enlarge instead of the model's test patches (all of it)")
    parser.add_argument("--name", default="closeups", help="results file name (default closeups)")
    args = parser.parse_args(argv)
    from crack_model.core.model_card import ModelCard
    from crack_model.serving.photo_decision import PhotoRule

    card = ModelCard.load(args.model)
    labels = labeled_images(args.model, args.data)
    results: dict[str, Any] = {
        "model": str(args.model),
        "model_version": card.version,
        "rule": PhotoRule.of(card).describe(),
        "tile_threshold": card.threshold,
        "images": f"{args.data} ({len(labels)} images)" if args.data else f"{len(labels)} test patches",
        "runs": [measure(args.model, args.runtime, int(zoom), labels) for zoom in args.zoom.split(",")],
    }
    write_results(args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
