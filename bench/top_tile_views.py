"""A probe for the photo rule: do a photo's top tiles, scored again flipped and shifted, part clean from crack?

On mosaics the clean photos labeled crack are single tiles over seams and stains (README "Full-size
photos"). This scores the validation mosaics (the draw training chooses the rule on) and test mosaics
(``--seed``) through the scoring core, then scores each photo's ``--top`` highest tiles again in seven
views: flipped left-right, top-bottom and both, and shifted a quarter tile left, right, up and down
(cut from the rendered mosaic). Per photo it records the highest tile and, over its top tiles, the
highest mean of the four flip views (``flip_mean``) and of all eight views (``view_mean``). It
labels each set by the card's rule and by the card's rule with a confirmation: the photo is a crack
only when ``flip_mean`` (or ``view_mean``) also reaches the tile threshold. It measured whether such
a confirmation was worth building; scoring now has the flip mean (serving/photo_confirmation.py,
at a threshold chosen on validation), which ``bench.mosaics`` measures as served.

    python -m bench.top_tile_views --model build/metu-224 --seed 1,2,3,4,5

Writes ``bench/results/top-tile-views.json`` and ``.md`` (``--name`` changes the file names).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.run import write_results

FLIPS = 4  # the first four views: as cut, left-right, top-bottom, both
VIEW_STATISTICS = ("highest_tile", "flip_mean", "view_mean")


def views(image: Any, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The tile in eight views: four flips, then shifted a quarter tile each way (kept inside the photo)."""
    from crack_model.core.imaging import fit_to_input

    def cut(left: int, top: int) -> np.ndarray:
        left = min(max(left, 0), image.size[0] - span)
        top = min(max(top, 0), image.size[1] - span)
        return np.asarray(fit_to_input(image.crop((left, top, left + span, top + span)), size), dtype=np.uint8)

    left, top, right, _ = box
    span = right - left
    tile = cut(left, top)
    shift = span // 4
    shifted = [cut(left + dx, top + dy) for dx, dy in ((-shift, 0), (shift, 0), (0, -shift), (0, shift))]
    return np.stack([tile, tile[:, ::-1], tile[::-1, :], tile[::-1, ::-1], *shifted])


def photo_statistics(scorer: Any, split: str, config: Any, top: int) -> list[dict[str, Any]]:
    """Each mosaic of ``split``'s patches: its highest tile, the card's label and its top tiles' view means."""
    from crack_model.core.storage import read_uri
    from crack_model.evaluation.assess import read_split_manifest
    from crack_model.evaluation.mosaics import PatchLoader, plan_mosaics, render_mosaic
    from crack_model.evaluation.photo_check import score_mosaics
    from crack_model.serving.photo_decision import PhotoRule, photo_is_crack

    card = scorer.card
    images = read_split_manifest(Path(scorer.model_dir) / "split.csv", split)
    plans = plan_mosaics([image.uri for image in images if image.label != card.crack_class],
                         [image.uri for image in images if image.label == card.crack_class], config)  # fmt: skip
    patches = PatchLoader(read_uri, card.tile_size)
    photos = []
    for mosaic in score_mosaics(scorer, plans, read_uri):
        image = render_mosaic(mosaic.plan, patches)
        highest_first = np.argsort(mosaic.probabilities)[::-1][:top]
        scored = np.stack([scorer.class_probabilities(views(image, mosaic.boxes[int(index)], card.image_size))
                           [:, card.crack_index] for index in highest_first])  # fmt: skip
        photos.append({
            "name": mosaic.plan.name,
            "has_cracks": mosaic.has_cracks,
            "highest_tile": float(max(mosaic.probabilities)),
            "card_rule": photo_is_crack(mosaic.probabilities, mosaic.boxes, PhotoRule.of(card)),
            "flip_mean": float(scored[:, :FLIPS].mean(axis=1).max()),
            "view_mean": float(scored.mean(axis=1).max()),
            "top_tile_views": np.round(scored, 4).tolist(),
        })  # fmt: skip
    return photos


