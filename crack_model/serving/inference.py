"""The streaming core of scoring: fetch, decode and tile in threads; infer in batches.

Memory stays flat whatever the number of images: at most ``max_in_flight`` images are
being fetched or decoded, and at most one batch of tiles waits for the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crack_model.core.concurrency import map_bounded
from crack_model.core.errors import CrackModelError, ImageDecodeError
from crack_model.core.imaging import DEFAULT_MAX_PIXELS, open_image
from crack_model.core.tiling import Box, TileConfig, cut_tiles, tile_boxes
from crack_model.serving.scorer import Scorer

log = logging.getLogger(__name__)

Fetch = Callable[[str], bytes]


@dataclass
class ImageScore:
    """The outcome for one input object; ``status`` is "ok" or "error"."""

    key: str
    size: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    status: str = "ok"
    error: str = ""
    crack_probability: float | None = None
    label: str = ""
    tile_count: int = 0
    boxes: list[Box] = field(default_factory=list)
    tile_probabilities: list[float] = field(default_factory=list)


@dataclass
class _Prepared:
    score: ImageScore
    tiles: np.ndarray | None = None


def prepare(
    key: str, fetch: Fetch, image_size: int, tiles: TileConfig, max_pixels: int, decode_slots: threading.Semaphore
) -> _Prepared:
    """Fetch, decode and tile one object; every failure becomes an error row.

    Fetching may wait on the network in many threads at once; decoding is CPU work and takes
    one of ``decode_slots``, so it never crowds out the model's own threads.
    """
    score = ImageScore(key=key)
    try:
        data = fetch(key)
    except CrackModelError as error:
        score.status, score.error = "error", f"cannot read: {error}"
        return _Prepared(score)
    except Exception as error:  # network and permission errors must not sink the batch
        score.status, score.error = "error", f"cannot read: {type(error).__name__}: {error}"
        return _Prepared(score)
    score.size = len(data)
    score.sha256 = hashlib.sha256(data).hexdigest()
    try:
        with decode_slots:
            image = open_image(data, max_pixels=max_pixels)
            score.width, score.height = image.size
            score.boxes = tile_boxes(image.width, image.height, tiles)
            pixels = cut_tiles(image, score.boxes, image_size)
    except ImageDecodeError as error:
        score.status, score.error = "error", str(error)
        return _Prepared(score)
    except (OSError, ValueError, MemoryError) as error:
        score.status, score.error = "error", f"cannot decode: {type(error).__name__}: {error}"
        return _Prepared(score)
    score.tile_count = len(score.boxes)
    return _Prepared(score, pixels)


def score_images(
    keys: Iterable[str],
    fetch: Fetch,
    scorer: Scorer,
    *,
    tiles: TileConfig | None = None,
    batch_size: int | None = None,
    workers: int = 8,
    max_in_flight: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode_threads: int | None = None,
) -> Iterator[ImageScore]:
    """Score each key and yield one ImageScore per key (order not guaranteed).

    Args:
        workers: threads fetching objects (I/O: more helps against a slow store).
        decode_threads: how many of them may decode at once (default: 1 per core).
        batch_size: images per inference call (default: what suits the runtime).
    """
    card = scorer.card
    batch_size = batch_size or scorer.runtime.preferred_batch
    tiles = tiles or TileConfig(tile_size=card.tile_size)
    max_in_flight = max_in_flight or 2 * workers + 2
    size = card.image_size
    decode_slots = threading.Semaphore(decode_threads or os.cpu_count() or 1)
    # Images whose tiles are queued: [score, probabilities per tile, tiles still unscored].
    waiting: deque[list[Any]] = deque()
    batch: list[np.ndarray] = []
    owners: list[tuple[list[Any], int]] = []

    def run_batch() -> Iterator[ImageScore]:
        pixels = np.stack(batch[:batch_size])
        count = len(pixels)
        if count < batch_size and scorer.runtime.fixed_batch:  # Keras: a fixed shape avoids retracing
            pixels = np.concatenate([pixels, np.zeros((batch_size - count, *pixels.shape[1:]), pixels.dtype)])
        probabilities = scorer.class_probabilities(pixels)[:count, card.crack_index]
        for (entry, tile_index), probability in zip(owners[:count], probabilities, strict=True):
            entry[1][tile_index] = float(probability)
            entry[2] -= 1
        del batch[:count], owners[:count]
        while waiting and waiting[0][2] == 0:
            yield _finish(waiting.popleft(), card.threshold, card.class_names, card.crack_class)

    def prepare_key(key: str) -> _Prepared:
        return prepare(key, fetch, size, tiles, max_pixels, decode_slots)

    for prepared in map_bounded(prepare_key, keys, workers=workers, max_in_flight=max_in_flight,
                                thread_name_prefix="decode"):  # fmt: skip
        if prepared.tiles is None:
            yield prepared.score
            continue
        entry = [prepared.score, [0.0] * len(prepared.tiles), len(prepared.tiles)]
        waiting.append(entry)
        for tile_index, tile in enumerate(prepared.tiles):
            batch.append(tile)
            owners.append((entry, tile_index))
            if len(batch) >= batch_size:
                yield from run_batch()
    while batch:
        yield from run_batch()


def _finish(entry: list[Any], threshold: float, class_names: list[str], crack_class: str) -> ImageScore:
    score: ImageScore = entry[0]
    score.tile_probabilities = entry[1]
    score.crack_probability = max(entry[1])
    others = [name for name in class_names if name != crack_class]
    score.label = crack_class if score.crack_probability >= threshold else others[0]
    return score
