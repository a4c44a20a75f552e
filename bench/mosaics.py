"""Full-size photos: a trained model's photo rule on mosaics of its held-out test patches.

Mosaics of 8 x 10 test-split patches (2270x1816 px, 154 tiles; seams between unrelated patches;
40 clean ones and 40 with 1 to 3 crack patches) are scored through the scoring core with each
runtime asked for, and labeled by the model card's photo rule ("after") and by the highest tile
alone ("before", the rule of cards without a photo rule), on the same tile scores. The test
patches are never used to choose the rule (training chooses it on validation mosaics).

    crack-model train --data ../shared/data/metu-sample --out build/metu-224 --weights $WEIGHTS \\
        --feature-cache ~/.cache/crack-model/features
    python -m bench.mosaics --model build/metu-224

Writes ``bench/results/mosaics.json`` and ``mosaics.md`` (``--name`` changes the file names).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.run import write_results


def measure(model: Path, runtime: str, split: str, grid: tuple[int, int], clean: int, with_cracks: int,
            seed: int) -> dict[str, Any]:  # fmt: skip
    from crack_model.core.storage import read_uri
    from crack_model.evaluation.assess import read_split_manifest
    from crack_model.evaluation.mosaics import MosaicConfig
    from crack_model.evaluation.photo_check import mosaic_check
    from crack_model.serving.scorer import load_scorer

    images = read_split_manifest(model / "split.csv", split)
    scorer = load_scorer(model, runtime)
    crack_class = scorer.card.crack_class
    config = MosaicConfig(rows=grid[0], columns=grid[1], clean=clean, with_cracks=with_cracks, seed=seed)
    started = time.perf_counter()
    figures = mosaic_check(
        scorer,
        [image.uri for image in images if image.label != crack_class],
        [image.uri for image in images if image.label == crack_class],
        read_uri,
        config,
    )
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["split"] = split
    return figures


def markdown(results: dict[str, Any]) -> str:
    from crack_model.evaluation.photo_check import threshold_rose

    lines = [
        f"Model {results['model_version']} (`{results['model']}`), photo rule: {results['rule']}.",
        "",
        "| runtime | seed | photos | tiles each | rule | false alarms (clean) | crack photos found | crack patches in "
        "marked tiles | meets bar | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for figures in results["runs"]:
        size = "x".join(map(str, figures["photo_size"]))
        common = (
            f"| {figures['runtime']} | {figures['seed']} | {size} ({'x'.join(map(str, figures['grid']))}) | "
            f"{figures['tiles_per_mosaic']}"
        )
        lines.append(
            f"{common} | highest tile >= {figures['rule']['tile_threshold']:.4f} (before) | "
            f"{figures['max_rule']['false_alarms']} of {figures['clean_mosaics']} | "
            f"{figures['max_rule']['found']} of {figures['crack_mosaics']} | "
            f"{figures['crack_patches_in_marked_tiles']} of {figures['crack_patches']} | | |"
        )
        flat = figures.get("without_rise")
        if flat and threshold_rose(figures):
            lines.append(
                f"{common} | the same, not risen for {figures['tiles_per_mosaic']} tiles | {flat['false_alarms']} of "
                f"{figures['clean_mosaics']} | {flat['found']} of {figures['crack_mosaics']} | | | |"
            )
        if confirmed(figures):
            alone = figures["without_confirmation"]
            lines.append(
                f"{common} | the same, not confirmed by flips | {alone['false_alarms']} of "
                f"{figures['clean_mosaics']} | {alone['found']} of {figures['crack_mosaics']} | | | |"
            )
        lines.append(
            f"{common} | {figures['rule'].get('for_these_photos', figures['rule']['describe'])} (after) | "
            f"{figures['false_alarms']} of "
            f"{figures['clean_mosaics']} | {figures['found']} of {figures['crack_mosaics']} | "
            f"{figures['crack_patches_in_marked_tiles']} of {figures['crack_patches']} | "
            f"{'yes' if figures['meets_bar'] else 'no'} | {figures['seconds']} |"
        )
    lines += totals(results["runs"])
    lines += [
        "",
        "Highest clean tile / lowest crack photo (highest tile): "
        + "; ".join(
            f"{run['runtime']} {run['highest_clean_tile']:.4f} / {run['lowest_crack_mosaic_highest_tile']:.4f}"
            for run in results["runs"]
        ),
        f"A crack patch is in marked tiles when {results['runs'][0]['marked_share_definition']}.",
        *culprits(results["runs"]),
    ]
    return "\n".join(lines) + "\n"


def confirmed(figures: dict[str, Any]) -> bool:
    """Whether the rule confirmed its crack photos by their top tiles' flips (figures from before it: no)."""
    return "without_confirmation" in figures and figures["rule"].get("confirm_threshold") is not None


