"""Profile a batch of images: one row of cheap, decode-level facts per object.

The profile is what data validation (``crack_model.quality.judging``) checks and what drift
detection (``crack_model.quality.drift``) compares with the training data. Per object it records
the bytes (size, SHA-256), what the decoder sees (format, mode, size, EXIF orientation,
whether it decodes at all and why not) and a few photographic statistics on the grey
image: brightness (mean), contrast (standard deviation), blur (variance of the Laplacian:
low means blurred), and the share of blown-out and crushed-black pixels.

Contrast and blur are measured where the model looks: on tile-size windows (up to
``SHARPNESS_WINDOWS`` of the tiles scoring cuts, spread over the image) at the scale scoring cuts
them at, and the median over the windows is the image's. Their bounds come from 227-px patches
at full resolution, and both measures change with scale: the same concrete texture measured on
a whole 4032x3024 photo shrunk to 512 px reads 2.5 to 20 times sharper, enough to quarantine
full-size photos of cracks as "noisy". Brightness and the clipped shares barely depend on scale
and are measured on the whole image at most ``analysis_side`` a side. (Training shrinks a large
image whole to the model's input instead of tiling it; the labeled pools here are patches, one
window each, where both agree.)

Speed and memory: objects are fetched (and their headers read) on a thread pool, at most
``2 * workers`` ahead, and decoded on ``decode_threads`` threads (Pillow and hashlib release the
GIL) while the memory the images being decoded need, estimated from their headers, stays within
``max_in_flight_bytes``; no decoded image outlives its row. JPEGs are decoded straight to
greyscale (``Image.draft``), at a reduced scale when scoring shrinks them to stay within its tile
budget, and 16-bit images go straight to 8 bits.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from crack_model.core import layout
from crack_model.core.concurrency import map_bounded
from crack_model.core.errors import CrackModelError, ImageDecodeError, described, unexpected_failure
from crack_model.core.file_signatures import FormatNotAcceptedError
from crack_model.core.imaging import (
    DEFAULT_MAX_PIXELS,
    DRAFT_FORMATS,
    check_pixels,
    decode_errors,
    load,
    open_lazy,
    read_header,
)
from crack_model.core.jpeg_damage import check_intact
from crack_model.core.jpeg_fast import decode_grey_jpeg
from crack_model.core.object_keys import ObjectInfo, ObjectStore
from crack_model.core.pixel_modes import to_8bit, to_rgb
from crack_model.core.storage import REMOTE_FETCH_THREADS, fetch_threads, open_store
from crack_model.core.tiling import TileConfig, fit_to_tile_budget, tile_boxes
from crack_model.core.uploads import list_uploads, problem_aware_fetch, within_size_limit
from crack_model.data.labeled import is_image_name

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

PROFILE_COLUMNS = (
    "key", "size_bytes", "sha256", "format", "decodable", "decode_error", "width", "height", "mode", "channels",
    "exif_orientation", "brightness", "contrast", "blur", "saturated_fraction", "dark_fraction", "label",
)  # fmt: skip
# The photographic statistics, also the features drift detection can compare.
IMAGE_STATISTICS = ("brightness", "contrast", "blur", "saturated_fraction", "dark_fraction")
SATURATED_LEVEL = 250
DARK_LEVEL = 5
# Tile-size windows contrast and blur are measured on (their median is the image's).
SHARPNESS_WINDOWS = 32
# JPEG modes libjpeg decodes straight to grey when asked (``draft("L", ...)``); CMYK is converted by Pillow.
GREY_DECODED_MODES = ("RGB", "L")
LABELED_PREFIX = "labeled"

Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class ProfileConfig:
    """How objects are profiled.

    Attributes:
        workers: fetch threads; None: as many as the store is worth (``storage.fetch_threads``: 8 for
            S3, where reads wait on the network, 2 for a folder, where more only take turns at the GIL).
        analysis_side: brightness and the clipped shares run on an image scaled to at most this many pixels a side.
        tiles: the tiles scoring cuts (size and budget): contrast and blur are measured on windows of that
            size, at the scale scoring cuts them at.
        max_pixels: larger images are not decoded (the same limit scoring applies).
        max_in_flight_bytes: memory for images being decoded at once (a validation worker has 1 GiB).
        decode_threads: threads decoding (default: one per core).
    """

    workers: int | None = None
    analysis_side: int = 512
    tiles: TileConfig = field(default_factory=TileConfig)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_in_flight_bytes: int = 384 * 2**20
    decode_threads: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise CrackModelError(f"profile workers must be at least 1, got {self.workers}")
        if self.analysis_side < 16:
            raise CrackModelError(f"analysis side must be at least 16 pixels, got {self.analysis_side}")

    def for_store(self, store: ObjectStore) -> ProfileConfig:
        """This config with its fetch threads set for ``store`` when they were left to it."""
        return self if self.workers is not None else replace(self, workers=fetch_threads(store))


def empty_row(key: str, label: str | None = None) -> dict[str, Any]:
    """A row with every column present and nothing known yet."""
    row: dict[str, Any] = dict.fromkeys(PROFILE_COLUMNS)
    row.update(key=key, decodable=False, decode_error="", label=label)
    return row


@dataclass
class _Inspected:
    """An object's row with what the bytes and the header say, and what decoding it will cost."""

    row: dict[str, Any]
    data: bytes = b""
    estimated_bytes: int = 0


