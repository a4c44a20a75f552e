"""``make bench``: scoring speed on real photos, every runtime, local store and loopback S3.

One run, same images, same machine. Reports images per second for
(a) the notebook loop: one ``model.predict(image[None])`` per image;
(b) each runtime alone on pre-decoded tensors in memory (that runtime's ceiling);
(c) the scoring engine end to end from a local store;
(d) the scoring engine end to end from S3 over HTTP (moto's server on loopback, own process);
plus agreement between runtimes, memory for small vs large batches, the input size
choice (160 vs 224: crack recall on the test split and speed), and the peak memory of scoring
and profiling giant, thin and phone-size uploads (``bench/memory_bench.py``). Results go to
``bench/results/latest.json`` and ``bench/results/latest.md``.

``--only memory`` runs the memory cases alone (results in ``bench/results/memory.json`` and ``memory.md``;
with ``--memory-max-tiles N`` at that tile budget, in ``memory-tiles<N>.json`` and ``.md``);
``--only nightly`` the nightly path at crack rates of 15% and 50% and on 12 MP photos against the model
alone (``bench/nightly_bench.py``; ``nightly.json``, ``nightly.md``); ``--only retrain`` retraining with a
cold and a warm feature cache against the notebook loop (``bench/retrain_bench.py``; ``retrain.json``).
A whole run does all of them. ``--only runtimes [--model DIR]`` prints (b) alone for each runtime of one
model: whether int8, which scoring's ``auto`` takes, is the fastest on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from crack_model.core.tiling import DEFAULT_MAX_TILES

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
SAMPLE = SHARED / "data" / "metu-sample"
WEIGHTS = os.environ.get(
    "CRACK_MODEL_WEIGHTS", str(SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
)
RESULTS = PROJECT / "bench" / "results"


def write_results(name: str, results: dict[str, Any], text: str) -> None:
    """``bench/results/<name>.json`` and ``<name>.md``, and the markdown on standard output."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    sys.stdout.write(text)


def sample_files(count: int) -> list[Path]:
    per_class = count // 2
    return [path for name in ("Positive", "Negative") for path in sorted((SAMPLE / name).glob("*.jpg"))[:per_class]]


def trained_model(size: int, work: Path) -> Path:
    """Train (once, then reuse) the default model at this input size on the real sample."""
    out = work / f"model-{size}"
    if not (out / "model_int8.tflite").is_file():
        from crack_model.core.config import DataConfig, ModelConfig
        from crack_model.training.train import train

        print(f"training the {size} px model on {SAMPLE} (once; reused by later runs)", flush=True)
        train(SAMPLE, out, DataConfig(image_size=size), ModelConfig(weights=WEIGHTS), verbose=0)
    return out


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def naive_loop(model_dir: Path, pixels: np.ndarray) -> float:
    import keras

    model = keras.models.load_model(model_dir / "model.keras", compile=False)
    model.predict(pixels[:1], verbose=0)
    started = time.perf_counter()
    for image in pixels:
        model.predict(image[None].astype("float32"), verbose=0)
    return rate(len(pixels), time.perf_counter() - started)


def runtime_ceiling(model_dir: Path, runtime: str, pixels: np.ndarray) -> float:
    """The runtime alone on decoded pixels, at its best batch size and thread layout (``nightly_bench.model_only``)."""
    from bench.nightly_bench import model_only
    from crack_model.serving.scorer import load_scorer

    return model_only(load_scorer(model_dir, runtime=runtime), pixels)


def engine(store_uri: str, model_dir: Path, runtime: str, batch_id: str) -> float:
    from crack_model.serving.batch import score_shard
    from crack_model.serving.scorer import load_scorer

    scorer = load_scorer(model_dir, runtime=runtime)
    scorer.class_probabilities(np.zeros((64, scorer.card.image_size, scorer.card.image_size, 3), np.uint8))
    best = 0.0
    for _ in range(2):  # best of 2, as for the ceiling
        report = score_shard(store_uri, batch_id, scorer, overlays=False, force=True)
        best = max(best, rate(report.images, report.seconds))
    return best


def agreement(model_dir: Path, files: list[Path]) -> list[dict[str, Any]]:
    from crack_model.data.labeled import LabeledImage
    from crack_model.training.export import compare_runtimes

    images = [LabeledImage(str(path), path.parent.name) for path in files]
    return [check.as_dict() for check in compare_runtimes(model_dir, images, ["litert-fp32", "litert-int8"])]


