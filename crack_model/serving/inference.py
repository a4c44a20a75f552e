"""The streaming core of scoring: fetch, decode and tile in threads; infer in batches.

Memory stays bounded whatever the number and the size of the images. Objects are fetched and
their headers read by ``workers`` threads, at most ``max_in_flight`` groups ahead (small objects
travel in groups, ``object_groups``); they are decoded and tiled by ``decode_threads`` threads
while the pixel memory of the images being decoded, tiled or scored stays within
``max_in_flight_bytes`` (estimated from each header before decoding; an image larger than the
budget is decoded alone). Each image is scored on at most ``TileConfig.max_tiles`` tiles (larger
ones are downscaled, and the row says so). Tiles are copied once, into the batch being filled;
besides the batches the model's copies are scoring, one more waits, and their arrays are reused
from batch to batch. With ``confirm``, a photo of several tiles some tile lit keeps copies of its
highest tiles, and their flips are scored after its tiles, in the same batches (photo_confirmation.py);
with ``confirm_patches``, so does a one-tile image scored in the band.
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field

import numpy as np

from crack_model.core.concurrency import consecutive_runs, map_bounded
from crack_model.core.errors import (
    CrackModelError,
    ImageDecodeError,
    described,
    store_did_not_answer,
    unexpected_failure,
)
from crack_model.core.frames import frame_note, image_without_frame, without_frame
from crack_model.core.imaging import DEFAULT_MAX_PIXELS, ImageHeader, OpenedImage, open_header, open_image
from crack_model.core.jpeg_fast import decode_clean_jpeg, decodes_fast
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import ModelCard
from crack_model.core.tiling import (
    Box,
    TileConfig,
    TileFit,
    cut_tiles,
    fit_to_tile_budget,
    pad_to_fit,
    tile_boxes,
    tile_count,
    tile_views,
)
from crack_model.serving.inference_pool import InferencePool
from crack_model.serving.photo_decision import PhotoRule, decision_note, lit_by_rule, photo_is_crack
from crack_model.serving.runtimes import copies
from crack_model.serving.scorer import Scorer
from crack_model.serving.waiting_image import WaitingImage

log = module_logger(__name__)

Fetch = Callable[[str], bytes]
# A scoring worker's budget is 1 GiB: the runtime and the model take 50-150 MB (LiteRT), the
# batches of tiles a few MB each (copies + 2 arrays), and this much is left for images being decoded, tiled and scored.
DEFAULT_IN_FLIGHT_BYTES = 384 * 2**20
# Small objects travel between threads in groups (``object_groups``): at most this many objects and listed
# bytes, and at most this much estimated decoding memory (``decoding_groups``; a 227-px patch: ~0.5 MB).
GROUP_OBJECTS = 16
GROUP_BYTES = 2**20
GROUP_DECODED_BYTES = 16 * 2**20


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
    # The highest mean of a top tile over its flips (photo_confirmation.py); None: not scored (none lit, or a
    # one-tile image outside the band or under a card without patch confirmation).
    confirmation: float | None = None
    # How the image was changed to be scored (e.g. downscaled to stay within the tile budget).
    note: str = ""
    # The store did not answer for it (errors.store_did_not_answer): a later attempt may read it.
    unanswered: bool = False


@dataclass
class _Fetched:
    """An object read and its header checked; what decoding it will cost."""

    score: ImageScore
    data: bytes = b""
    opened: OpenedImage | None = None
    fit: TileFit | None = None
    estimated_bytes: int = 0


# A multi-page TIFF or an animated GIF, WebP or PNG: a crack on a later page would be missed without a word.
MORE_FRAMES_NOTE = "only its first page or frame was scored: the file holds more; upload each as its own photo"


@dataclass
class _Prepared:
    """An image's tiles at the model's input size (slices of its decoded pixels where they can be), or an error row."""

    score: ImageScore
    tiles: list[np.ndarray] | np.ndarray | None = None


def object_groups(keys: Iterable[str], sizes: Mapping[str, int], most: int = GROUP_OBJECTS) -> Iterator[list[str]]:
    """Consecutive keys in groups of at most ``most`` whose listed sizes add up to at most ``GROUP_BYTES``.

    Small objects go through the fetching threads a group at a time: a 227-px patch costs about
    0.35 ms of CPU to read, decode and tile, and handing it from thread to thread alone (a future,
    a wake-up at each end) cost about as much again. An object of unknown or larger size goes alone.
    """

    def listed(key: str) -> int:
        size = sizes.get(key, 0)
        return size if size > 0 else GROUP_BYTES + 1  # unknown: counted as too large to share a group

    return consecutive_runs(keys, listed, GROUP_BYTES, most)


def decoding_groups(fetched_groups: Iterable[list[_Fetched]], limit: int) -> Iterator[list[_Fetched]]:
    """The fetched groups cut again by what decoding them will hold (``estimated_bytes``, from the headers).

    A small file can decode large (a flat 12 MP PNG is 40 KB): the listed size that formed the group
    says nothing about that. Each group decoded together holds at most ``limit``, and an image
    estimated above that is decoded alone, so the decoding budget sees each large image by itself.
    """
    for fetched in fetched_groups:
        yield from consecutive_runs(fetched, lambda item: item.estimated_bytes, limit)


def estimated_bytes(data: bytes, header: ImageHeader, fit: TileFit, tiles: TileConfig, image_size: int) -> int:
    """Memory one image holds from decoding until its tiles are scored: bytes, pixels, canvas, tiles."""
    scaled = None if fit.scaled == fit.original else fit.scaled
    canvas = 4 * fit.padded[0] * fit.padded[1] if fit.padded != fit.scaled else 0
    tile_pixels = tile_count(*fit.padded, tiles) * image_size * image_size * 3
    return len(data) + header.peak_bytes(scaled) + canvas + tile_pixels


def fetch_object(key: str, fetch: Fetch, image_size: int, tiles: TileConfig, max_pixels: int) -> _Fetched:
    """Read one object and its header; every failure becomes an error row (nothing is decoded here)."""
    score = ImageScore(key=key)
    try:
        data = fetch(key)
    except CrackModelError as error:  # some carry their own row status (``changed``: not what was validated)
        status = getattr(error, "row_status", "error")
        score.status, score.error = status, str(error) if status != "error" else f"cannot read: {error}"
        return _Fetched(score)
    except Exception as error:  # network and permission errors must not sink the batch
        score.status, score.error = "error", f"cannot read: {described(error)}"
        score.unanswered = store_did_not_answer(error)
        return _Fetched(score)
    score.size = len(data)
    score.sha256 = hashlib.sha256(data).hexdigest()
    try:
        opened = open_header(data, max_pixels=max_pixels)
        header = opened.header
        score.width, score.height = header.width, header.height
        fit = fit_to_tile_budget(header.width, header.height, tiles, max_pixels)
        cost = estimated_bytes(data, header, fit, tiles, image_size)
    except ImageDecodeError as error:
        score.status, score.error = "error", str(error)
        return _Fetched(score)
    except Exception as error:  # a fault of ours on one odd file must not sink the batch
        log.exception("reading the header of %r failed", key)
        score.status, score.error = "error", unexpected_failure(error)
        return _Fetched(score)
    return _Fetched(score, data, opened, fit, cost)


def prepare(fetched: _Fetched, image_size: int, tiles: TileConfig, max_pixels: int) -> _Prepared:
    """Decode and tile one fetched object (at the size its tile budget allows); a failure becomes an error row."""
    score, fit = fetched.score, fetched.fit
    if fit is None:
        return _Prepared(score)
    try:
        # A clean JPEG tiled as it is skips Pillow (jpeg_fast.py); anything else, and any doubt, is Pillow's.
        header = None if fetched.opened is None else fetched.opened.header
        whole = header is not None and header.stored_width * header.stored_height <= max_pixels
        # Tried on the fast path: a strict libjpeg decode, which has checked the file for damage (jpeg_damage.py).
        tried = whole and header is not None and not fit.changed and decodes_fast(header)
        decoded = decode_clean_jpeg(fetched.data, header) if header is not None and tried else None
        if decoded is not None:
            # A turned photo's pixels are a flipped or transposed view, whose tiles copy ~10x slower than
            # upright ones (0.6 ms against 0.05): it is made upright here, in a decoding thread, once
            # (~0.2 s for 12 MP), not tile by tile on the thread that feeds the model.
            decoded, frame = without_frame(np.ascontiguousarray(decoded))
            boxes = tile_boxes(fit.original[0], fit.original[1], tiles)
            pixels: list[np.ndarray] | np.ndarray = tile_views(decoded, boxes, image_size)  # copied once: into a batch
        else:
            # Always the size the tiles were planned for: never open_image's own reduction of a JPEG over the limit.
            image, frame = image_without_frame(
                open_image(fetched.data, max_pixels=max_pixels, size=fit.scaled, opened=fetched.opened, checked=tried)
            )
            image = pad_to_fit(image, fit)
            boxes = tile_boxes(image.width, image.height, tiles)
            pixels = cut_tiles(image, boxes, image_size)
        expected = (image_size, image_size, 3)
        if any(tile.shape != expected for tile in pixels):  # checked here, where a bad tile costs one row
            raise RuntimeError(
                f"a tile came out {next(t.shape for t in pixels if t.shape != expected)}, not {expected}"
            )
    except ImageDecodeError as error:
        score.status, score.error = "error", str(error)
        return _Prepared(score)
    except (OSError, ValueError) as error:
        score.status, score.error = "error", f"cannot decode: {type(error).__name__}: {error}"
        return _Prepared(score)
    except Exception as error:  # a fault of ours on one odd file must not sink the batch
        log.exception("decoding %r failed", score.key)
        score.status, score.error = "error", unexpected_failure(error)
        return _Prepared(score)
    score.boxes = [fit.to_original(box) for box in boxes]
    score.tile_count = len(boxes)
    more = MORE_FRAMES_NOTE if fetched.opened is not None and fetched.opened.header.more_frames else ""
    score.note = "; ".join(part for part in (fit.note, frame_note(frame), more) if part)
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
    max_in_flight_bytes: int = DEFAULT_IN_FLIGHT_BYTES,
    object_sizes: Mapping[str, int] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode_threads: int | None = None,
    inference_copies: int | None = None,
    confirm: bool | None = None,
    confirm_patches: bool | None = None,
) -> Generator[ImageScore, None, None]:
    """Score each key and yield one ImageScore per key (order not guaranteed).

    Args:
        workers: threads fetching objects (I/O: more helps against a slow store).
        max_in_flight: groups of objects (``object_groups``: one large object, or up to 16 small ones) fetched
            ahead of decoding (default ``2 * workers + 2``); decoded groups wait ahead of scoring up to this many
            too, and at least ``2 * decode_threads + 2``.
        max_in_flight_bytes: memory for images being decoded, tiled and scored (estimated from headers).
        object_sizes: the objects' sizes as listed (0 or missing: unknown). With them, fetched bytes not yet
            taken for decoding stay within a quarter of ``max_in_flight_bytes`` (one group alone if larger), and
            small objects travel in groups; without, only their number is bounded, which matters for uncompressed
            giants (an 80 MP TIFF is 320 MB), and each object travels alone.
        decode_threads: threads decoding and tiling (default: 1 per 2 cores).
        batch_size: images per inference call (default: what suits the runtime).
        inference_copies: single-threaded copies of a LiteRT model scoring batches side by side (default: 1 per
            core; 1: one interpreter on the scorer's threads). Keras always scores one batch at a time.
        confirm: score the flips of the highest tiles of each photo some tile lit, for ``ImageScore.confirmation``
            (default: when the card's photo rule asks for it; the photo checks ask always).
        confirm_patches: score the flips of each one-tile image scored from the threshold up to
            ``PATCH_CONFIRM_BELOW`` (default: when the card has ``patch_confirm_threshold``).
    """
    card = scorer.card
    batch_size = batch_size or scorer.runtime.preferred_batch
    tiles = tiles or TileConfig(tile_size=card.tile_size)
    max_in_flight = max_in_flight or 2 * workers + 2
    size = card.image_size
    # Decoding costs a small part of what inference does per image (a 227 px JPEG: 0.27 of 3.4 ms of CPU; a
    # 12 MP photo: ~0.1 of 1.5 s), so one decoding thread per two cores keeps the model's copies fed, and
    # fewer threads contend with them for the cores.
    decode_threads = decode_threads or max(1, (os.cpu_count() or 1) // 2)
    confirm = card.photo_confirm_threshold is not None if confirm is None else confirm
    confirm_patches = card.patch_confirm_threshold is not None if confirm_patches is None else confirm_patches
    waiting: deque[WaitingImage] = deque()  # images whose tiles are queued, in order
    to_confirm: deque[WaitingImage] = deque()  # images scored whose kept tiles' flips are still to be queued
    # Tiles are copied once, straight into the batch being filled (a photo needs no array of all its tiles:
    # 65 MB for 12 MP), and a batch's array is reused once its batch is scored.
    filling: np.ndarray | None = None
    free_arrays: list[np.ndarray] = []
    # (image, tile index) of each tile in the batch being filled; a flip's index counts on after the image's tiles.
    owners: list[tuple[WaitingImage, int]] = []
    # The owners of the tiles of each batch being scored, and its array, oldest first.
    scoring: deque[tuple[list[tuple[WaitingImage, int]], np.ndarray]] = deque()
    pool = InferencePool(copies(scorer.runtime, inference_copies or os.cpu_count() or 1))

    def add_tile(tile: np.ndarray, entry: WaitingImage, tile_index: int) -> Iterator[ImageScore]:
        nonlocal filling
        if filling is None:
            filling = free_arrays.pop() if free_arrays else np.empty((batch_size, size, size, 3), np.uint8)
        filling[len(owners)] = tile
        owners.append((entry, tile_index))
        if len(owners) == batch_size:
            yield from run_batch()

    def run_batch() -> Iterator[ImageScore]:
        """Send the batch being filled to the model; take results back while every copy is busy."""
        nonlocal filling
        assert filling is not None
        count = len(owners)
        if scorer.runtime.fixed_batch:  # Keras: a fixed shape avoids retracing
            filling[count:] = 0
        pool.submit(filling if scorer.runtime.fixed_batch else filling[:count])
        scoring.append((owners[:], filling))
        owners.clear()
        filling = None
        while pool.full:
            yield from collect()

    def collect() -> Iterator[ImageScore]:
        scored, array = scoring.popleft()
        probabilities = pool.take()[: len(scored), card.crack_index]
        free_arrays.append(array)  # its batch is scored: the runtime no longer reads it (nothing fills it in here)
        for position, ((entry, tile_index), probability) in enumerate(zip(scored, probabilities, strict=True)):
            if entry.record(tile_index, float(probability), array[position] if entry.confirm else None, card.threshold):
                to_confirm.append(entry)  # its flips are queued by the main loop, not from in here
        while waiting and waiting[0].unscored == 0:
            yield _finish(waiting.popleft(), card)

    def queue_flips() -> Iterator[ImageScore]:
        while to_confirm:
            entry = to_confirm.popleft()
            for flip_index, view in entry.flip_tiles():
                yield from add_tile(view, entry, flip_index)

    def fetch_group(group: list[str]) -> list[_Fetched]:
        return [fetch_object(key, fetch, size, tiles, max_pixels) for key in group]

    def prepare_group(group: list[_Fetched]) -> list[_Prepared]:
        prepared = []
        for fetched in group:
            prepared.append(prepare(fetched, size, tiles, max_pixels))
            fetched.data, fetched.opened = b"", None  # decoded: its bytes must not live on with its group
        return prepared

    sizes = object_sizes or {}
    # A short batch is spread over every fetching thread (20 objects from S3: 10 groups of 2, not one of 16).
    most = min(GROUP_OBJECTS, max(1, len(keys) // max(1, workers))) if isinstance(keys, Sized) else GROUP_OBJECTS
    fetched = map_bounded(fetch_group, object_groups(keys, sizes, most), workers=workers, max_in_flight=max_in_flight,
                          max_in_flight_bytes=max_in_flight_bytes // 4 if sizes else None, thread_name_prefix="fetch",
                          size_of=lambda group: sum(sizes.get(key, 0) for key in group))  # fmt: skip
    # Enough decoded groups ahead to keep every decoding thread busy (with 2 fetching threads, 6 would not on 16 cores).
    decode_ahead = max(max_in_flight, 2 * decode_threads + 2)
    parts = decoding_groups(fetched, min(GROUP_DECODED_BYTES, max_in_flight_bytes))
    prepared_groups = map_bounded(prepare_group, parts, workers=decode_threads,
                                  max_in_flight=decode_ahead,
                                  max_in_flight_bytes=max_in_flight_bytes, thread_name_prefix="decode",
                                  size_of=lambda group: sum(item.estimated_bytes for item in group))  # fmt: skip

    def queue(prepared: _Prepared) -> Iterator[ImageScore]:
        """Put an image's tiles in line for the model; once this returns, only copies of its waiting tiles remain."""
        pixels, prepared.tiles = prepared.tiles, None
        if pixels is None:  # an error row
            yield prepared.score
            return
        entry = WaitingImage(prepared.score, [0.0] * len(pixels), len(pixels),
                             confirm=confirm if len(pixels) > 1 else confirm_patches)  # fmt: skip
        waiting.append(entry)
        for tile_index, tile in enumerate(pixels):
            yield from add_tile(tile, entry, tile_index)

    try:
        with pool:
            for group in prepared_groups:
                for prepared in group:
                    yield from queue(prepared)
                    yield from queue_flips()
            # The last batches: each scored batch may queue flips, which make a batch of their own.
            while owners or pool.pending or to_confirm:
                if to_confirm:
                    yield from queue_flips()
                elif pool.pending:
                    yield from collect()
                else:
                    yield from run_batch()
    finally:  # the stages stop here, in this thread, not later from the garbage collector (concurrency.py)
        prepared_groups.close()
        fetched.close()


def _finish(entry: WaitingImage, card: ModelCard) -> ImageScore:
    """Label a fully scored image by the card's photo rule (photo_decision.py), the same for every runtime."""
    score: ImageScore = entry.score
    score.tile_probabilities = entry.probabilities
    score.crack_probability = max(entry.probabilities)
    score.confirmation = entry.confirmation
    rule = PhotoRule.of(card)
    is_crack = photo_is_crack(score.tile_probabilities, score.boxes, rule, score.confirmation)
    others = [name for name in card.class_names if name != card.crack_class]
    score.label = card.crack_class if is_crack else others[0]
    # A row whose highest tile reaches the threshold but is no crack says why.
    lit = not is_crack and lit_by_rule(score.tile_probabilities, score.boxes, rule)
    why = decision_note(score.tile_probabilities, rule, is_crack, score.confirmation if lit else None)
    score.note = "; ".join(part for part in (score.note, why) if part)
    return score