def culprits(runs: list[dict[str, Any]], shown: int = 8) -> list[str]:
    """Per runtime, over its seeds: the clean patches under the most false alarms' highest tiles, and the
    crack patches of missed mosaics (photo_check.py names them per run)."""
    lines = []
    for runtime in dict.fromkeys(run["runtime"] for run in runs):
        mine = [run for run in runs if run["runtime"] == runtime and "false_alarm_patches" in run]
        under: Counter[str] = Counter()
        for run in mine:
            under.update(run["false_alarm_patches"])
        missed = sorted({key for run in mine for key in run["missed_crack_patches"]})
        if not under and not missed:
            continue
        alarms = sum(run["false_alarms"] for run in mine)
        named = ", ".join(f"`{short(key)}` {count} of {alarms}" for key, count in under.most_common(shown))
        cracks = ", ".join(f"`{short(key)}`" for key in missed)
        lines.append(f"{runtime}: clean patches under the false alarms' highest tiles: {named or 'none'}; "
                     f"crack patches of missed crack photos: {cracks or 'none'}.")  # fmt: skip
    return ["", *lines] if lines else []


def short(key: str) -> str:
    """A patch's class folder and file name: enough to find it in the data set."""
    return "/".join(Path(key).parts[-2:])


def totals(runs: list[dict[str, Any]]) -> list[str]:
    """One line per runtime scored with several seeds: its photos summed, and how many seeds met the bar."""
    from crack_model.evaluation.photo_check import threshold_rose

    lines = []
    for runtime in dict.fromkeys(run["runtime"] for run in runs):
        mine = [run for run in runs if run["runtime"] == runtime]
        if len(mine) < 2:
            continue

        def total(key: str, rows: list[dict[str, Any]] = mine) -> int:
            return sum(run[key] for run in rows)

        if all(threshold_rose(run) for run in mine):
            lines.append(
                f"| {runtime} | all {len(mine)} | | | not risen | "
                f"{sum(run['without_rise']['false_alarms'] for run in mine)} of {total('clean_mosaics')} | "
                f"{sum(run['without_rise']['found'] for run in mine)} of {total('crack_mosaics')} | | | |"
            )
        if all(confirmed(run) for run in mine):
            lines.append(
                f"| {runtime} | all {len(mine)} | | | not confirmed | "
                f"{sum(run['without_confirmation']['false_alarms'] for run in mine)} of {total('clean_mosaics')} | "
                f"{sum(run['without_confirmation']['found'] for run in mine)} of {total('crack_mosaics')} | | | |"
            )
        lines.append(
            f"| {runtime} | all {len(mine)} | | | photo rule | {total('false_alarms')} of {total('clean_mosaics')} | "
            f"{total('found')} of {total('crack_mosaics')} | "
            f"{total('crack_patches_in_marked_tiles')} of {total('crack_patches')} | "
            f"{sum(run['meets_bar'] for run in mine)} of {len(mine)} seeds | {total('seconds'):.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by crack-model train")
    parser.add_argument("--runtimes", default="auto", help="comma-separated: auto, keras, litert-fp32, litert-int8")
    parser.add_argument("--split", default="test", choices=["test", "validation"], help="patches to build from")
    parser.add_argument("--grid", default="8x10", help="rows x columns of patches per photo (default 8x10)")
    parser.add_argument("--clean", type=int, default=40, help="clean photos (default 40)")
    parser.add_argument("--with-cracks", type=int, default=40, help="photos with 1-3 crack patches (default 40)")
    parser.add_argument("--seed", default="1",
                        help="mosaic seed, or several comma-separated, each 40+40 new photos of the same test "
                             "patches (training's test figures use 1)")  # fmt: skip
    parser.add_argument("--name", default="mosaics", help="results file name (default mosaics)")
    args = parser.parse_args(argv)
    from crack_model.core.model_card import ModelCard
    from crack_model.serving.photo_decision import PhotoRule

    card = ModelCard.load(args.model)
    rows, columns = (int(part) for part in args.grid.lower().split("x"))
    results: dict[str, Any] = {
        "model": str(args.model),
        "model_version": card.version,
        "rule": PhotoRule.of(card).describe(),
        "photo_calibration": card.photo_calibration,
        "runs": [
            measure(args.model, runtime, args.split, (rows, columns), args.clean, args.with_cracks, int(seed))
            for runtime in args.runtimes.split(",")
            for seed in args.seed.split(",")
        ],
    }
    write_results(args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
