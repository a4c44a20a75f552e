"""``make demo``: the real DAGs, run with ``dag.test()`` on the embedded defaults.

A local folder is the object store and SQLite is Airflow's database: no servers, no cloud
account. The store is seeded with the shipped real sample (a labeled pool, a holdout, a night
of uploads with a few broken files, and a batch of blank frames), then:

1. ``crack_retraining``: validate the pool, train, gate on the holdout; the first model
   passes the floors and becomes champion;
2. ``crack_nightly_scoring``: validate each new batch, quarantine what is broken, fail the
   blank batch, score the rest with the champion, write results next to the uploads.

Uses the offline ImageNet weights named by $CRACK_MODEL_WEIGHTS when set (the Makefile sets it
when the file is beside the project), else Keras downloads them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from demo.airflow_env import airflow_environment, migrate, run_dag
from demo.seed import seed_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/demo"))
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    out = args.out.absolute()
    store = out / "store"
    if out.exists():
        shutil.rmtree(out)
    counts = seed_store(str(store))
    print(f"store {store}: {counts['labeled']} labeled, {counts['holdout']} holdout, {counts['incoming']} uploads")
    environment = airflow_environment(out / "airflow")
    migrate(environment)
    weights = os.environ.get("CRACK_MODEL_WEIGHTS", "imagenet")
    for dag_id, conf in (
        ("crack_retraining", {"store": str(store), "weights": weights, "epochs": args.epochs}),
        ("crack_nightly_scoring", {"store": str(store)}),
    ):
        started = time.perf_counter()
        print(f"\n=== dag.test({dag_id}) ...", flush=True)
        result = run_dag(dag_id, conf, environment)
        print(f"{dag_id}: {result['state']} in {time.perf_counter() - started:.0f} s")
        for task, state in sorted(result["tasks"].items()):
            print(f"  {task:<28} {state}")
        if result["state"] != "success":
            return 1
    report(store)
    return 0


def report(store: Path) -> None:
    """Where everything went."""
    aliases = json.loads((store / "models/crack/aliases.json").read_text())
    champion = aliases["aliases"]["champion"]
    version_dir = store / "models/crack/versions" / champion
    gate = json.loads((version_dir / "gate_report.json").read_text())
    summary = json.loads((store / "results/2026-11-24/summary.json").read_text())
    blank = json.loads((store / "validation/blank-frames/outcome.json").read_text())
    print(f"\nDemo done. Champion {champion}: gate decision {gate['decision']}.")
    print(
        f"Night 2026-11-24: {summary['objects']} uploads, {summary['status_counts']}, crack rate "
        f"{summary['crack_rate']:.0%}, {summary['throughput_images_per_second']} img/s ({summary['runtime']})."
    )
    print(f"Batch blank-frames: validation {blank['outcome']}, not scored.")
    for label, path in (
        ("model version folder", version_dir),
        ("gate report", version_dir / "gate_report.html"),
        ("predictions", store / "results/2026-11-24/predictions.csv"),
        ("summary", store / "results/2026-11-24/summary.json"),
        ("crack overlays", store / "results/2026-11-24/overlays"),
        ("validation report", store / "validation/2026-11-24/report.html"),
        ("quarantined uploads", store / "quarantine/2026-11-24"),
        ("failed batch report", store / "validation/blank-frames/report.html"),
        ("run summaries", store / "runs"),
    ):
        print(f"  {label:<22} {path}")
    print("See it in the Airflow UI: make airflow  (then open the 'Crack ops' view)")


if __name__ == "__main__":
    sys.exit(main())
