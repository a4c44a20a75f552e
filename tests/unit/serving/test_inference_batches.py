"""Every tile gets its own score, while batch arrays are reused and model copies score batches side by side."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core.imaging import open_image
from crack_model.core.tiling import TileConfig, cut_tiles, tile_boxes
from crack_model.serving import inference
from crack_model.serving.scorer import Scorer, load_scorer
from tests import imagefiles
from tests.gc_hang_probe import suspended_stages

BATCH = 4


class PixelRuntime:
    """Scores a tile by its top-left red and green values, read after a pause: an array reused too early shows."""

    name = "pixel"
    preferred_batch = BATCH

    def __init__(self, fixed_batch: bool, arrays: list[np.ndarray], lock: threading.Lock) -> None:
        self.fixed_batch = fixed_batch
        self.arrays, self.lock = arrays, lock

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(0.002)  # the other copy, and the filling of the next batch, run meanwhile
        assert not self.fixed_batch or len(pixels) == BATCH  # Keras: the last batch is padded, not shorter
        with self.lock:
            self.arrays.append(pixels.base if pixels.base is not None else pixels)
        return np.stack([np.zeros(len(pixels)), tile_value(pixels)], axis=1).astype(np.float32)


def tile_value(tiles: np.ndarray) -> np.ndarray:
    """Red says which image, green where in it (256 x 256 values in [0, 1))."""
    return (tiles[:, 0, 0, 0].astype(np.float64) * 256 + tiles[:, 0, 0, 1]) / 65536


def uploads(tile_size: int) -> dict[str, bytes]:
    """Patches and multi-tile photos, each its own red. PNGs (Pillow's path) get green by position, so
    tiles of one image differ; greyscale JPEGs (the fast path, its tiles Pillow's to the byte) are flat."""
    files = {}
    for index in range(30):
        shade = 8 * index
        width, height = (tile_size, tile_size) if index % 3 else (3 * tile_size, 2 * tile_size)
        if index % 2:
            pixels = np.zeros((height, width, 3), np.uint8)
            pixels[..., 0] = shade
            pixels[..., 1] = (np.arange(width)[None, :] // 5 + 3 * (np.arange(height)[:, None] // 5)) % 256
            files[f"{index:02d}.png"] = imagefiles.encode(Image.fromarray(pixels), "PNG")
        else:
            files[f"{index:02d}.jpg"] = imagefiles.encode(Image.new("L", (width, height), shade), "JPEG")
    return files


@pytest.fixture(scope="module")
def model_dir(trained_model):
    return str(trained_model.output_dir)


@pytest.mark.parametrize("grouped", [False, True], ids=["one-by-one", "in-groups"])
@pytest.mark.parametrize("fixed_batch", [False, True], ids=["litert", "keras-shaped"])
def test_each_tile_keeps_its_own_score_across_reused_batches(model_dir, monkeypatch, fixed_batch, grouped):
    # Every tile once: no flips of the highest (test_photo_confirmation.py queues those through reused batches).
    card = replace(load_scorer(model_dir).card, photo_confirm_threshold=None, patch_confirm_threshold=None)
    arrays: list[np.ndarray] = []
    lock = threading.Lock()
    monkeypatch.setattr(inference, "copies", lambda runtime, count: [PixelRuntime(fixed_batch, arrays, lock)] * 2)
    scorer = Scorer(card, PixelRuntime(fixed_batch, arrays, lock), model_dir)
    files = uploads(card.tile_size)
    sizes = {key: len(data) for key, data in files.items()} if grouped else None  # listed sizes: small ones grouped
    scores = {
        score.key: score
        for score in inference.score_images(files, files.__getitem__, scorer, workers=3, object_sizes=sizes)
    }
    assert sorted(scores) == sorted(files)
    config = TileConfig(tile_size=card.tile_size)
    for key, data in files.items():
        score = scores[key]
        assert score.status == "ok", score.error
        image = open_image(data)
        expected = tile_value(cut_tiles(image, tile_boxes(*image.size, config), card.image_size))
        if key.endswith(".png") and len(expected) > 1:
            assert len(set(expected)) == len(expected)  # a swap of two tiles of this image would show
        assert score.tile_probabilities == pytest.approx(list(expected), abs=1e-6), key
    tiles = sum(score.tile_count for score in scores.values())
    assert len(arrays) == -(-tiles // BATCH)  # every tile scored once, in batches of 4
    assert sum(score.tile_count > 1 for score in scores.values()) == 10
    distinct = {id(array) for array in arrays}  # the arrays are all alive here: their ids are theirs
    assert len(distinct) <= 4  # reused: at most one per copy in flight, one waiting and one being filled


def test_small_objects_travel_in_groups_and_large_or_unknown_ones_alone(monkeypatch):
    monkeypatch.setattr(inference, "GROUP_BYTES", 100)
    sizes = {"a": 10, "b": 10, "c": 10, "d": 10, "big": 101, "e": 60, "f": 50, "g": 40, "h": 100}
    keys = ["a", "b", "c", "d", "big", "e", "f", "unlisted", "g", "h"]
    groups = list(inference.object_groups(keys, sizes, most=3))
    assert groups == [["a", "b", "c"], ["d"], ["big"], ["e"], ["f"], ["unlisted"], ["g"], ["h"]]
    assert list(inference.object_groups(keys, {})) == [[key] for key in keys]  # nothing listed: one by one
    assert list(inference.object_groups(keys[:4], sizes, most=2)) == [["a", "b"], ["c", "d"]]


def test_a_group_is_decoded_in_parts_that_each_hold_at_most_the_group_budget():
    """Small files can decode large: the fetched group is cut by each image's estimated memory, a large one alone."""

    def fetched(name: str, estimate: int) -> inference._Fetched:
        return inference._Fetched(inference.ImageScore(key=name), estimated_bytes=estimate)

    groups = [[fetched("a", 40), fetched("b", 60), fetched("c", 30), fetched("giant", 500), fetched("d", 10)],
              [fetched("e", 10)]]  # fmt: skip
    parts = [[item.score.key for item in part] for part in inference.decoding_groups(groups, 100)]
    assert parts == [["a", "b"], ["c"], ["giant"], ["d"], ["e"]]  # never across two fetched groups either


def test_a_short_batch_is_spread_over_every_fetching_thread(model_dir):
    """20 listed patches with 8 fetching threads: groups of 2, not one group of 16 fetched by one thread."""
    card = load_scorer(model_dir).card
    files = {f"{index:02d}.jpg": imagefiles.encode(Image.new("L", (card.tile_size,) * 2, index), "JPEG")
             for index in range(20)}  # fmt: skip
    threads: dict[str, int] = {}

    def fetch(key: str) -> bytes:
        threads[key] = threading.get_ident()
        time.sleep(0.01)  # a network read: the other threads take the next groups meanwhile
        return files[key]

    sizes = {key: len(data) for key, data in files.items()}
    scores = list(inference.score_images(list(files), fetch, load_scorer(model_dir), workers=8, object_sizes=sizes))
    assert len(scores) == 20 and all(score.status == "ok" for score in scores)
    assert len(set(threads.values())) >= 4


def test_a_failure_inside_a_group_costs_only_its_own_row(model_dir):
    """Objects of one group are fetched and decoded together; one that cannot be read or decoded is one error row."""
    card = load_scorer(model_dir).card
    files = {f"{index:02d}.jpg": imagefiles.encode(Image.new("L", (card.tile_size,) * 2, 9 * index), "JPEG")
             for index in range(12)}  # fmt: skip
    files["05.jpg"] = files["05.jpg"][:40]  # cut short: cannot be decoded

    fetching_threads = set()

    def fetch(key: str) -> bytes:
        fetching_threads.add(threading.get_ident())
        time.sleep(0.005)  # objects fetched one by one would be spread over several of the 8 threads
        if key == "08.jpg":
            raise ConnectionError("connection reset")
        return files[key]

    scorer = load_scorer(model_dir)
    sizes = {key: len(data) for key, data in files.items()}
    assert len(list(inference.object_groups(sorted(files), sizes))) == 1
    scores = {
        score.key: score
        for score in inference.score_images(iter(sorted(files)), fetch, scorer, workers=8, object_sizes=sizes)
    }
    assert sorted(scores) == sorted(files)
    assert len(fetching_threads) == 1  # the twelve were fetched as one group
    failed = {key: score.error for key, score in scores.items() if score.status != "ok"}
    assert sorted(failed) == ["05.jpg", "08.jpg"]
    assert "connection reset" in failed["08.jpg"]
    assert all(scores[key].tile_count == 1 for key in scores if key not in failed)


class FailingRuntime(PixelRuntime):
    """Fails on its third batch, as a model copy can (a runtime error, memory)."""

    calls = 0

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        with self.lock:
            FailingRuntime.calls += 1
            if FailingRuntime.calls == 3:
                raise RuntimeError("the model failed")
        return super().predict(pixels)


def test_a_failed_scoring_closes_its_stages_in_the_failing_thread(model_dir, monkeypatch):
    """A model failure ends scoring with its fetching and decoding stages closed, not left for the collector.

    The traceback of the failure holds the generators; left suspended, the cyclic collector would close
    them later, in whatever thread allocates, and their thread pools used to join there (a CI run stopped at its limit).
    """
    import gc

    card = replace(load_scorer(model_dir).card, photo_confirm_threshold=None, patch_confirm_threshold=None)
    arrays: list[np.ndarray] = []
    lock = threading.Lock()
    monkeypatch.setattr(FailingRuntime, "calls", 0)
    monkeypatch.setattr(inference, "copies", lambda runtime, count: [FailingRuntime(False, arrays, lock)] * 2)
    scorer = Scorer(card, FailingRuntime(False, arrays, lock), model_dir)
    files = uploads(card.tile_size)
    gc.collect()
    earlier = suspended_stages()  # an earlier test's failure may hold its own
    gc.disable()  # only what the code itself closes is closed
    try:
        with pytest.raises(RuntimeError, match="the model failed") as failure:
            for _ in inference.score_images(files, files.__getitem__, scorer, workers=2):
                pass
        assert failure.value.__traceback__ is not None  # the failure, traceback and all, is still held here
        assert suspended_stages(other_than=earlier) == []
    finally:
        gc.enable()


def test_the_garbage_of_a_failed_scoring_cannot_hang_a_thread_join():
    """The hang itself, forced (tests/gc_hang_probe.py): after failed scoring, a garbage collection inside a
    thread join, at each of 40 moments. On the code before the fix it hung."""
    project = Path(__file__).resolve().parents[3]
    probe = subprocess.run([sys.executable, "-m", "tests.gc_hang_probe"], cwd=project, capture_output=True,
                           text=True, timeout=600, check=False)  # fmt: skip
    assert probe.returncode == 0 and "no hang" in probe.stdout, probe.stderr[-4000:]