def profile_bytes(
    key: str, data: bytes, config: ProfileConfig | None = None, label: str | None = None
) -> dict[str, Any]:
    """Profile one object's bytes; a file that does not decode is a row with a reason, never an exception."""
    config = config or ProfileConfig()
    return _complete(_inspect(key, data, config, label), config)


def _inspect(key: str, data: bytes, config: ProfileConfig, label: str | None) -> _Inspected:
    """Bytes and header columns of the row; an object that will not decode gets its reason here."""
    row = empty_row(key, label)
    row["size_bytes"] = len(data)
    row["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        header = read_header(data, max_pixels=None)
        # Width and height as displayed, the way scoring sees the photo after EXIF rotation.
        row.update(format=header.format, mode=header.mode, channels=header.channels,
                   exif_orientation=header.orientation, width=header.width, height=header.height)  # fmt: skip
        fit = fit_to_tile_budget(header.width, header.height, config.tiles)
        target = fit.scaled if fit.scaled != fit.original else None
        # As _decode_gray will decode it: a big JPEG at a reduced scale (imaging.DEFAULT_MAX_PIXELS).
        check_pixels(header.stored_width, header.stored_height, config.max_pixels, decoded=header.decoded_size(target))
        pixels = header.decoded_pixels(target)
        if header.format in DRAFT_FORMATS and header.mode in GREY_DECODED_MODES:
            # Decoded straight to grey (1 byte a pixel), then its array and at most a resized copy.
            estimated = len(data) + 3 * pixels
        else:  # the decoded image, then at most an RGB and a grey copy of it (see _decode_gray)
            estimated = len(data) + header.decoded_bytes(target) + header.decoder_bytes + 5 * pixels
    except ImageDecodeError as error:
        row["decode_error"] = str(error)
        if isinstance(error, FormatNotAcceptedError):
            row["format"] = error.format_name
        return _Inspected(row)
    except Exception as error:  # a fault of ours on one odd file must not sink the batch
        log.exception("profiling %r failed", key)
        row["decode_error"] = unexpected_failure(error)
        return _Inspected(row)
    return _Inspected(row, data, estimated)


def _complete(inspected: _Inspected, config: ProfileConfig) -> dict[str, Any]:
    """Decode an inspected object and add the image statistics to its row."""
    row = inspected.row
    if not inspected.data:
        return row
    try:
        gray = _decode_gray(inspected.data, config)
        row.update(exposure_statistics(_within(gray, config.analysis_side)))
        row.update(window_statistics(gray, config.tiles))
    except ImageDecodeError as error:
        row["decode_error"] = str(error)
        return row
    except Exception as error:  # a fault of ours on one odd file must not sink the batch
        log.exception("profiling %r failed", row["key"])
        row["decode_error"] = unexpected_failure(error)
        return row
    row["decodable"] = True
    return row


def image_statistics(gray: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, blur and clipping of a 2-D uint8 grey image, measured on the whole of it."""
    pixels = gray.astype(np.float32)
    return {**exposure_statistics(gray), "contrast": float(pixels.std()), "blur": laplacian_variance(pixels)}


def exposure_statistics(gray: np.ndarray) -> dict[str, float]:
    """Brightness (mean grey) and the shares of blown-out and crushed-black pixels of a 2-D uint8 grey image."""
    count = gray.size
    return {
        "brightness": float(gray.mean(dtype=np.float64)),
        "saturated_fraction": float(np.count_nonzero(gray >= SATURATED_LEVEL) / count),
        "dark_fraction": float(np.count_nonzero(gray <= DARK_LEVEL) / count),
    }


def laplacian_variance(pixels: np.ndarray) -> float:
    """The usual focus measure: the variance of the 4-neighbour Laplacian on the interior (0 when there is none)."""
    laplacian = pixels[:-2, 1:-1] + pixels[2:, 1:-1] + pixels[1:-1, :-2] + pixels[1:-1, 2:] - 4.0 * pixels[1:-1, 1:-1]
    return float(laplacian.var()) if laplacian.size else 0.0


def window_statistics(gray: np.ndarray, tiles: TileConfig) -> dict[str, float]:
    """Contrast and blur as the median over tile-size windows of ``gray``, which is at the scale tiles are cut at.

    A patch the size of a tile is its own window, so its figures are those of the whole image.
    """
    height, width = gray.shape
    boxes = tile_boxes(width, height, tiles)
    count = min(SHARPNESS_WINDOWS, len(boxes))
    contrasts, blurs = [], []
    for left, top, right, bottom in (boxes[index * len(boxes) // count] for index in range(count)):
        window = gray[top:bottom, left:right].astype(np.float32)  # one at a time: ~0.2 MB, not 32 of them
        contrasts.append(float(window.std()))
        blurs.append(laplacian_variance(window))
    return {"contrast": float(np.median(contrasts)), "blur": float(np.median(blurs))}


def _decode_gray(data: bytes, config: ProfileConfig) -> np.ndarray:
    """Decode to a grey uint8 array at the size scoring tiles the image at (``tiling.fit_to_tile_budget``).

    Fails on the same inputs as ``imaging.open_image`` (what scoring uses), with the same reasons."""
    image = open_lazy(data, max_pixels=config.max_pixels)
    with decode_errors():
        stored = image.size
        scaled = fit_to_tile_budget(*stored, config.tiles).scaled  # the stored size: the fit is symmetric
        if image.format in DRAFT_FORMATS:
            # Straight to grey (libjpeg skips the colour planes), at 1/2, 1/4 or 1/8 scale when scoring shrinks it.
            image.draft("L", scaled)
            check_pixels(*stored, config.max_pixels, decoded=image.size)  # as open_image: checked, not assumed
            # Pillow's pixels, through strict libjpeg: a damaged picture refused as in open_image (jpeg_damage.py).
            if image.mode != "L":
                check_intact(data)  # CMYK: Pillow decodes it, so libjpeg is asked first
            elif (grey := decode_grey_jpeg(data, image.size)) is not None:
                image = Image.fromarray(grey)
        load(image)
        gray = _to_grey(image)
        if gray.size != scaled:
            gray = gray.resize(scaled, Image.Resampling.BILINEAR)
        return np.asarray(gray, dtype=np.uint8)


def _within(gray: np.ndarray, side: int) -> np.ndarray:
    """``gray`` shrunk to at most ``side`` pixels a side (as it is when it fits)."""
    height, width = gray.shape
    if max(width, height) <= side:
        return gray
    # Not ImageOps.contain: it makes a 2x65000 strip 0 pixels wide, and its statistics NaN.
    scale = side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def _to_grey(image: Image.Image) -> Image.Image:
    """8-bit grey as ``to_rgb(image).convert("L")`` gives it, without a full-size RGB copy where Pillow can skip it."""
    image = to_8bit(image)
    if image.mode == "L":
        return image
    if image.mode in ("RGB", "RGBA", "RGBX"):  # the same luma of the colour bands; alpha is ignored either way
        return image.convert("L")
    return to_rgb(image).convert("L")


def profile_object(key: str, fetch: Fetch, config: ProfileConfig, label: str | None = None) -> dict[str, Any]:
    """Fetch and profile one object; a read failure is a row with a reason."""
    return _complete(_fetch_and_inspect(key, fetch, config, label), config)


def _fetch_and_inspect(key: str, fetch: Fetch, config: ProfileConfig, label: str | None) -> _Inspected:
    try:
        data = fetch(key)
    except CrackModelError as error:
        row = empty_row(key, label)
        row["decode_error"] = f"cannot read: {error}"
        return _Inspected(row)
    except Exception as error:  # network and permission errors must not sink the batch
        row = empty_row(key, label)
        row["decode_error"] = f"cannot read: {described(error)}"
        return _Inspected(row)
    return _inspect(key, data, config, label)


def iter_profile_rows(
    keys: Iterable[str],
    fetch: Fetch,
    config: ProfileConfig | None = None,
    labels: Callable[[str], str | None] | None = None,
    object_sizes: Mapping[str, int] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one profile row per key, in order.

    ``workers`` threads fetch and read headers; ``decode_threads`` decode, with up to twice as many
    objects (or ``2 * workers``) fetched ahead, while the estimated memory of the images being decoded stays
    within ``max_in_flight_bytes`` (an image larger than that is decoded alone). With
    ``object_sizes`` (as listed; 0 or missing: unknown), fetched bytes not yet taken for decoding
    stay within a quarter of that budget; without, only their number is bounded.
    """

    config = config or ProfileConfig()
    workers = config.workers or REMOTE_FETCH_THREADS  # no store to ask: as for S3

    def inspect(key: str) -> _Inspected:
        return _fetch_and_inspect(key, fetch, config, labels(key) if labels else None)

    def complete(inspected: _Inspected) -> dict[str, Any]:
        return _complete(inspected, config)

    sizes = object_sizes or {}
    inspected = map_bounded(inspect, keys, workers=workers, thread_name_prefix="profile-fetch",
                            max_in_flight_bytes=config.max_in_flight_bytes // 4 if sizes else None,
                            size_of=lambda key: sizes.get(key, 0))  # fmt: skip
    decoders = config.decode_threads or os.cpu_count() or 1
    yield from map_bounded(complete, inspected, workers=decoders,
                           max_in_flight=2 * max(workers, decoders), max_in_flight_bytes=config.max_in_flight_bytes,
                           size_of=lambda item: item.estimated_bytes, thread_name_prefix="profile-decode")  # fmt: skip


def rows_to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows to a DataFrame with the profile's columns and dtypes, even when there are no rows."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=list(PROFILE_COLUMNS))
    for column in ("size_bytes", "width", "height", "channels", "exif_orientation"):
        frame[column] = frame[column].astype("Int64")
    for column in IMAGE_STATISTICS:
        frame[column] = frame[column].astype("float64")
    frame["decodable"] = frame["decodable"].astype(bool)
    for column in ("key", "sha256", "format", "decode_error", "mode", "label"):
        frame[column] = frame[column].astype(object)
    return frame


def profile_listed(
    store: ObjectStore,
    listed: Iterable[ObjectInfo],
    config: ProfileConfig | None = None,
    labels: Callable[[str], str | None] | None = None,
) -> pd.DataFrame:
    """Profile listed objects, one row each in the order given.

    An entry with a listing ``problem`` (a link, an unusable name, over the upload size limit) is never
    read: it profiles as undecodable, with the problem as its reason.
    """
    listed = list(listed)
    config = (config or ProfileConfig()).for_store(store)
    fetch = problem_aware_fetch(store.read, listed)
    sizes = {info.key: info.size for info in listed if info.size and not info.problem}  # bounds fetched bytes
    return rows_to_frame(iter_profile_rows([info.key for info in listed], fetch, config, labels, sizes))


def profile_batch(store: ObjectStore | str, batch_id: str, config: ProfileConfig | None = None) -> pd.DataFrame:
    """Profile every upload of ``incoming/<batch_id>/`` (label column empty)."""
    store = open_store(store) if isinstance(store, str) else store
    return profile_listed(store, list_uploads(store, batch_id), config)


def label_of(key: str, prefix: str = "") -> str | None:
    """The class folder of ``<prefix>/<class>/.../<file>``; None for a key outside a class folder."""
    relative = key.removeprefix(prefix.strip("/") + "/") if prefix.strip("/") else key
    if relative == key and prefix.strip("/"):
        return None
    parts = relative.split("/")
    return parts[0] if len(parts) >= 2 else None


def labeled_objects(store: ObjectStore, prefix: str = LABELED_PREFIX) -> list[ObjectInfo]:
    """Image files inside class folders under ``prefix`` (``""`` for a store whose root is the labeled tree),
    sorted by key, with the upload size limit applied."""
    listing = prefix.strip("/") + "/" if prefix.strip("/") else ""
    found = []
    skipped = 0
    for info in store.list(listing):
        name = info.key.rsplit("/", 1)[-1]
        if label_of(info.key, prefix) is None or layout.is_marker(info.key) or not is_image_name(name):
            skipped += 1
            continue
        found.append(within_size_limit(info))
    if skipped:
        log.info("left out %d object(s) under %r that are not images inside a class folder", skipped, listing)
    return sorted(found, key=lambda info: info.key)


def profile_labeled(
    source: ObjectStore | str, prefix: str = LABELED_PREFIX, config: ProfileConfig | None = None
) -> pd.DataFrame:
    """Profile a labeled tree ``<prefix>/<class>/...`` of a store (or a local folder with ``prefix=""``)."""
    store = open_store(source) if isinstance(source, str) else source
    return profile_listed(store, labeled_objects(store, prefix), config, labels=lambda key: label_of(key, prefix))
