"""Profile a batch of images: one row of cheap, decode-level facts per object.

The profile is what data validation (``crack_model.quality.judging``) checks and what drift
detection (``crack_model.quality.drift``) compares with the training data. Per object it records
the bytes (size, SHA-256), what the decoder sees (format, mode, size, EXIF orientation,
whether it decodes at all and why not) and a few photographic statistics on the grey
image: brightness (mean), contrast (standard deviation), blur (variance of the Laplacian:
low means blurred), and the share of blown-out and crushed-black pixels.

Contrast and blur are measured on tile-size windows at the scale scoring cuts tiles at (``grey_image``).

Speed and memory: objects are fetched (and their headers read) on a thread pool, at most
``2 * workers`` ahead, and decoded on ``decode_threads`` threads (Pillow and hashlib release the
GIL) while the memory the images being decoded need, estimated from their headers, stays within
``max_in_flight_bytes``; no decoded image outlives its row.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from crack_model.core import layout
from crack_model.core.concurrency import map_bounded
from crack_model.core.errors import (
    CrackModelError,
    ImageDecodeError,
    StoreUnansweredError,
    described,
    store_did_not_answer,
    unexpected_failure,
)
from crack_model.core.file_signatures import FormatNotAcceptedError
from crack_model.core.imaging import (
    DEFAULT_MAX_PIXELS,
    DRAFT_FORMATS,
    check_pixels,
    read_header,
)
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectInfo, ObjectNotFoundError, ObjectStore
from crack_model.core.storage import REMOTE_FETCH_THREADS, fetch_threads, open_store
from crack_model.core.tiling import TileConfig, fit_to_tile_budget
from crack_model.core.uploads import list_uploads, upload_fetch, within_size_limit
from crack_model.data.image_names import why_not_an_image
from crack_model.quality.grey_image import decode_grey, picture_statistics

if TYPE_CHECKING:
    import pandas as pd

log = module_logger(__name__)

PROFILE_COLUMNS = (
    "key", "size_bytes", "sha256", "format", "decodable", "decode_error", "width", "height", "mode", "channels",
    "exif_orientation", "brightness", "contrast", "blur", "saturated_fraction", "dark_fraction", "label",
)  # fmt: skip
# The photographic statistics, also the features drift detection can compare.
IMAGE_STATISTICS = ("brightness", "contrast", "blur", "saturated_fraction", "dark_fraction")
# JPEG modes libjpeg decodes straight to grey when asked (``draft("L", ...)``); CMYK is converted by Pillow.
GREY_DECODED_MODES = ("RGB", "L")
LABELED_PREFIX = "labeled"

Fetch = Callable[[str], bytes]
# The reason of an object listed, then gone when its bytes were read (deleted or moved away meanwhile): not a bad
# upload, so batch validation leaves it out of the judging (``batch_validation``) rather than quarantine it.
GONE_WHEN_READ = "gone when read: "


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
        retry_unanswered: an object the store did not answer for raises ``StoreUnansweredError`` (the caller
            retries the whole step) instead of becoming a row that cannot be read.
    """

    workers: int | None = None
    analysis_side: int = 512
    tiles: TileConfig = field(default_factory=TileConfig)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_in_flight_bytes: int = 384 * 2**20
    decode_threads: int | None = None
    retry_unanswered: bool = False

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
        fit = fit_to_tile_budget(header.width, header.height, config.tiles, config.max_pixels)
        target = fit.scaled if fit.scaled != fit.original else None
        # As decode_grey will decode it: a big JPEG at a reduced scale (imaging.DEFAULT_MAX_PIXELS).
        check_pixels(header.stored_width, header.stored_height, config.max_pixels, decoded=header.decoded_size(target))
        pixels = header.decoded_pixels(target)
        if header.format in DRAFT_FORMATS and header.mode in GREY_DECODED_MODES:
            # Decoded straight to grey (1 byte a pixel), then its array and at most a resized copy.
            estimated = len(data) + 3 * pixels
        else:  # the decoded image, then at most an RGB and a grey copy of it (see decode_grey)
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
        gray = decode_grey(inspected.data, config.tiles, config.max_pixels)
        row.update(picture_statistics(gray, config.tiles, config.analysis_side))
    except ImageDecodeError as error:
        row["decode_error"] = str(error)
        return row
    except Exception as error:  # a fault of ours on one odd file must not sink the batch
        log.exception("profiling %r failed", row["key"])
        row["decode_error"] = unexpected_failure(error)
        return row
    row["decodable"] = True
    return row


