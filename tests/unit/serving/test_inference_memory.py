"""Scoring memory is bounded: giant, thin and foreign uploads each end as one row, within a worker's 1 GiB."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core import layout
from crack_model.core.local_store import LocalStore
from crack_model.core.tiling import TileConfig
from crack_model.serving import inference
from crack_model.serving.batch import score_batch
from crack_model.serving.scorer import load_scorer
from tests import imagefiles

PROJECT = Path(__file__).resolve().parents[3]
WORKER_BUDGET = 2**30  # a scoring worker has 1 GiB
ACCEPTED = "upload JPEG, HEIC, PNG, TIFF, WebP, BMP or GIF"


def png(image: Image.Image) -> bytes:
    return imagefiles.encode(image, "PNG")


def giant_sixteen_bit_png() -> bytes:
    """80 MP (the pixel limit) of 16-bit grey: ~170 KB of PNG, 160 MB decoded, 2.2 GB through float64."""
    return png(Image.new("I;16", (10_000, 8_000), 30_000))


def thin_strip_png() -> bytes:
    """300000x40: 12 KB of PNG that made 10,000 tiles."""
    return png(Image.new("L", (300_000, 40), 128))


# Peak RSS is the process's VmHWM: getrusage's ru_maxrss would also count the pytest process it was forked
# from (Linux keeps the high-water mark of the address space replaced by exec).
SCORE_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from crack_model.serving.inference import score_images
from crack_model.core.tiling import TileConfig
from crack_model.serving.scorer import load_scorer

scorer = load_scorer(sys.argv[1])
scores = list(score_images(sys.argv[2:], lambda key: Path(key).read_bytes(), scorer))
fields = ("status", "error", "tile_count", "note")
rows = [{name: getattr(score, name, None) for name in fields} for score in scores]
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"rows": rows, "peak_bytes": peak_kib * 1024}))
"""


@pytest.fixture()
def model_dir(trained_model):
    return str(trained_model.output_dir)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from Linux's /proc")
