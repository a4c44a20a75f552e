"""Peak memory of a scoring worker and of a validation (profiling) worker on the uploads of issue 10.

``measure_memory(model_dir, work)`` is what ``bench/run.py`` calls; alone:

    .venv/bin/python -m bench.run --only memory

Cases, each a batch in a local store, scored and profiled in a fresh process (peak = the process's
VmHWM, the high-water mark of its resident memory; getrusage's ``ru_maxrss`` would also count the
parent it was forked from):

- 24 phone-size photos: 4032x3024 JPEGs, each a mosaic of real 227x227 patches (crack and no crack)
  from the METU sample, the photos those patches were cut from in the first place;
- an 80 MP 16-bit PNG: 10000x8000 (the pixel limit), flat grey, ~170 KB;
- a 300000x40 PNG strip, ~12 KB;
- an uncompressed 80 MP RGBA TIFF: 320 MB of bytes, the most an allowed upload can have at the limit.

Scoring is ``score_shard`` as the nightly run calls it (tile scores kept, no overlay drawn, default
workers, the tile budget asked for: 512 by default, ``--memory-max-tiles N`` as ``score --max-tiles N``);
profiling is ``profile_batch`` with the default ``ProfileConfig`` at the same budget (fetch threads by store:
2 for a folder).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from crack_model.core.tiling import DEFAULT_MAX_TILES

PROJECT = Path(__file__).resolve().parents[1]
SAMPLE = PROJECT.parent / "shared" / "data" / "metu-sample"
PHONE_SIZE = (4032, 3024)
PHONE_PHOTOS = 24
PATCH = 227

READ_PEAK = """
def memory_mb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field)) / 1024
"""
SCORE = (
    READ_PEAK
    + """
import json, sys
import numpy as np
from crack_model.serving.batch import score_shard
from crack_model.serving.scorer import load_scorer
store, batch_id, model_dir, max_tiles = sys.argv[1:5]
scorer = load_scorer(model_dir)
size = scorer.card.image_size
scorer.class_probabilities(np.zeros((16, size, size, 3), np.uint8))
baseline = memory_mb("VmRSS")
report = score_shard(store, batch_id, scorer, force=True, max_tiles=int(max_tiles))
print(json.dumps({"peak_mb": memory_mb("VmHWM"), "baseline_mb": baseline, "seconds": report.seconds}))
"""
)
PROFILE = (
    READ_PEAK
    + """
import json, sys
from crack_model.core.tiling import TileConfig
from crack_model.quality.profile import ProfileConfig, profile_batch, rows_to_frame
store, batch_id, max_tiles = sys.argv[1:4]
rows_to_frame([])  # pandas imported before the baseline
baseline = memory_mb("VmRSS")
frame = profile_batch(store, batch_id, ProfileConfig(tiles=TileConfig(max_tiles=int(max_tiles))))
print(json.dumps({"peak_mb": memory_mb("VmHWM"), "baseline_mb": baseline,
                  "decodable": int(frame["decodable"].sum()), "objects": len(frame)}))
