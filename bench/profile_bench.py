"""How fast is data validation? Profile + validate a batch and report images per second.

``measure_profiling(store_uri, batch_id)`` is what the benchmark harness calls; run as a
script it builds a local batch from the real METU sample and measures it:

    .venv/bin/python bench/profile_bench.py [--images 2000] [--workers N]
    .venv/bin/python bench/profile_bench.py --photo-cpu    # CPU to profile one 12 MP JPEG

The one-time cost of importing Great Expectations and creating its context (about 3 s per
process) is paid before the clock starts; a worker process pays it once, not per batch.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "metu-sample"


def warm_up() -> None:
    """Import GX and create its context now, so that the timings below measure the work."""
    from crack_model.quality.judging import validate_profile
    from crack_model.quality.profile import rows_to_frame

    validate_profile(rows_to_frame([]), batch_id="warm-up")


def measure_profiling(store_uri: str, batch_id: str, *, workers: int | None = None) -> dict[str, Any]:
    """Time profiling alone, then the whole validation (profile + suite + files), of one batch.

    Returns:
        ``images``, ``seconds`` and ``images_per_second`` of the whole validation, plus
        ``profile_seconds``, ``profile_images_per_second`` and ``profile_cpu_ms_per_image`` (the
        process's CPU, every thread's: what a busy host shows) of profiling alone, and the ``outcome``.
    """
    from crack_model.quality.batch_validation import validate_batch
    from crack_model.quality.profile import ProfileConfig, profile_batch

    warm_up()
    config = ProfileConfig(workers=workers)
    started, cpu_started = time.perf_counter(), time.process_time()
    profile = profile_batch(store_uri, batch_id, config)
    profile_seconds, profile_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    outcome = validate_batch(store_uri, batch_id, profile_config=config)
    seconds = time.perf_counter() - started
    images = len(profile)
    return {
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 1) if seconds > 0 else None,
        "profile_seconds": round(profile_seconds, 3),
        "profile_images_per_second": round(images / profile_seconds, 1) if profile_seconds > 0 else None,
        "profile_cpu_ms_per_image": round(1000 * profile_cpu / images, 3) if images else None,
        "outcome": outcome.outcome,
    }


def build_batch(data: Path, root: Path, images: int, batch_id: str = "bench") -> None:
    """Copy ``images`` real photos (cycling through the sample) into ``<root>/incoming/<batch_id>/``."""
    files = sorted(data.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no images under {data}/<class>/")
    target = root / "incoming" / batch_id
    target.mkdir(parents=True, exist_ok=True)
    for index in range(images):
        source = files[index % len(files)]
        # Copies beyond the sample would be duplicates: re-save them with a changed byte so each is unique.
        data_bytes = source.read_bytes() + (b"" if index < len(files) else index.to_bytes(4, "big"))
        (target / f"{index:06d}-{source.name}").write_bytes(data_bytes)


def photo_cpu_ms(repeats: int = 7) -> float:
    """Median CPU milliseconds to profile one 4032x3024 JPEG (quality 90, a seeded texture), in this thread."""
    import io
    import statistics

    import numpy as np
    from PIL import Image

    from crack_model.quality.profile import ProfileConfig, profile_bytes

    texture = np.random.default_rng(1).integers(60, 200, (378, 504, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(texture).resize((4032, 3024), Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
    times = []
    for _ in range(repeats):
        started = time.process_time()
        profile_bytes("photo.jpg", buffer.getvalue(), ProfileConfig())
        times.append(time.process_time() - started)
    return round(statistics.median(times) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labeled folder of real photos")
    parser.add_argument("--images", type=int, default=2000, help="images in the batch (default: 2000)")
    parser.add_argument("--workers", type=int, help="fetch threads (default: by store, 2 for this local one)")
    parser.add_argument("--photo-cpu", action="store_true", help="only the CPU to profile one 12 MP JPEG")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.photo_cpu:
        print(f"profile_cpu_ms_per_12mp_jpeg={photo_cpu_ms()}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="profile-bench-"))
    try:
        build_batch(args.data, root, args.images)
        result = measure_profiling(str(root), "bench", workers=args.workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(" ".join(f"{name}={value}" for name, value in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
