"""What looking for a frame costs: decoding and tiling a 12 MP JPEG, with and without a round frame.

A 4032x3024 JPEG mosaic of METU patches (as ``bench/memory_bench.py`` builds them), plain and as a disc on black
(radius 0.48 of the short side), goes through scoring's ``prepare`` (the fast libjpeg path: decode, frame, tile
views) and validation's ``decode_grey`` + ``picture_statistics``, with frames looked for and not (``frames.py``'s
search switched off, as before it). Seconds: the median of ``--repeats`` runs in one process. Peak memory: each
case once in a fresh process (VmHWM, less the resident memory after the imports, before any decode).

    python -m bench.frame_cost

Writes ``bench/results/frame-cost.json`` and ``frame-cost.md``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.memory_bench import READ_PEAK, SAMPLE, phone_photo, run_child
from bench.run import write_results

CHILD = (
    READ_PEAK
    + """
import sys
from pathlib import Path
from bench.frame_cost import run_once
import crack_model.quality.grey_image, crack_model.serving.inference, scipy.ndimage  # imported before the baseline
path, step, looked = sys.argv[1:4]
data = Path(path).read_bytes()
baseline = memory_mb("VmRSS")
run_once(data, step, looked == "1")
print('{"peak_mb": %.1f, "baseline_mb": %.1f}' % (memory_mb("VmHWM"), baseline))
"""
)


def photos() -> dict[str, bytes]:
    import numpy as np
    from PIL import Image

    patches = sorted((SAMPLE / "Negative").glob("*.jpg"))
    plain = phone_photo(patches, seed=7)
    pixels = np.asarray(Image.open(io.BytesIO(plain)).convert("RGB")).copy()
    rows, columns = np.mgrid[0:3024, 0:4032]
    pixels[np.hypot(columns - 2016, rows - 1512) > 0.48 * 3024] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return {"plain": plain, "round on black": buffer.getvalue()}


def run_once(data: bytes, step: str, looked: bool) -> Any:
    from crack_model.core import frames
    from crack_model.core.imaging import DEFAULT_MAX_PIXELS
    from crack_model.core.tiling import TileConfig
    from crack_model.quality.grey_image import decode_grey, picture_statistics
    from crack_model.serving.inference import fetch_object, prepare

    search = frames.frame_of_thumbnail
    if not looked:
        frames.frame_of_thumbnail = lambda *args: None  # type: ignore[assignment]
    try:
        tiles = TileConfig()
        if step == "prepare":
            fetched = fetch_object("photo.jpg", lambda key: data, 224, tiles, DEFAULT_MAX_PIXELS)
            return prepare(fetched, 224, tiles, DEFAULT_MAX_PIXELS)
        grey = decode_grey(data, tiles, DEFAULT_MAX_PIXELS)
        return picture_statistics(grey, tiles, 512)
    finally:
        frames.frame_of_thumbnail = search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args()
    results: dict[str, Any] = {}
    lines = ["| photo | step | frames | seconds (median) | peak MB over baseline |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        for name, data in photos().items():
            path = Path(folder) / f"{name.replace(' ', '-')}.jpg"
            path.write_bytes(data)
            for step in ("prepare", "validation"):
                times: dict[bool, list[float]] = {False: [], True: []}
                run_once(data, step, True)  # warm
                for _ in range(arguments.repeats):  # interleaved: the machine's load falls on both alike
                    for looked in (False, True):
                        started = time.perf_counter()
                        run_once(data, step, looked)
                        times[looked].append(time.perf_counter() - started)
                for looked in (False, True):
                    memory = run_child(CHILD, str(path), step, "1" if looked else "0")
                    seconds, peak = statistics.median(times[looked]), memory["peak_mb"] - memory["baseline_mb"]
                    case = f"{name} / {step} / {'looked for' if looked else 'not looked for'}"
                    results[case] = {"seconds": round(seconds, 3), "times": [round(t, 3) for t in times[looked]],
                                     "peak_mb_over_baseline": round(peak, 1)}  # fmt: skip
                    lines.append(f"| {name} | {step} | {'looked for' if looked else 'off'} | {seconds:.3f} | "
                                 f"{peak:.0f} |")  # fmt: skip
    results["python"] = sys.version.split()[0]
    write_results("frame-cost", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
