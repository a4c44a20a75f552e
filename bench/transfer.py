"""Another surface, never trained on: how augmentation changes what a METU-only model finds there.

For each augmentation recipe and seed, the default recipe (30 epochs, 2 augmented views, seam examples)
trains on the METU sample with that seed's split, on cached features, without export or photo
rule. Its own threshold (chosen on its validation split, as training does) then labels every
photo of ``--other`` (default ``site-b-pavement``: 1,000 photos of pavement and plastered walls).
Reported per run and summed over seeds: missed cracks and false alarms there, ROC AUC, and the
METU test split's figures.

    python -m bench.transfer --recipes flips,zoom,zoom-light --seeds 0,1,2,3,4

Recipes: ``flips`` (flips and rotations only: the augmentation before zoom), ``zoom`` (and zoom 0.3: the default),
``zoom-light`` (zoom 0.3, brightness 0.2 and contrast 0.3), ``default`` (``ModelConfig``'s defaults).

Writes ``bench/results/transfer.json`` and ``transfer.md`` (``--name`` changes the file names).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.run import PROJECT, SAMPLE, WEIGHTS, write_results

OTHER = SAMPLE.parent / "site-b-pavement"
RECIPES: dict[str, dict[str, float]] = {
    "flips": {"zoom_factor": 0.0, "brightness_factor": 0.0, "contrast_factor": 0.0},
    "zoom": {"zoom_factor": 0.3},
    "zoom-light": {"zoom_factor": 0.3, "brightness_factor": 0.2, "contrast_factor": 0.3},
    "default": {},
}


def measure(recipe: str, seed: int, other: Path, work: Path, cache: Path) -> dict[str, Any]:
    import keras
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
    from crack_model.data.labeled import load_labeled
    from crack_model.training.features import predict_from_features
    from crack_model.training.train import train

    data_config, model_config = DataConfig(seed=seed), ModelConfig(weights=WEIGHTS, **RECIPES[recipe])
    started = time.perf_counter()
    run = train(SAMPLE, work / f"{recipe}-seed{seed}", data_config, model_config, TrainConfig(epochs=30),
                verbose=0, export_runtimes=False, feature_cache_dir=cache, augmented_views=2,
                photo_mosaics=None)  # fmt: skip
    classifier = keras.models.load_model(run.output_dir / "model.keras")
    photos = load_labeled(other, data_config)
    crack = np.array([photo.label == data_config.crack_class for photo in photos])
    probability = predict_from_features(classifier, photos, data_config, model_config, cache)[
        :, data_config.crack_index
    ]
    labeled_crack = probability >= run.card.threshold
    test = run.metrics["test"]
    return {
        "recipe": recipe,
        "augmentation": RECIPES[recipe],
        "seed": seed,
        "threshold": run.card.threshold,
        "other": {
            "photos": len(photos),
            "accuracy": float((labeled_crack == crack).mean()),
            "crack_recall": float(labeled_crack[crack].mean()),
            "missed_cracks": int((~labeled_crack[crack]).sum()),
            "false_alarms": int(labeled_crack[~crack].sum()),
            "roc_auc": float(roc_auc_score(crack, probability)),
        },
        "metu_test": {
            key: test[key]
            for key in ("images", "accuracy", "crack_recall", "missed_cracks", "false_alarms")
            if key in test
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"METU-only models on `{results['other']}`, each with its own threshold (chosen on its METU validation split).",
        "",
        "| augmentation | seed | threshold | accuracy there | crack recall there | missed cracks | false alarms "
        "| ROC AUC "
        "| METU test: missed / false alarms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        other, test = run["other"], run["metu_test"]
        lines.append(
            f"| {run['recipe']} | {run['seed']} | {run['threshold']:.4f} | {other['accuracy']:.3f} | "
            f"{other['crack_recall']:.3f} | {other['missed_cracks']} | {other['false_alarms']} | "
            f"{other['roc_auc']:.4f} | "
            f"{test.get('missed_cracks', '-')} / {test.get('false_alarms', '-')} |"
        )
    for recipe in dict.fromkeys(run["recipe"] for run in results["runs"]):
        mine = [run for run in results["runs"] if run["recipe"] == recipe]
        photos = sum(run["other"]["photos"] for run in mine)
        errors = sum(run["other"]["missed_cracks"] + run["other"]["false_alarms"] for run in mine)
        lines.append(
            f"| **{recipe}** | all {len(mine)} | | **{1 - errors / photos:.4f}** | | "
            f"**{sum(run['other']['missed_cracks'] for run in mine)}** | "
            f"**{sum(run['other']['false_alarms'] for run in mine)}** | "
            f"{sum(run['other']['roc_auc'] for run in mine) / len(mine):.4f} (mean) | "
            f"{sum(run['metu_test'].get('missed_cracks', 0) for run in mine)} / "
            f"{sum(run['metu_test'].get('false_alarms', 0) for run in mine)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="flips,default", help=f"comma-separated, of: {', '.join(RECIPES)}")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (split, head, augmented views)")
    parser.add_argument("--other", type=Path, default=OTHER, help="labeled folder of the other surface")
    parser.add_argument("--work", type=Path, default=PROJECT / "build" / "bench-transfer")
    parser.add_argument("--feature-cache", type=Path, default=Path.home() / ".cache" / "crack-model" / "features")
    parser.add_argument("--name", default="transfer", help="results file name (default transfer)")
    args = parser.parse_args(argv)
    runs = [
        measure(recipe, int(seed), args.other, args.work, args.feature_cache)
        for recipe in args.recipes.split(",")
        for seed in args.seeds.split(",")
    ]
    write_results(
        args.name, {"other": str(args.other), "runs": runs}, markdown({"other": args.other.name, "runs": runs})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
