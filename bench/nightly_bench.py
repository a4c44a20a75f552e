"""Speed of the path a night really takes: ``score_shard`` as the DAG calls it, against the model alone.

``measure_nightly(model_dir, work)`` is what ``bench/run.py`` calls; alone:

    .venv/bin/python -m bench.run --only nightly

Every engine run is a fresh process (``score_shard`` with the DAG's arguments: default workers,
batch size, runtime ``auto``, no overlay drawn, tile scores kept), which prints its rate and its
peak resident memory (VmHWM). The model-only ceiling is measured in this process on pixels
decoded beforehand: first, for each case, the layout at which the runtime alone is fastest here (batch of 16, 32
or 64; one interpreter on every core or one single-threaded copy per core), then, at that layout,
right before and right after each engine run, and the higher of the two counts. Each case runs
five times and reports the median of the five ratios (every rate recorded). Paired like this,
a machine whose speed drifts (on a shared host the model alone measured 354-436 patches/s within
one run) slows the engine and its ceiling alike; the earlier way, the fastest of two engine runs
against the fastest of 24 ceiling measurements, counted the drift against the engine. Cases:

- real 227x227 patches (the 2,000 of the METU sample, repeated under distinct names with a
  changed byte so no two objects are the same) at crack rates of 15% and 50%: images/s, and
  the old path (``overlays=True``, each crack image drawn inline) at 50% for comparison;
- 12-megapixel photos (4032x3024 JPEGs tiled from real patches, as ``memory_bench`` builds
  them): tiles/s end to end against the model's tiles/s on tiles cut beforehand;
- an overlay drawn on demand (``overlay_png``) and read back once stored, and
  ``crack-model overlays`` over a whole batch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT.parent / "shared" / "data" / "metu-sample"
CRACK_RATES = (0.15, 0.5)
CEILING_IMAGES = 400  # pixels the model-only ceiling is measured on (tiles of one photo for photos)
# Engine runs per case, each paired with the ceiling measured right before and after it; the median counts.
ENGINE_REPEATS = 5

ENGINE = """
import json, sys
import numpy as np
from crack_model.serving.batch import score_shard
from crack_model.serving.scorer import load_scorer
store, batch_id, model_dir, overlays = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
scorer = load_scorer(model_dir)
size = scorer.card.image_size
scorer.class_probabilities(np.zeros((scorer.runtime.preferred_batch, size, size, 3), np.uint8))
report = score_shard(store, batch_id, scorer, overlays=overlays, force=True, finalize=True)
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"images": report.images, "seconds": report.seconds, "runtime": scorer.runtime.name,
                  "peak_mb": peak}))
