"""Every tile gets its own score, while batch arrays are reused and model copies score batches side by side."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from crack_model.core.tiling import TileConfig, tile_boxes
from crack_model.serving import inference
from crack_model.serving.scorer import Scorer, load_scorer
from tests import imagefiles


class ShadeRuntime:
    """Scores a tile by its top-left red value, read only after a pause: an array reused too early shows."""

    name = "shade"
    fixed_batch = False
    preferred_batch = 4

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen
        self.lock = threading.Lock()

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(0.002)  # the other copy, and the filling of the next batch, run meanwhile
        shade = pixels[:, 0, 0, 0].astype(np.float32) / 255
        with self.lock:
            self.seen.append(id(pixels.base if pixels.base is not None else pixels))
        return np.stack([1 - shade, shade], axis=1)


@pytest.fixture(scope="module")
def model_dir(trained_model):
    return str(trained_model.output_dir)


def uploads(tile_size: int) -> dict[str, tuple[bytes, int]]:
    """Flat-coloured patches and multi-tile photos, PNG (Pillow's path) and greyscale JPEG (the fast path)."""
    files = {}
    for index in range(30):
        shade = 8 * index
        width, height = (tile_size, tile_size) if index % 3 else (3 * tile_size, 2 * tile_size)
        if index % 2:
            image = Image.new("RGB", (width, height), (shade, 9, 9))
            files[f"{index:02d}.png"] = (imagefiles.encode(image, "PNG"), shade)
        else:  # a flat grey block is exact in JPEG: its DC alone
            files[f"{index:02d}.jpg"] = (imagefiles.encode(Image.new("L", (width, height), shade), "JPEG"), shade)
    return files


def test_each_tile_keeps_its_own_score_across_reused_batches(model_dir, monkeypatch):
    card = load_scorer(model_dir).card
    seen: list[int] = []
    runtime = ShadeRuntime(seen)
    monkeypatch.setattr(inference, "copies", lambda runtime, count: [ShadeRuntime(seen), ShadeRuntime(seen)])
    scorer = Scorer(card, runtime, model_dir)
    files = uploads(card.tile_size)
    scores = {
        score.key: score
        for score in inference.score_images(files, lambda key: files[key][0], scorer, batch_size=4, workers=3)
    }
    assert sorted(scores) == sorted(files)
    for key, (_, shade) in files.items():
        score = scores[key]
        assert score.status == "ok", score.error
        expected = len(tile_boxes(score.width, score.height, TileConfig(tile_size=card.tile_size)))
        assert score.tile_count == expected and (expected > 1) == (int(key[:2]) % 3 == 0)
        assert score.tile_probabilities == pytest.approx([shade / 255] * expected, abs=1.5 / 255), key
    tiles = sum(score.tile_count for score in scores.values())
    assert len(seen) == -(-tiles // 4)  # every tile scored once, in batches of 4
    assert len(set(seen)) < len(seen) / 4  # arrays are reused, not one per batch
