"""Retraining from the champion against retraining afresh, over several splits.

For each split seed (``bench.adaptation``'s pools: the METU sample minus a 15 % holdout, plus N site-b
photos, half cracks), the METU-only model is trained first: the champion. Then the candidate with the
site photos is trained afresh and, for each ``--anchor-weights`` value, from the champion's head pulled
toward it with that weight (training/warm_start.py). Every model is scored at its own threshold on the
same unseen images: the site-b photos outside the picked groups and the METU holdout. What decides is
whether a candidate misses cracks the champion found: the gate's crack-recall no-regression check.

About 2-3 minutes per split with a warm feature cache. Writes ``bench/results/<name>.json`` and ``.md``.

    .venv/bin/python -m bench.warm_start [--seeds 7 8 9 10 11] [--anchor-weights 0 0.01 0.1] [--site-photos 100]
        [--training-seeds 43 44]  # each split trained again with other draws (train/validation split, shuffling)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.adaptation import curve_point, pick_site_photos, split_pools
from bench.run import PROJECT, write_results

KEYS = ("missed_cracks", "false_alarms", "accuracy", "crack_recall")


def split_run(seed: int, site_photos: int, anchor_weights: list[float], work: Path, cache: Path,
              crack_weight: float, training_seed: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The champion, the fresh candidate and each anchored candidate of one split, scored.

    ``training_seed``: every model's DataConfig.seed (its train/validation split and random streams;
    None: the default's), so that a split can be trained again with other draws.
    """
    metu_pool, groups, evaluation = split_pools(seed, site_photos)
    site_pool = pick_site_photos(groups, site_photos)
    options = {"cache": cache, "views": 2, "epochs": 30, "balance": 1.0, "crack_weight": crack_weight,
               "training_seed": training_seed}  # fmt: skip
    run = work / (f"s{seed}" if training_seed is None else f"s{seed}-t{training_seed}")
    models: dict[str, Any] = {"champion": curve_point(0, metu_pool, [], evaluation, run, **options)}
    champion_dir = run / "model-0"
    models["afresh"] = curve_point(site_photos, metu_pool, site_pool, evaluation, run / "afresh", **options)
    for weight in anchor_weights:
        models[f"anchor {weight:g}"] = curve_point(site_photos, metu_pool, site_pool, evaluation,
                                                   run / f"anchor{weight:g}", **options,
                                                   start_from=champion_dir, anchor_weight=weight)  # fmt: skip
    figures = {name: {part: {key: point[part][key] for key in KEYS} for part in ("site_b_rest", "metu_holdout")}
               | {"threshold": point["threshold"]} for name, point in models.items()}  # fmt: skip
    print(json.dumps({"seed": seed, "training_seed": training_seed, "models": figures}), flush=True)
    return {"seed": seed, "training_seed": training_seed, "site_b_images": len(evaluation["site_b_rest"]),
            "models": figures}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    names = list(results["splits"][0]["models"])
    lines = [
        f"Champion: the METU-only model of each split. Candidates: METU plus {results['site_photos']} site-b photos, "
        f"crack weight {results['crack_weight']:g}, trained afresh or from the champion's head with each anchor "
        "weight. Site-b: unseen site-b photos; METU: the 300-patch METU holdout. Cells: missed cracks / false alarms.",
        "",
        "| split | " + " | ".join([f"{name} site-b" for name in names] + [f"{name} METU" for name in names]) + " |",
        "|---" * (2 * len(names) + 1) + "|",
    ]
    totals = {name: [0, 0, 0, 0] for name in names}
    for split in results["splits"]:
        cells = []
        for part in ("site_b_rest", "metu_holdout"):
            for name in names:
                figures = split["models"][name][part]
                cells.append(f"{figures['missed_cracks']} / {figures['false_alarms']}")
                offset = 0 if part == "site_b_rest" else 2
                totals[name][offset] += figures["missed_cracks"]
                totals[name][offset + 1] += figures["false_alarms"]
        drawn = f", training seed {split['training_seed']}" if split.get("training_seed") is not None else ""
        lines.append(f"| {split['seed']}{drawn} ({split['site_b_images']} site-b) | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{totals[n][0]} / {totals[n][1]}" for n in names) + " | "
                 + " | ".join(f"{totals[n][2]} / {totals[n][3]}" for n in names) + " |")  # fmt: skip
    worse = {name: sum(split["models"][name]["site_b_rest"]["missed_cracks"]
                       > split["models"]["champion"]["site_b_rest"]["missed_cracks"] for split in results["splits"])
             for name in names if name != "champion"}  # fmt: skip
    lines += ["", "Splits where the candidate missed more site-b cracks than its champion: "
              + ", ".join(f"{name} {count}" for name, count in worse.items()) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from crack_model.core.cache import cache_root

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9, 10, 11])
    parser.add_argument("--anchor-weights", type=float, nargs="+", default=[0.0, 0.01, 0.1])
    parser.add_argument("--site-photos", type=int, default=100)
    parser.add_argument(
        "--training-seeds",
        type=int,
        nargs="+",
        default=[None],
        help="train each split once per DataConfig seed (default: once, with the default seed)",
    )
    parser.add_argument("--crack-weight", type=float, default=3.0, help="bar 2's recipe (default: 3)")
    parser.add_argument("--name", default="warm-start")
    parser.add_argument("--work", type=Path, default=PROJECT / "build" / "bench-warm-start")
    parser.add_argument("--cache", type=Path, default=cache_root() / "features")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"site_photos": args.site_photos, "crack_weight": args.crack_weight,
                               "anchor_weights": args.anchor_weights, "splits": []}  # fmt: skip
    for seed in args.seeds:
        for training_seed in args.training_seeds:
            results["splits"].append(split_run(seed, args.site_photos, args.anchor_weights, args.work, args.cache,
                                               args.crack_weight, training_seed))  # fmt: skip
    write_results(args.name, results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