"""


def patch_files() -> dict[str, list[Path]]:
    return {name: sorted((SAMPLE / name).glob("*.jpg")) for name in ("Positive", "Negative")}


def build_patch_batch(root: Path, batch_id: str, images: int, crack_rate: float) -> None:
    """``images`` real patches, ``crack_rate`` of them cracks, each object distinct (once per batch id)."""
    folder = root / "incoming" / batch_id
    if folder.is_dir():
        return
    folder.mkdir(parents=True)
    files = patch_files()
    cracks = round(images * crack_rate)
    for index in range(images):
        name = "Positive" if index < cracks else "Negative"
        source = files[name][index % len(files[name])]
        # Bytes after the JPEG's end are ignored by decoders: the pixels stay real, the hash unique.
        (folder / f"{name}-{index:06d}.jpg").write_bytes(source.read_bytes() + index.to_bytes(4, "big"))


def build_photo_batch(root: Path, batch_id: str, photos: int) -> None:
    from bench.memory_bench import phone_photo

    folder = root / "incoming" / batch_id
    if folder.is_dir():
        return
    folder.mkdir(parents=True)
    files = patch_files()
    patches = files["Positive"] + files["Negative"]
    for index in range(photos):
        (folder / f"photo-{index:03d}.jpg").write_bytes(phone_photo(patches, 1000 + index))


def run_engine(store: Path, batch_id: str, model_dir: Path, *, overlays: bool = False) -> dict[str, Any]:
    """One engine run in a fresh process: images, seconds, runtime and peak RSS."""
    command = [sys.executable, "-c", ENGINE, str(store), batch_id, str(model_dir), "1" if overlays else "0"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=PROJECT)
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def model_only(
    scorer: Any,
    pixels: np.ndarray,
    rounds: int = 2,
    batch_sizes: tuple[int, ...] = (16, 32, 64),
    copy_counts: tuple[int, ...] | None = None,
) -> float:
    """Inputs per second of the runtime alone on decoded pixels, at its best: batch sizes 16, 32 and 64,
    one interpreter on every core or one single-threaded copy per core (the engine's default)."""
    import os

    from crack_model.serving.inference_pool import InferencePool
    from crack_model.serving.runtimes import copies

    best = 0.0
    for count in copy_counts or sorted({1, os.cpu_count() or 1}):
        with InferencePool(copies(scorer.runtime, count)) as pool:
            for batch_size in batch_sizes:
                for _ in range(pool.capacity):  # every copy sees this batch shape before the clock starts
                    pool.submit(pixels[:batch_size])
                while pool.pending:
                    pool.take()
                for _ in range(rounds):
                    started = time.perf_counter()
                    for start in range(0, len(pixels), batch_size):
                        pool.submit(pixels[start : start + batch_size])
                        while pool.full:
                            pool.take()
                    while pool.pending:
                        pool.take()
                    best = max(best, len(pixels) / (time.perf_counter() - started))
    return round(best, 1)


def best_layout(scorer: Any, pixels: np.ndarray) -> tuple[int, int]:
    """(model copies, batch size) at which the runtime alone scores ``pixels`` fastest on this machine."""
    import os

    layouts = [(count, size) for count in sorted({1, os.cpu_count() or 1}) for size in (16, 32, 64)]
    rates = {
        (count, size): model_only(scorer, pixels, copy_counts=(count,), batch_sizes=(size,)) for count, size in layouts
    }
    return max(rates, key=lambda layout: rates[layout])


def paired_runs(
    scorer: Any, pixels: np.ndarray, store: Path, batch_id: str, model_dir: Path, *, inputs_per_object: int = 1,
    overlays: bool = False, repeats: int = ENGINE_REPEATS,
) -> dict[str, Any]:  # fmt: skip
    """Engine runs, each between two measurements of the model alone at its best layout; the median ratio.

    ``inputs_per_object``: model inputs per scored object (tiles per photo), so both rates count inputs.
    """
    copy_count, batch_size = best_layout(scorer, pixels)

    def ceiling() -> float:
        return model_only(scorer, pixels, copy_counts=(copy_count,), batch_sizes=(batch_size,))

    runs = []
    for _ in range(repeats):
        before = ceiling()
        run = run_engine(store, batch_id, model_dir, overlays=overlays)
        after = ceiling()
        rate = round(run["images"] * inputs_per_object / run["seconds"], 1)
        runs.append({**run, "rate": rate, "model_only_before_after": [before, after],
                     "ratio": round(rate / max(before, after), 3)})  # fmt: skip
    median = sorted(runs, key=lambda run: run["ratio"])[len(runs) // 2]
    return {
        "runtime": median["runtime"],
        "seconds": median["seconds"],
        "rate": median["rate"],
        "model_only": max(median["model_only_before_after"]),
        "engine_vs_model_only": median["ratio"],
        "ceiling_layout": {"copies": copy_count, "batch_size": batch_size},
        "peak_mb": max(run["peak_mb"] for run in runs),
        "runs": [{key: run[key] for key in ("rate", "model_only_before_after", "ratio")} for run in runs],
    }


def batch_stats(store: Path, batch_id: str) -> dict[str, Any]:
    summary = json.loads((store / "results" / batch_id / "summary.json").read_text())
    tile_bytes = sum(path.stat().st_size for path in (store / "results" / batch_id).rglob("*.tiles.jsonl"))
    overlays = list((store / "results" / batch_id / "overlays").rglob("*.png"))
    return {
        "crack_rate": summary["crack_rate"],
        "objects": summary["objects"],
        "tile_score_bytes_per_image": round(tile_bytes / max(summary["objects"], 1), 1),
        "overlays_written": len(overlays),
    }


def measure_patches(model_dir: Path, store: Path, images: int) -> dict[str, Any]:
    from crack_model.core.imaging import decode_to_array
    from crack_model.serving.scorer import load_scorer

    scorer = load_scorer(model_dir)
    files = patch_files()
    sample = [path for name in files for path in files[name][: CEILING_IMAGES // 2]]
    pixels = np.stack([decode_to_array(path.read_bytes(), scorer.card.image_size) for path in sample])
    cases: dict[str, Any] = {}
    for rate in CRACK_RATES:
        batch_id = f"nightly-{round(rate * 100)}"
        build_patch_batch(store, batch_id, images, rate)
        # The old path (overlays drawn inline) once, for comparison: it is far from the bar either way.
        variants = [("default", False, ENGINE_REPEATS)]
        if rate == max(CRACK_RATES):
            variants.append(("overlays inline", True, 1))
        for variant, overlays, repeats in variants:
            print(f"nightly: {images} patches, crack rate {rate:.0%}, {variant}", flush=True)
            engine = paired_runs(scorer, pixels, store, batch_id, model_dir, overlays=overlays, repeats=repeats)
            cases[f"{rate:.0%} cracks, {variant}"] = {**engine, "images_per_second": engine["rate"],
                                                      **batch_stats(store, batch_id)}  # fmt: skip
    return {"images": images, "runtime": scorer.runtime.name, "cases": cases}


def measure_photos(model_dir: Path, store: Path, photos: int) -> dict[str, Any]:
    from crack_model.core.imaging import open_image
    from crack_model.core.tiling import TileConfig, cut_tiles, tile_boxes
    from crack_model.serving.scorer import load_scorer

    batch_id = "nightly-photos"
    build_photo_batch(store, batch_id, photos)
    scorer = load_scorer(model_dir)
    first = next((store / "incoming" / batch_id).glob("*.jpg"))
    image = open_image(first.read_bytes())
    boxes = tile_boxes(*image.size, TileConfig(tile_size=scorer.card.tile_size))
    tiles = cut_tiles(image, boxes, scorer.card.image_size)
    print(f"nightly: {photos} photos of 4032x3024, {len(tiles)} tiles each", flush=True)
    engine = paired_runs(scorer, np.stack(tiles), store, batch_id, model_dir, inputs_per_object=len(tiles))
    return {
        "photos": photos,
        "tiles_per_photo": len(tiles),
        **engine,
        **batch_stats(store, batch_id),
        "tiles_per_second": engine["rate"],
        "model_only_tiles_per_second": engine["model_only"],
    }


def measure_overlays(store: Path) -> dict[str, Any]:
    """Milliseconds for an overlay drawn on demand and read back once stored, and the CLI over a batch."""
    from crack_model.core import layout
    from crack_model.core.documents import BatchSummary
    from crack_model.core.local_store import LocalStore
    from crack_model.pipelines.overlays import crack_keys, draw_overlays, overlay_png

    local = LocalStore(store)
    result: dict[str, Any] = {}
    for batch_id, label in (("nightly-50", "patch"), ("nightly-photos", "12 MP photo")):
        summary = BatchSummary.read(local, layout.results_key(batch_id, layout.SUMMARY))
        assert summary is not None, f"{batch_id} was not scored"
        keys = sorted(crack_keys(local, batch_id, summary))[:20]
        for key in keys:  # drawn again: the inline run left some
            if local.exists(layout.overlay_key(batch_id, key)):
                local.delete(layout.overlay_key(batch_id, key))
        started = time.perf_counter()
        for key in keys:
            overlay_png(local, batch_id, key)
        drawn = (time.perf_counter() - started) / max(len(keys), 1)
        started = time.perf_counter()
        for key in keys:
            overlay_png(local, batch_id, key)
        stored = (time.perf_counter() - started) / max(len(keys), 1)
        result[label] = {"overlays": len(keys), "first_view_ms": round(1000 * drawn, 1),
                         "stored_ms": round(1000 * stored, 2)}  # fmt: skip
    started = time.perf_counter()
    report = draw_overlays(local, "nightly-50", refresh=True)
    seconds = time.perf_counter() - started
    result["crack-model overlays, 50% batch"] = {
        "drawn": report.drawn,
        "seconds": round(seconds, 1),
        "overlays_per_second": round(report.drawn / seconds, 1) if seconds > 0 else None,
    }
    return result


def measure_nightly(model_dir: Path, work: Path, *, images: int = 4000, photos: int = 12) -> dict[str, Any]:
    """The nightly path at two crack rates, on 12 MP photos, and overlays on demand (see the module docstring)."""
    store = work / "nightly-store"
    store.mkdir(parents=True, exist_ok=True)
    return {
        "load_before": Path("/proc/loadavg").read_text().split()[:3],
        "patches": measure_patches(model_dir, store, images),
        "photos": measure_photos(model_dir, store, photos),
        "overlays": measure_overlays(store),
        "load_after": Path("/proc/loadavg").read_text().split()[:3],
    }


def _runs(entry: dict[str, Any]) -> str:
    """Each run's ratio, as ``(84% 86% 90%)``."""
    ratios = [run["ratio"] for run in entry.get("runs", [])]
    return "(" + " ".join(f"{ratio:.0%}" for ratio in ratios) + ")"


def markdown_nightly(results: dict[str, Any]) -> str:
    patches, photos = results["patches"], results["photos"]
    lines = [
        f"Nightly path (`score_shard` as the DAG calls it, runtime {patches['runtime']}), {patches['images']} real "
        "patches per batch. Each engine run is a fresh process, between two measurements of the runtime alone at "
        "its fastest layout; engine / model only is the median of the runs' ratios (each run's in brackets), and "
        "the rates are the median run's.",
        "",
        "| batch | crack rate | images/s | model only | engine / model only (runs) | peak RSS | overlays written |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, entry in patches["cases"].items():
        lines.append(
            f"| {case} | {entry['crack_rate']:.0%} | {entry['images_per_second']} | {entry['model_only']} | "
            f"{entry['engine_vs_model_only']:.0%} {_runs(entry)} | {entry['peak_mb']:.0f} MB | "
            f"{entry['overlays_written']} |"
        )
    lines += [
        "",
        "| 12 MP photos | tiles/s | model only (tiles/s) | engine / model only (runs) | peak RSS | seconds |",
        "|---|---|---|---|---|---|",
        f"| {photos['photos']} x 4032x3024, {photos['tiles_per_photo']} tiles each | {photos['tiles_per_second']} | "
        f"{photos['model_only_tiles_per_second']} | {photos['engine_vs_model_only']:.0%} {_runs(photos)} | "
        f"{photos['peak_mb']:.0f} MB | {photos['seconds']:.1f} |",
        "",
        "| overlay on demand | first view | once stored |",
        "|---|---|---|",
    ]
    for label, entry in results["overlays"].items():
        if "first_view_ms" in entry:
            lines.append(f"| {label} | {entry['first_view_ms']} ms | {entry['stored_ms']} ms |")
    cli = results["overlays"]["crack-model overlays, 50% batch"]
    lines += [
        "",
        f"`crack-model overlays` over the 50% batch: {cli['drawn']} overlays in {cli['seconds']} s "
        f"({cli['overlays_per_second']}/s).",
        f"Load average before / after: {' '.join(results['load_before'])} / {' '.join(results['load_after'])}.",
    ]
    return "\n".join(lines) + "\n"
