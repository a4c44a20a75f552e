"""Peak memory of scoring and profiling small hostile files that make a decoder hold far more than they weigh.

Each file is a batch of its own in a local store, scored (``score_shard``) and profiled (``profile_batch``)
in a fresh process, as ``bench/memory_bench.py`` measures (peak = VmHWM). ``core/decoder_costs.py`` and
``core/file_signatures.py`` refuse or count them; before, each held the memory in its comment.

    .venv/bin/python -m bench.decoder_bombs   (after make demo; --model picks another model folder)

Writes ``bench/results/decoder-bombs.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import csv
import io
import struct
import zlib
from pathlib import Path
from typing import Any

from bench.memory_bench import PROFILE, SCORE, rows_summary, run_child
from bench.run import write_results

PROJECT = Path(__file__).resolve().parents[1]


def tile_bomb(tile: int = 26624) -> bytes:
    """A 300x200 RGB TIFF declaring one ``tile`` x ``tile`` tile of deflated zeros (2.1 GB held, before)."""
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(bytes(tile * 3)) for _ in range(tile)) + compressor.flush()
    ifd_at = 8 + len(pixels) + len(pixels) % 2
    entries = [(256, 3, 300), (257, 3, 200), (258, 3, None), (259, 3, 8), (262, 3, 2), (277, 3, 3), (284, 3, 1),
               (322, 4, tile), (323, 4, tile), (324, 4, 8), (325, 4, len(pixels))]  # fmt: skip
    bits_at = ifd_at + 2 + 12 * len(entries) + 4

    def entry(tag: int, kind: int, value: int | None) -> bytes:
        if value is None:
            return struct.pack("<HHII", tag, kind, 3, bits_at)
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        return struct.pack("<HHI", tag, kind, 1) + packed

    directory = struct.pack("<H", len(entries)) + b"".join(entry(*e) for e in entries) + struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", ifd_at) + pixels
    return head + bytes(ifd_at - len(head)) + directory + struct.pack("<HHH", 8, 8, 8)


def encoded(image: Any, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def build_cases(store_root: Path) -> dict[str, str]:
    """One batch per file (each written once); returns {case: batch_id}."""
    from PIL import Image

    small = Image.new("RGB", (300, 200), (120, 120, 120))
    chunk = struct.pack(">I", 0) + b"prIv" + struct.pack(">I", zlib.crc32(b"prIv"))
    makers = {
        "300x200 TIFF declaring one 26624x26624 tile": ("bomb-tile", "tile.tif", tile_bomb),
        "JPEG with 10 million empty comments (40 MB)": (
            "bomb-comments", "comments.jpg",
            lambda: (lambda good: good[:2] + b"\xff\xfe\x00\x02" * 10_000_000 + good[2:])(encoded(small, "JPEG"))),
        "PNG with 4 million empty chunks (48 MB)": (
            "bomb-chunks", "chunks.png", lambda: (lambda good: good[:33] + chunk * 4_000_000 + good[33:])(
                encoded(small, "PNG"))),
        "144 MP progressive JPEG, flat": (
            "bomb-progressive", "flat.jpg",
            lambda: encoded(Image.new("RGB", (12_000, 12_000), (90, 90, 90)), "JPEG", progressive=True)),
        "80 MP lossless WebP, flat (under the limit: counted, decoded alone)": (
            "bomb-webp", "flat.webp",
            lambda: encoded(Image.new("RGB", (8_940, 8_940), (90, 90, 90)), "WEBP", lossless=True)),
    }  # fmt: skip
    cases = {}
    for case, (batch_id, name, make) in makers.items():
        path = store_root / "incoming" / batch_id / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(make())
        cases[f"{case}, {path.stat().st_size / 2**20:.1f} MB"] = batch_id
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder (default: the newest version `make demo` registered)")
    parser.add_argument("--work", default=str(PROJECT / "build" / "bench"), help="where the store goes")
    args = parser.parse_args()
    model = args.model or str(
        sorted((PROJECT / "build" / "demo" / "store" / "models" / "crack" / "versions").iterdir())[-1]
    )
    store_root = Path(args.work) / "decoder-bombs"
    results: dict[str, Any] = {}
    for case, batch_id in build_cases(store_root).items():
        print(f"decoder bombs: {case}", flush=True)
        scoring = run_child(SCORE, str(store_root), batch_id, model)
        profiling = run_child(PROFILE, str(store_root), batch_id)
        text = (store_root / "results" / batch_id / "predictions.csv").read_text()
        row = next(csv.DictReader(io.StringIO(text)))
        results[case] = {"scoring_peak_mb": round(scoring["peak_mb"]),
                         "scoring_baseline_mb": round(scoring["baseline_mb"]),
                         "profiling_peak_mb": round(profiling["peak_mb"]),
                         "profiling_baseline_mb": round(profiling["baseline_mb"]),
                         "row": f"{row['status']}: {row['error'][:90]}" if row["error"] else row["status"],
                         **rows_summary(store_root, batch_id)}  # fmt: skip
    lines = ["| file | scoring peak (model loaded) | profiling peak (pandas loaded) | row |", "|---|---|---|---|"]
    lines += [
        f"| {case} | {entry['scoring_peak_mb']} MB ({entry['scoring_baseline_mb']} MB) | "
        f"{entry['profiling_peak_mb']} MB ({entry['profiling_baseline_mb']} MB) | {entry['row']} |"
        for case, entry in results.items()
    ]
    write_results("decoder-bombs", results, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