"""
)


def phone_photo(patches: list[Path], seed: int) -> bytes:
    """A 4032x3024 JPEG tiled from real 227x227 patches (a random choice of both classes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    columns, rows = -(-PHONE_SIZE[0] // PATCH), -(-PHONE_SIZE[1] // PATCH)
    canvas = Image.new("RGB", (columns * PATCH, rows * PATCH))
    for index in range(columns * rows):
        with Image.open(patches[rng.integers(len(patches))]) as patch:
            canvas.paste(
                patch.convert("RGB").resize((PATCH, PATCH)), ((index % columns) * PATCH, (index // columns) * PATCH)
            )
    buffer = io.BytesIO()
    canvas.crop((0, 0, *PHONE_SIZE)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def build_cases(store_root: Path) -> dict[str, str]:
    """Write the batches into a local store (each once); returns {case: batch_id}."""
    import numpy as np
    from PIL import Image

    incoming = store_root / "incoming"
    cases = {
        f"{PHONE_PHOTOS} phone photos (4032x3024 JPEG)": "memory-phone",
        "80 MP 16-bit PNG (10000x8000)": "memory-giant",
        "300000x40 PNG strip": "memory-strip",
        "80 MP RGBA TIFF, uncompressed (320 MB)": "memory-tiff",
    }
    for batch_id in cases.values():
        folder = incoming / batch_id
        if folder.is_dir():
            continue
        folder.mkdir(parents=True)
        if batch_id == "memory-phone":
            patches = sorted((SAMPLE / "Positive").glob("*.jpg")) + sorted((SAMPLE / "Negative").glob("*.jpg"))
            for index in range(PHONE_PHOTOS):
                (folder / f"photo-{index:02d}.jpg").write_bytes(phone_photo(patches, index))
        elif batch_id == "memory-giant":
            Image.new("I;16", (10_000, 8_000), 30_000).save(folder / "giant.png")
        elif batch_id == "memory-strip":
            Image.new("L", (300_000, 40), 128).save(folder / "strip.png")
        else:  # the most bytes an allowed upload can have at the pixel limit
            row = np.random.default_rng(0).integers(0, 256, (1, 10_000, 4), dtype=np.uint8)
            Image.fromarray(np.repeat(row, 8_000, axis=0), "RGBA").save(folder / "giant.tif")
    return cases


def run_child(code: str, *args: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=PROJECT
    )  # fmt: skip
    return dict(json.loads(output.stdout.strip().splitlines()[-1]))


def rows_summary(store_root: Path, batch_id: str) -> dict[str, Any]:
    text = (store_root / "results" / batch_id / "predictions.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    return {
        "statuses": dict(Counter(row["status"] for row in rows)),
        "max_tiles": max(int(row["tile_count"] or 0) for row in rows),
        "notes": sorted({row.get("note", "") for row in rows} - {""}),
    }


def measure_memory(model_dir: Path, work: Path, max_tiles: int = DEFAULT_MAX_TILES) -> dict[str, Any]:
    """Peak memory (MB) of scoring and of profiling each case at a tile budget, in fresh processes, with the rows'
    outcome (each budget scores in its own store: a batch's tile scores are kept per budget)."""
    store_root = work / ("memory-store" if max_tiles == DEFAULT_MAX_TILES else f"memory-store-tiles{max_tiles}")
    results: dict[str, Any] = {}
    for case, batch_id in build_cases(store_root).items():
        print(f"memory: {case}", flush=True)
        scoring = run_child(SCORE, str(store_root), batch_id, str(model_dir), str(max_tiles))
        profiling = run_child(PROFILE, str(store_root), batch_id, str(max_tiles))
        results[case] = {
            "scoring_peak_mb": round(scoring["peak_mb"], 1),
            "scoring_baseline_mb": round(scoring["baseline_mb"], 1),
            "scoring_seconds": scoring["seconds"],
            "profiling_peak_mb": round(profiling["peak_mb"], 1),
            "profiling_baseline_mb": round(profiling["baseline_mb"], 1),
            **rows_summary(store_root, batch_id),
        }
    return results


def markdown_memory(results: dict[str, Any]) -> str:
    lines = [
        "| case | scoring peak (model loaded) | scoring time | profiling peak (pandas loaded) | rows | most tiles |",
        "|---|---|---|---|---|---|",
    ]
    for case, entry in results.items():
        statuses = ", ".join(f"{count} {status}" for status, count in sorted(entry["statuses"].items()))
        lines.append(
            f"| {case} | {entry['scoring_peak_mb']:.0f} MB ({entry['scoring_baseline_mb']:.0f} MB) | "
            f"{entry['scoring_seconds']:.1f} s | {entry['profiling_peak_mb']:.0f} MB "
            f"({entry['profiling_baseline_mb']:.0f} MB) | {statuses} | {entry['max_tiles']} |"
        )
    notes = sorted({note for entry in results.values() for note in entry["notes"]})
    if notes:
        lines += ["", "Notes in the rows:", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"