def counts(photos: list[dict[str, Any]], tile_threshold: float, confirm: str | None) -> dict[str, int]:
    """False alarms and crack photos found by the card's rule, confirmed by the statistic ``confirm`` if named."""

    def is_crack(photo: dict[str, Any]) -> bool:
        return photo["card_rule"] and (confirm is None or photo[confirm] >= tile_threshold)

    return {
        "false_alarms": sum(is_crack(photo) for photo in photos if not photo["has_cracks"]),
        "clean": sum(not photo["has_cracks"] for photo in photos),
        "found": sum(is_crack(photo) for photo in photos if photo["has_cracks"]),
        "with_cracks": sum(photo["has_cracks"] for photo in photos),
    }


def labeled_by_each(photos: list[dict[str, Any]], tile_threshold: float) -> dict[str, dict[str, int]]:
    """``counts`` by the card's rule alone and confirmed by each view statistic."""
    return {confirm or "card": counts(photos, tile_threshold, confirm) for confirm in (None, "flip_mean", "view_mean")}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Model {results['model_version']} (`{results['model']}`), {results['runtime']}, the card's rule "
        f"{results['rule']}, confirmation at the tile threshold {results['tile_threshold']:.4f}, "
        f"top {results['top']} tiles of each photo.",
        "",
        "| mosaics | card's rule: false alarms / found | + flip mean | + mean of 8 views |",
        "|---|---|---|---|",
    ]
    for name, labeled in results["labeled"].items():
        cells = [f"{c['false_alarms']} of {c['clean']} / {c['found']} of {c['with_cracks']}" for c in labeled.values()]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines += ["", "| mosaics | statistic | highest clean photos | lowest crack photos |", "|---|---|---|---|"]
    for name, photos in results["photos"].items():
        for statistic in VIEW_STATISTICS:
            clean = sorted((photo[statistic] for photo in photos if not photo["has_cracks"]), reverse=True)[:4]
            cracked = sorted(photo[statistic] for photo in photos if photo["has_cracks"])[:4]
            lines.append(f"| {name} | {statistic} | {', '.join(f'{v:.3f}' for v in clean)} | "
                         f"{', '.join(f'{v:.3f}' for v in cracked)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by crack-model train")
    parser.add_argument("--runtime", default="litert-int8", help="keras, litert-fp32 or litert-int8 (default int8)")
    parser.add_argument("--seed", default="1,2,3,4,5", help="test mosaic seeds, comma-separated (40+40 each)")
    parser.add_argument("--top", type=int, default=3, help="highest tiles of each photo scored again (default 3)")
    parser.add_argument("--name", default="top-tile-views", help="results file name")
    args = parser.parse_args(argv)
    from crack_model.evaluation.mosaics import MosaicConfig
    from crack_model.serving.photo_decision import PhotoRule
    from crack_model.serving.scorer import load_scorer
    from crack_model.training.photo_rule import DEFAULT_MOSAICS

    scorer = load_scorer(args.model, args.runtime)
    rule = PhotoRule.of(scorer.card)
    photos = {"validation": photo_statistics(scorer, "validation", DEFAULT_MOSAICS, args.top)}
    for seed in args.seed.split(","):
        photos[f"test, seed {seed}"] = photo_statistics(scorer, "test", replace(MosaicConfig(), seed=int(seed)),
                                                        args.top)  # fmt: skip
    results = {
        "model": str(args.model),
        "model_version": scorer.card.version,
        "runtime": args.runtime,
        "rule": rule.describe(),
        "tile_threshold": rule.tile_threshold,
        "top": args.top,
        "labeled": {name: labeled_by_each(set_photos, rule.tile_threshold) for name, set_photos in photos.items()},
        "photos": photos,
    }
    write_results(args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