def test_an_80_megapixel_16_bit_png_scores_within_the_worker_budget(tmp_path, model_dir):
    """The 171 KiB PNG that peaked at 2.2 GiB scores (status ok, downscaled, noted) with the process under 1 GiB."""
    path = tmp_path / "giant.png"
    path.write_bytes(giant_sixteen_bit_png())
    result = subprocess.run(
        [sys.executable, "-c", SCORE_IN_A_FRESH_PROCESS, model_dir, str(path)],
        capture_output=True, text=True, check=True, cwd=PROJECT, timeout=300,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = report["rows"]
    assert row["status"] == "ok", row
    assert report["peak_bytes"] < WORKER_BUDGET, f"peak {report['peak_bytes'] / 2**20:.0f} MiB"
    assert 0 < row["tile_count"] <= 512
    assert row["note"].startswith("Downscaled from 10000x8000 to ")


def test_hostile_uploads_each_end_as_one_row_with_a_reason(tmp_path, model_dir):
    """A thin strip is scored on a bounded number of tiles, noted in the row; foreign formats are refused by name."""
    store = LocalStore(tmp_path)
    store.write("incoming/b1/strip.png", thin_strip_png())
    store.write("incoming/b1/photo.jpg", imagefiles.jpeg(700, 520))
    refused = {}
    for fmt in ("TGA", "SGI", "PCX", "EPS"):
        refused[f"photo.{fmt.lower()}"] = fmt
        store.write(f"incoming/b1/photo.{fmt.lower()}", imagefiles.encode(Image.new("RGB", (300, 200), "grey"), fmt))
    score_batch(str(tmp_path), "b1", model_dir, overlays=False)
    text = store.read(layout.results_key("b1", layout.PREDICTIONS)).decode()
    rows = {row["key"].removeprefix("incoming/b1/"): row for row in csv.DictReader(io.StringIO(text))}
    assert len(rows) == 2 + len(refused)
    strip = rows["strip.png"]
    assert strip["status"] == "ok" and 0 < int(strip["tile_count"]) <= 512
    assert (strip["width"], strip["height"]) == ("300000", "40")
    assert "padded to" in strip["note"] and "within 512 tiles" in strip["note"]
    assert rows["photo.jpg"]["status"] == "ok" and rows["photo.jpg"]["note"] == ""
    for name, fmt in refused.items():
        assert rows[name]["status"] == "error"
        assert rows[name]["error"] == f"format {fmt} is not accepted: {ACCEPTED}"
        assert rows[name]["crack_probability"] == ""


def owning_array(tile):
    return tile.base if isinstance(tile.base, np.ndarray) else tile


@pytest.mark.parametrize("grouped", [False, True], ids=["one-by-one", "in-groups"])
def test_images_in_flight_stay_within_the_byte_budget(model_dir, monkeypatch, grouped):
    """Decoded pixels and tiles alive at once (tracked until their arrays are freed) never exceed the byte budget.

    In groups: the photos' files are small enough to be fetched as one group, but decoding them together
    would hold all eight; they are decoded a few at a time, within the budget."""
    photos = {f"photo-{index}.jpg": imagefiles.jpeg(1500, 1200) for index in range(8)}
    lock = threading.Lock()
    live = {"bytes": 0, "peak": 0, "largest": 0}
    real_prepare = inference.prepare

    def release(size: int) -> None:
        with lock:
            live["bytes"] -= size

    def recording_prepare(fetched, *args):
        size = fetched.estimated_bytes
        with lock:
            live["bytes"] += size
            live["peak"] = max(live["peak"], live["bytes"])
            live["largest"] = max(live["largest"], size)
        prepared = real_prepare(fetched, *args)
        if prepared.tiles is None:
            release(size)
            return prepared
        # Tiles are slices of the decoded pixels or of Pillow's tile array, or resized arrays of their own
        # (over Pillow's bytes): the image's memory is free when every array holding it is.
        holders = {id(held): held for tile in prepared.tiles for held in [owning_array(tile)]}
        alive = {"arrays": len(holders)}

        def array_freed() -> None:
            with lock:
                alive["arrays"] -= 1
                last = alive["arrays"] == 0
            if last:
                release(size)

        for held in holders.values():
            weakref.finalize(held, array_freed)
        return prepared

    monkeypatch.setattr(inference, "prepare", recording_prepare)
    scorer = load_scorer(model_dir)
    estimate = inference.fetch_object("photo-0.jpg", photos.__getitem__, 64, TileConfig(), 10**8).estimated_bytes
    budget = 5 * estimate // 2
    listed = {key: len(data) for key, data in photos.items()} if grouped else None
    assert not grouped or max(map(len, inference.object_groups(photos, listed or {}, most=8))) >= 4
    scores = list(
        inference.score_images(photos, photos.__getitem__, scorer, workers=1 if grouped else 8, decode_threads=4,
                               max_in_flight_bytes=budget, object_sizes=listed)
    )  # fmt: skip
    assert sorted(score.key for score in scores) == sorted(photos)
    assert all(score.status == "ok" and score.tile_count == 63 for score in scores)
    assert 2 * live["largest"] <= budget < 3 * live["largest"]  # room for two photos, not three
    assert live["peak"] <= budget


def test_listed_sizes_bound_the_fetched_bytes_waiting_to_be_decoded(model_dir, monkeypatch):
    """With the listing's sizes, fetched bytes stay within a quarter of the budget ahead of decoding plus the budget."""
    photos = {f"photo-{index}.bmp": imagefiles.encode(imagefiles.gradient_rgb(600, 500), "BMP") for index in range(12)}
    size = len(next(iter(photos.values())))
    scorer = load_scorer(model_dir)
    estimate = inference.fetch_object("photo-0.bmp", photos.__getitem__, 64, TileConfig(), 10**8).estimated_bytes
    budget = 2 * estimate
    lock = threading.Lock()
    alive = {"bytes": 0, "peak": 0}  # fetched and not yet decoded
    real_prepare = inference.prepare

    def fetch(key: str) -> bytes:
        with lock:
            alive["bytes"] += size
            alive["peak"] = max(alive["peak"], alive["bytes"])
        return photos[key]

    def decoding_prepare(fetched, *args):
        try:
            return real_prepare(fetched, *args)
        finally:
            with lock:
                alive["bytes"] -= size

    monkeypatch.setattr(inference, "prepare", decoding_prepare)
    scores = list(
        inference.score_images(photos, fetch, scorer, workers=8, decode_threads=1, max_in_flight_bytes=budget,
                               object_sizes=dict.fromkeys(photos, size))
    )  # fmt: skip
    assert sorted(score.key for score in scores) == sorted(photos)
    assert all(score.status == "ok" for score in scores)
    assert alive["peak"] <= budget // 4 + budget < len(photos) * size  # without sizes all 12 may wait at once


def test_the_memory_estimate_counts_the_tiles_a_larger_budget_keeps():
    """A 17 MP photo needs 588 tiles: within 2048 it is decoded and tiled whole, and the decoding budget must count
    its full-size pixels and all 588 tiles, not the 512 of a downscaled copy."""
    photo = imagefiles.jpeg(4800, 3600)

    def estimate(max_tiles: int, image_size: int) -> int:
        tiles = TileConfig(max_tiles=max_tiles)
        fetched = inference.fetch_object("p.jpg", {"p.jpg": photo}.__getitem__, image_size, tiles, 10**8)
        assert fetched.fit is not None
        return fetched.estimated_bytes

    per_tile = (224 * 224 - 64 * 64) * 3  # what a tile costs more at the model's input of 224 px than at 64
    assert estimate(2048, 224) - estimate(2048, 64) == 588 * per_tile
    assert estimate(512, 224) - estimate(512, 64) <= 512 * per_tile
    assert estimate(2048, 64) >= 4800 * 3600 * 3 + 588 * 64 * 64 * 3
