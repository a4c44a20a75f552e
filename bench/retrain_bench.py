"""Retraining speed: the seed notebook's loop vs training the head on cached base features.

10 epochs on the 2,000-image real sample, same split, same settings, early stopping off so
every variant runs all epochs. Reports wall time and test-split (holdout) accuracy for:
uncached (augmentation inside the model, base forward pass every epoch), cached with a cold
cache (features computed once, then the head trains), and cached with a warm cache (a
retraining run that reuses the pool). Writes ``bench/results/retrain.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench.run import PROJECT, RESULTS, SAMPLE, WEIGHTS


def timed_training(output: Path, cache: Path | None, epochs: int) -> dict[str, float]:
    from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
    from crack_model.training.train import train

    started = time.perf_counter()
    run = train(
        SAMPLE, output, DataConfig(), ModelConfig(weights=WEIGHTS),
        TrainConfig(epochs=epochs, early_stopping_patience=epochs), verbose=0, export_runtimes=False,
        feature_cache_dir=cache, photo_mosaics=None,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    test = run.metrics["test"]
    return {
        "seconds": round(seconds, 1),
        "epochs_run": len(run.history["loss"]),
        "test_accuracy": test["accuracy"],
        "test_crack_recall": test["crack_recall"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=PROJECT / "build" / "bench-retrain")
    args = parser.parse_args(argv)
    cache = args.work / "feature-cache"
    shutil.rmtree(cache, ignore_errors=True)
    results = {
        "images": 2000,
        "epochs": args.epochs,
        "uncached": timed_training(args.work / "uncached", None, args.epochs),
        "cached_cold": timed_training(args.work / "cached-cold", cache, args.epochs),
        "cached_warm": timed_training(args.work / "cached-warm", cache, args.epochs),
    }
    for variant in ("cached_cold", "cached_warm"):
        results[f"speedup_{variant}"] = round(results["uncached"]["seconds"] / results[variant]["seconds"], 1)
        results[f"accuracy_points_{variant}"] = round(
            100 * (results[variant]["test_accuracy"] - results["uncached"]["test_accuracy"]), 2
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrain.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
