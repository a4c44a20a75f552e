"""How much do GX Data Docs add to a validation run? Build them for a validated batch and time it.

    .venv/bin/python bench/data_docs_bench.py [--images 2000] [--repeats 3]

The batch (real METU photos) is profiled and validated once, which also imports GX and creates its
context; then ``write_data_docs`` (build the site, copy it into a fresh local store) is timed alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT.parent / "shared" / "data" / "metu-sample"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a folder with Positive/ and Negative/")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from crack_model.core.clock import utc_now
    from crack_model.core.local_store import LocalStore
    from crack_model.quality.data_docs import write_data_docs
    from crack_model.quality.judging import validate_profile
    from crack_model.quality.profile import iter_profile_rows, rows_to_frame

    files = [path for name in ("Positive", "Negative") for path in sorted((args.data / name).glob("*.jpg"))]
    files = files[: args.images]
    if not files:
        print(f"no photos under {args.data}/Positive or /Negative: pass --data", file=sys.stderr)
        return 2
    profile = rows_to_frame(iter_profile_rows([str(path) for path in files], lambda key: Path(key).read_bytes()))
    _, result, _ = validate_profile(profile, batch_id="bench")
    seconds, size, pages = [], 0, 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as folder:
            store = LocalStore(folder)
            start = time.perf_counter()
            docs = write_data_docs(store, "bench", result, "incoming", utc_now())
            seconds.append(time.perf_counter() - start)
            if docs["error"]:
                print(docs["error"], file=sys.stderr)
                return 1
            size, pages = sum(info.size for info in store.list("")), docs["pages"]
    print(
        f"images={len(files)} data_docs_seconds_median={statistics.median(seconds):.2f} "
        f"runs={[round(value, 2) for value in seconds]} pages={pages} kib={size / 1024:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