def profile_object(key: str, fetch: Fetch, config: ProfileConfig, label: str | None = None) -> dict[str, Any]:
    """Fetch and profile one object; a read failure is a row with a reason."""
    return _complete(_fetch_and_inspect(key, fetch, config, label), config)


def _fetch_and_inspect(key: str, fetch: Fetch, config: ProfileConfig, label: str | None) -> _Inspected:
    try:
        data = fetch(key)
    except ObjectNotFoundError as error:
        row = empty_row(key, label)
        row["decode_error"] = f"{GONE_WHEN_READ}{error}"
        return _Inspected(row)
    except CrackModelError as error:
        row = empty_row(key, label)
        row["decode_error"] = f"cannot read: {error}"
        return _Inspected(row)
    except Exception as error:  # network and permission errors must not sink the batch
        if config.retry_unanswered and store_did_not_answer(error):
            raise StoreUnansweredError(f"the store did not answer for {key}: {described(error)}") from error
        row = empty_row(key, label)
        # "from the store": the batch's reasons say to check the store, not the camera (judging._unread_note).
        where = "" if isinstance(error, MemoryError) else " from the store"
        row["decode_error"] = f"cannot read{where}: {described(error)}"
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
    fetch = upload_fetch(store, listed)
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


def labeled_objects(
    store: ObjectStore, prefix: str = LABELED_PREFIX, left_out: dict[str, str] | None = None
) -> list[ObjectInfo]:
    """Image files inside class folders under ``prefix`` (``""`` for a store whose root is the labeled tree),
    sorted by key, with the upload size limit applied.

    A file inside a class folder that is left out (hidden, or not named as an image: ``.jfif`` is, a name
    without an extension is not) goes into ``left_out`` with why, for the suite's outcome to name it; so does
    an entry the store cannot serve that is not an image file of a class folder (a class or slice folder that
    is a symbolic link or cannot be listed), with the store's reason. Markers and the files outside the class
    folders (notes, the pool's digest) are not the pool.
    """
    listing = prefix.strip("/") + "/" if prefix.strip("/") else ""
    found = []
    skipped: dict[str, str] = {}
    for info in store.list(listing):
        if layout.is_marker(info.key):
            continue
        if label_of(info.key, prefix) is None:
            if info.problem:  # a class folder that is a link, or cannot be listed: its photos are all missing
                skipped[info.key] = info.problem
            continue
        if why := why_not_an_image(info.key.removeprefix(listing)):
            # A slice folder that is a link is one entry with no image name: the store's reason is the true one.
            skipped[info.key] = info.problem or why
            continue
        found.append(within_size_limit(info))
    if skipped:
        examples = ", ".join(sorted(skipped)[:5]) + (", ..." if len(skipped) > 5 else "")
        log.warning("left out %d entries of %r (hidden, not named as images, or unreadable): %s",
                    len(skipped), listing, examples)  # fmt: skip
    if left_out is not None:
        left_out.update(skipped)
    return sorted(found, key=lambda info: info.key)


def profile_labeled(
    source: ObjectStore | str, prefix: str = LABELED_PREFIX, config: ProfileConfig | None = None
) -> pd.DataFrame:
    """Profile a labeled tree ``<prefix>/<class>/...`` of a store (or a local folder with ``prefix=""``)."""
    store = open_store(source) if isinstance(source, str) else source
    return profile_listed(store, labeled_objects(store, prefix), config, labels=lambda key: label_of(key, prefix))
