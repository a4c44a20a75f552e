"""What the scoring engine costs besides the model: the nightly path with a model that costs nothing.

    .venv/bin/python -m bench.pipeline_overhead [--images 4000] [--threads 1,2,8]

The nightly bench (``nightly_bench.py``) compares the engine with the model alone; how close it
gets depends on the machine: where the model is slow (int8 without AVX-512 VNNI: ~170 patches/s
here) the engine's own work is a few percent, where it is fast (1,100 patches/s) a fifth. This
measures that work itself: ``score_images`` over real 227-px patches from a local store, the
runtime replaced by one that returns zeros at once, for each number of fetching threads, each
run in a fresh process. It reports patches/s, the process's CPU per patch (user + system) and its
voluntary context switches per patch (threads handing work to each other), the median of
``--repeats`` runs. Results: ``bench/results/pipeline-overhead.{json,md}`` (``--name`` to change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results"

RUN = """
import json, resource, sys, time
import numpy as np
from crack_model.core.storage import open_store
from crack_model.serving import inference
from crack_model.serving.scorer import Scorer, load_scorer

class Free:
    name, fixed_batch, preferred_batch = "free", False, 16
    def predict(self, pixels):
        return np.zeros((len(pixels), 2), np.float32)

store_root, model_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(store_root)
listed = list(store.list("incoming/"))
keys = sorted(info.key for info in listed)
sizes = {info.key: info.size for info in listed}  # listed sizes, as score_shard passes them
inference.copies = lambda runtime, count: [runtime]
scorer = Scorer(load_scorer(model_dir).card, Free(), model_dir)
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
count = sum(1 for score in inference.score_images(keys, store.read, scorer, workers=threads,
                                                       object_sizes=sizes) if score.status == "ok")
seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
print(json.dumps({"images": count, "images_per_second": count / seconds, "cpu_ms_per_image": 1e3 * cpu / count,
                  "switches_per_image": (after.ru_nvcsw - before.ru_nvcsw) / count}))
"""


def run_once(store: Path, model_dir: Path, threads: int) -> dict[str, float]:
    command = [sys.executable, "-c", RUN, str(store), str(model_dir), str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=PROJECT)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def measure(store: Path, model_dir: Path, threads: list[int], repeats: int) -> dict[str, Any]:
    cases = {}
    for count in threads:
        runs = [run_once(store, model_dir, count) for _ in range(repeats)]
        cases[str(count)] = {
            name: round(statistics.median(run[name] for run in runs), 3)
            for name in ("images_per_second", "cpu_ms_per_image", "switches_per_image")
        } | {"runs": runs}
    return cases


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Scoring engine without a model (`score_images`, runtime returning zeros), {result['images']} real "
        f"227-px patches from a local store; median of {result['repeats']} fresh processes.",
        "",
        "| fetching threads | patches/s | CPU ms per patch | context switches per patch |",
        "|---|---|---|---|",
    ]
    for threads, case in result["cases"].items():
        lines.append(f"| {threads} | {case['images_per_second']:.0f} | {case['cpu_ms_per_image']:.3f} | "
                     f"{case['switches_per_image']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from bench.nightly_bench import build_patch_batch
    from bench.run import trained_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--threads", default="1,2,8", help="numbers of fetching threads to compare")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=PROJECT / "build" / "bench")
    parser.add_argument("--name", default="pipeline-overhead")
    args = parser.parse_args(argv)
    store = args.work / "overhead-store"
    build_patch_batch(store, "patches", args.images, 0.5)
    model_dir = trained_model(224, args.work)
    threads = [int(value) for value in args.threads.split(",")]
    result = {"images": args.images, "repeats": args.repeats,
              "cases": measure(store, model_dir, threads, args.repeats)}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
