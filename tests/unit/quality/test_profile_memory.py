"""Profiling memory is bounded: an 80 MP 16-bit PNG, several at once, and foreign formats, within 1 GiB."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from crack_model.quality import profile
from crack_model.quality.profile import ProfileConfig, iter_profile_rows, profile_bytes
from tests import imagefiles

PROJECT = Path(__file__).resolve().parents[3]
WORKER_BUDGET = 2**30  # a validation worker has 1 GiB

# Eight profiling threads over four giants: at 2.2 GiB each they once needed 8.8 GiB. The address space is
# capped at 4 GiB so that a regression fails here (as "out of memory" rows) instead of swamping the machine.
# Peak RSS is the process's VmHWM: getrusage's ru_maxrss would also count the pytest process it was forked from.
PROFILE_IN_A_FRESH_PROCESS = """
import json, resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
from crack_model.quality.profile import ProfileConfig, iter_profile_rows

paths = sys.argv[1:]
rows = list(iter_profile_rows(paths, lambda key: Path(key).read_bytes(), ProfileConfig(workers=8)))
keep = ("decodable", "decode_error", "width", "height", "mode", "brightness")
peak_kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"rows": [{k: row[k] for k in keep} for row in rows], "peak_bytes": peak_kib * 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="peak memory is read from Linux's /proc")
def test_four_80_megapixel_16_bit_pngs_profile_within_the_worker_budget(tmp_path):
    """Each 171 KiB giant decodes (16-bit straight to 8-bit) and eight workers cannot stack them past 1 GiB."""
    data = imagefiles.encode(Image.new("I;16", (10_000, 8_000), 30_000), "PNG")
    paths = []
    for index in range(4):
        path = tmp_path / f"giant-{index}.png"
        path.write_bytes(data)
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, "-c", PROFILE_IN_A_FRESH_PROCESS, *paths],
        capture_output=True, text=True, check=True, cwd=PROJECT, timeout=300,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for row in report["rows"]:
        assert row["decodable"], row["decode_error"]
        assert (row["width"], row["height"], row["mode"]) == (10_000, 8_000, "I;16")
        assert row["brightness"] == pytest.approx(30_000 >> 8)
    assert report["peak_bytes"] < WORKER_BUDGET, f"peak {report['peak_bytes'] / 2**20:.0f} MiB"


@pytest.mark.parametrize("fmt", ["TGA", "SGI", "PCX", "EPS"])
def test_foreign_formats_are_profiled_as_not_decodable_with_their_name(fmt):
    """The row names the format (for the suite's allowed-format check) and says what to upload instead."""
    row = profile_bytes(f"photo.{fmt.lower()}", imagefiles.encode(Image.new("RGB", (300, 200), "grey"), fmt))
    assert row["decodable"] is False
    assert row["format"] == fmt
    assert row["decode_error"] == f"format {fmt} is not accepted: upload JPEG, HEIC, PNG, TIFF, WebP, BMP or GIF"
    assert row["width"] is None and row["brightness"] is None


def test_an_image_over_the_pixel_limit_keeps_its_header_columns():
    """Too large to decode, but the row still says what it is."""
    row = profile_bytes("big.jpg", imagefiles.jpeg(400, 300), ProfileConfig(max_pixels=1000))
    assert row["decodable"] is False and row["decode_error"].startswith("image too large: 400x300")
    assert (row["format"], row["width"], row["height"], row["channels"]) == ("JPEG", 400, 300, 3)


def test_images_being_decoded_stay_within_the_byte_budget(monkeypatch):
    """With a budget for two images, no more than two are decoded at once, however many workers fetch."""
    photos = {f"photo-{index}.png": imagefiles.encode(imagefiles.gradient_rgb(1200, 1000), "PNG") for index in range(8)}
    lock = threading.Lock()
    live = {"bytes": 0, "peak": 0, "largest": 0}
    real_complete = profile._complete

    def recording_complete(inspected, config):
        with lock:
            live["bytes"] += inspected.estimated_bytes
            live["peak"] = max(live["peak"], live["bytes"])
            live["largest"] = max(live["largest"], inspected.estimated_bytes)
        try:
            return real_complete(inspected, config)
        finally:
            with lock:
                live["bytes"] -= inspected.estimated_bytes

    monkeypatch.setattr(profile, "_complete", recording_complete)
    budget = 25 * 2**20
    config = ProfileConfig(workers=8, decode_threads=4, max_in_flight_bytes=budget)
    rows = list(iter_profile_rows(photos, photos.__getitem__, config))
    assert [row["key"] for row in rows] == list(photos)
    assert all(row["decodable"] for row in rows)
    assert 2 * live["largest"] <= budget < 3 * live["largest"]  # room for two images, not three
    assert live["peak"] <= budget


def test_every_decoding_thread_gets_work_however_few_threads_fetch(monkeypatch):
    """2 fetching threads (a folder's default) must not cap decoding at 4 images at once on a many-core host."""
    import threading

    decoders = 6
    all_decoding = threading.Barrier(decoders, timeout=30)  # breaks, failing the rows, if fewer run at once
    real_complete = profile._complete

    def complete(inspected, config):
        all_decoding.wait()
        return real_complete(inspected, config)

    monkeypatch.setattr(profile, "_complete", complete)
    keys = [f"k{index}.jpg" for index in range(decoders)]
    config = ProfileConfig(workers=2, decode_threads=decoders)
    rows = list(iter_profile_rows(keys, lambda key: imagefiles.jpeg(), config))
    assert [row["decodable"] for row in rows] == [True] * decoders
