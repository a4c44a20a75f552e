"""Score local image files or folders and write one CSV row per image."""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectTooLargeError, printable_key, read_within, shown_key
from crack_model.core.tiling import DEFAULT_MAX_TILES, TileConfig, check_tile_budget
from crack_model.core.uploads import MAX_UPLOAD_BYTES, size_problem
from crack_model.data.image_names import why_not_an_image
from crack_model.serving.inference import ImageScore, score_images
from crack_model.serving.scorer import Scorer

log = module_logger(__name__)
SKIPPED_SHOWN = 10  # files left out of a folder named in the warning
# A spreadsheet takes a cell starting with one of these for a formula (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

PREDICTION_COLUMNS = (
    "path",
    "status",
    "error",
    "crack_probability",
    "label",
    "threshold",
    "model_version",
    "width",
    "height",
    "tile_count",
    "note",  # how the image was changed to be scored, and why a lit photo is no crack (photo rule, confirmation)
)


def expand_paths(paths: Sequence[str | Path]) -> list[str]:
    """Files as given; folders expanded to the images under them (sorted)."""
    found: list[str] = []
    for entry in paths:
        if "://" in str(entry):  # Path would fold "s3://b/x.jpg" into "s3:/b/x.jpg" and say that does not exist
            raise CrackModelError(f"{entry}: predict reads local files; for objects in a store, use crack-model score")
        path = Path(entry)
        if path.is_dir():  # links and pipes named as images too: each gets its row, saying what it is
            found.extend(_images_in(path))
        elif path.exists():
            found.append(str(path))
        else:
            raise CrackModelError(f"{path} does not exist: pass image files or folders of images")
    if not found:
        raise CrackModelError(f"no images found in {', '.join(map(str, paths))}")
    return found


def _images_in(folder: Path) -> list[str]:
    """The image files under ``folder`` (sorted); the other files are named in a warning, with why (hidden, not an
    image file name): left out in silence, a photo saved without an extension was never scored."""
    images, left_out = [], []
    for path in sorted(folder.rglob("*")):
        if path.is_dir():
            continue
        why = why_not_an_image(path.name)
        if why is None:
            images.append(str(path))
        else:
            left_out.append(f"{path} ({why})")
    if left_out:
        more = f" and {len(left_out) - SKIPPED_SHOWN} more" if len(left_out) > SKIPPED_SHOWN else ""
        log.warning("%d file(s) under %s are left out: %s%s; name a file itself to score it whatever its name",
                    len(left_out), folder, "; ".join(left_out[:SKIPPED_SHOWN]), more)  # fmt: skip
    return images


def read_image_file(path: str) -> bytes:
    """A regular file's bytes, within the upload size limit: a file named on the command line may be a pipe,
    a device (``/dev/zero`` never ends) or a giant, and each is that file's row, not a hang or a full memory."""
    try:
        _require_regular_file(path, os.stat(path).st_mode)  # before opening: opening a device can act on it
        # O_NONBLOCK: a file swapped for a named pipe since is opened without waiting for a writer
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise CrackModelError(f"{path}: {error.strerror or error}") from None
    with os.fdopen(handle, "rb") as stream:
        info = os.fstat(stream.fileno())
        _require_regular_file(path, info.st_mode)
        os.set_blocking(stream.fileno(), True)
        try:
            return read_within(stream, info.st_size, MAX_UPLOAD_BYTES, path)
        except ObjectTooLargeError as error:
            raise CrackModelError(size_problem(error.size) or str(error)) from None
        except OSError as error:
            raise CrackModelError(f"{path}: {error.strerror or error}") from None


def _require_regular_file(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise CrackModelError(f"{path} is {what}: pass image files")


def predict_files(
    scorer: Scorer, files: Iterable[str], *, batch_size: int | None = None, max_tiles: int = DEFAULT_MAX_TILES
) -> Iterator[ImageScore]:
    """Score local files, each photo within ``max_tiles`` tiles (``tiling.check_tile_budget``)."""
    tiles = TileConfig(tile_size=scorer.card.tile_size, max_tiles=check_tile_budget(max_tiles))
    return score_images(files, read_image_file, scorer, batch_size=batch_size, tiles=tiles)


def prediction_row(score: ImageScore, scorer: Scorer) -> dict[str, object]:
    ok = score.status == "ok"
    return {
        "path": spreadsheet_safe_path(printable_key(score.key)),  # a name not in UTF-8 shown with \xNN escapes
        "status": score.status,
        "error": score.error,
        "crack_probability": f"{score.crack_probability:.6f}" if ok else "",
        "label": score.label,
        "threshold": f"{scorer.card.threshold:.6f}",
        "model_version": scorer.version,
        "width": score.width or "",
        "height": score.height or "",
        "tile_count": score.tile_count,
        "note": score.note,
    }


def spreadsheet_safe_path(path: str) -> str:
    """A relative path that a spreadsheet would run as a formula (``=HYPERLINK(...).jpg``, ``-2.jpg``), as
    ``./<path>``: the same file, and a cell that starts with ``.``. Other paths are as given."""
    return f"./{path}" if path.startswith(FORMULA_STARTS) else path


def write_predictions(rows: Iterable[dict[str, object]], handle: IO[str]) -> int:
    """The rows as CSV; on a terminal, control characters in them are shown as escapes (a file name holding
    ``\x1b[2J`` cleared the screen), written to a file or a pipe they are kept as they are."""
    terminal = handle.isatty()
    writer = csv.DictWriter(handle, fieldnames=PREDICTION_COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        if terminal:
            row = {name: shown_key(value) if isinstance(value, str) else value for name, value in row.items()}
        writer.writerow(row)
        count += 1
    return count