def peak_memory_mb(store: Path, model_dir: Path, batch_id: str) -> float:
    """Peak RSS (VmHWM) of a separate scoring process, so earlier work in this one does not count."""
    code = (
        "from crack_model.serving.batch import score_shard\n"
        f"score_shard({str(store)!r}, {batch_id!r}, {str(model_dir)!r}, overlays=False, force=True)\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT)
    return round(int(output.stdout.strip().splitlines()[-1]) / 1024, 1)


def start_s3_server() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in its own process, so its Python work does not share our GIL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto_server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400, help="real photos per measurement (default 400)")
    parser.add_argument("--naive-images", type=int, default=100, help="photos for the slow per-image loop")
    parser.add_argument("--work", type=Path, default=PROJECT / "build" / "bench")
    parser.add_argument("--only", choices=["memory", "nightly", "retrain", "runtimes"], help="run one section alone")
    parser.add_argument("--model", type=Path, help="--only runtimes: this trained model folder (default: train one)")
    parser.add_argument("--nightly-images", type=int, default=4000, help="patches per nightly batch (default 4000)")
    parser.add_argument("--nightly-photos", type=int, default=12, help="12 MP photos in the nightly photo batch")
    parser.add_argument("--nightly-image-size", type=int, default=224,
                        help="the nightly section's model input size (default 224; another size writes "
                             "nightly-<size>px.json)")  # fmt: skip
    parser.add_argument("--memory-max-tiles", type=int, default=DEFAULT_MAX_TILES,
                        help="--only memory: score and profile at this tile budget (score --max-tiles; another "
                             "budget than 512 writes memory-tiles<N>.json)")  # fmt: skip
    args = parser.parse_args(argv)
    if not SAMPLE.is_dir() or not Path(WEIGHTS).is_file():
        print(f"bench needs the real sample at {SAMPLE} and weights at {WEIGHTS}", file=sys.stderr)
        return 2
    if args.only == "memory":
        return memory_only(args.work, args.memory_max_tiles)
    if args.only == "nightly":
        return nightly_only(args)
    if args.only == "runtimes":
        return runtimes_only(args)
    if args.only == "retrain":
        from bench.retrain_bench import main as retrain_main

        return retrain_main([])
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from crack_model.core.imaging import decode_to_array
    from crack_model.core.local_store import LocalStore
    from crack_model.core.storage import open_store

    args.work.mkdir(parents=True, exist_ok=True)
    files = sample_files(args.images)
    server, os.environ["AWS_ENDPOINT_URL"] = start_s3_server()
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench")
    local = LocalStore(args.work / "store")
    s3 = open_store("s3://bench")
    for path in files:
        for store in (local, s3):
            store.write(f"incoming/speed/{path.parent.name}/{path.name}", path.read_bytes())
    for copy in range(10):  # the memory check: 10x the objects
        for path in files:
            local.write(f"incoming/big/{copy}/{path.parent.name}/{path.name}", path.read_bytes())

    results: dict[str, Any] = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "images": len(files),
        "sizes": {},
    }
    for size in (224, 160):
        model_dir = trained_model(size, args.work)
        pixels = np.stack([decode_to_array(path.read_bytes(), size) for path in files])
        metrics = json.loads((model_dir / "metrics.json").read_text())["test"]
        entry: dict[str, Any] = {
            "test_crack_recall": metrics["crack_recall"],
            "test_accuracy": metrics["accuracy"],
            "test_images": metrics["images"],
            "naive_predict_per_image": naive_loop(model_dir, pixels[: args.naive_images]),
            "model_only": {},
            "engine_local": {},
            "engine_s3": {},
        }
        for runtime in ("keras", "litert-fp32", "litert-int8"):
            print(f"{size} px {runtime}", flush=True)
            entry["model_only"][runtime] = runtime_ceiling(model_dir, runtime, pixels)
            entry["engine_local"][runtime] = engine(str(local.root), model_dir, runtime, "speed")
            entry["engine_s3"][runtime] = engine("s3://bench", model_dir, runtime, "speed")
        fastest = max(entry["engine_local"], key=entry["engine_local"].get)
        entry["engine_vs_ceiling"] = {
            runtime: round(entry["engine_local"][runtime] / entry["model_only"][runtime], 3)
            for runtime in entry["model_only"]
        }
        entry["fastest_engine_vs_naive"] = round(entry["engine_local"][fastest] / entry["naive_predict_per_image"], 1)
        entry["runtime_agreement"] = agreement(model_dir, files)
        if size == 224:
            entry["peak_rss_mb"] = {
                f"{len(files)} objects": peak_memory_mb(local.root, model_dir, "speed"),
                f"{10 * len(files)} objects": peak_memory_mb(local.root, model_dir, "big"),
            }
        results["sizes"][str(size)] = entry
    server.terminate()

    from bench.memory_bench import measure_memory

    results["memory"] = measure_memory(trained_model(224, args.work), args.work)
    nightly_only(args)

    profile_bench = PROJECT / "bench" / "profile_bench.py"
    if profile_bench.is_file():
        from bench.profile_bench import measure_profiling

        results["profiling"] = measure_profiling(str(local.root), "speed")

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(markdown(results))
    print(markdown(results))
    from bench.retrain_bench import main as retrain_main

    return retrain_main([])


def runtimes_only(args: argparse.Namespace) -> int:
    """Each runtime alone on decoded real patches, at its fastest layout: is int8, which ``auto`` takes, the fastest
    on this CPU? (On an AMD EPYC without AVX-512 it was not: README, Runtimes.)"""
    from crack_model.core.imaging import decode_to_array

    model_dir = args.model or trained_model(224, args.work)
    size = json.loads((model_dir / "model.json").read_text())["image_size"]
    files = sample_files(args.images)
    pixels = np.stack([decode_to_array(path.read_bytes(), size) for path in files])
    for runtime in ("litert-int8", "litert-fp32", "keras"):
        rate_alone = runtime_ceiling(model_dir, runtime, pixels)
        print(f"{runtime}: {rate_alone} images/s (the model alone, {len(files)} real patches at {size} px)", flush=True)
    return 0


def nightly_only(args: argparse.Namespace) -> int:
    """The nightly path against the model alone (a model trained once); nightly.json and nightly.md.

    The default model's size is 224 px; another ``--nightly-image-size`` writes nightly-<size>px.*, so the
    default's figures stay.
    """
    from bench.nightly_bench import markdown_nightly, measure_nightly

    size = args.nightly_image_size
    args.work.mkdir(parents=True, exist_ok=True)
    nightly = measure_nightly(trained_model(size, args.work), args.work, images=args.nightly_images,
                              photos=args.nightly_photos)  # fmt: skip
    results = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "image_size": size,
        "nightly": nightly,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "nightly" if size == 224 else f"nightly-{size}px"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown_nightly(nightly))
    print(markdown_nightly(nightly))
    return 0


def memory_only(work: Path, max_tiles: int = DEFAULT_MAX_TILES) -> int:
    """The memory section alone: the 224 px model (trained once), the four cases, at one tile budget."""
    from bench.memory_bench import markdown_memory, measure_memory

    work.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "max_tiles": max_tiles,
        "memory": measure_memory(trained_model(224, work), work, max_tiles),
    }
    name = "memory" if max_tiles == DEFAULT_MAX_TILES else f"memory-tiles{max_tiles}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown_memory(results["memory"]))
    print(markdown_memory(results["memory"]))
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Images per second on {results['machine']['cpu_count']} cores, {results['images']} real 227x227 photos.",
        "",
        "| input | runtime | model only (b) | engine, local (c) | engine, S3 (d) | engine / model only |",
        "|---|---|---|---|---|---|",
    ]
    for size, entry in results["sizes"].items():
        lines.append(f"| {size} px | naive per-image `predict` (a) | {entry['naive_predict_per_image']} | | | |")
        for runtime, ceiling in entry["model_only"].items():
            lines.append(
                f"| {size} px | {runtime} | {ceiling} | {entry['engine_local'][runtime]} | "
                f"{entry['engine_s3'][runtime]} | {entry['engine_vs_ceiling'][runtime]:.0%} |"
            )
    lines += ["", "| input | test crack recall | test accuracy | fastest engine vs naive | int8 label agreement |",
              "|---|---|---|---|---|"]  # fmt: skip
    for size, entry in results["sizes"].items():
        int8 = next(c for c in entry["runtime_agreement"] if c["runtime"] == "litert-int8")
        lines.append(
            f"| {size} px | {entry['test_crack_recall']:.4f} | {entry['test_accuracy']:.4f} | "
            f"{entry['fastest_engine_vs_naive']}x | {int8['label_agreement']:.4f} "
            f"(max prob. diff {int8['max_probability_difference']:.3f}) |"
        )
    memory = results["sizes"].get("224", {}).get("peak_rss_mb")
    if memory:
        lines += ["", "Peak memory of a scoring process: " + ", ".join(f"{k}: {v} MB" for k, v in memory.items())]
    if "profiling" in results:
        lines += ["", f"Profiling + validation: {results['profiling']}"]
    if "memory" in results:
        from bench.memory_bench import markdown_memory

        lines += ["", "Peak memory (resident, per process) on hostile uploads:", "", markdown_memory(results["memory"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
