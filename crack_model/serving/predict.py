"""Score local image files or folders and write one CSV row per image."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from crack_model.core.errors import CrackModelError
from crack_model.data.labeled import is_image_name
from crack_model.serving.inference import ImageScore, score_images
from crack_model.serving.scorer import Scorer

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
)


def expand_paths(paths: Sequence[str | Path]) -> list[str]:
    """Files as given; folders expanded to the images under them (sorted)."""
    found: list[str] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and is_image_name(p.name))
        elif path.exists():
            found.append(str(path))
        else:
            raise CrackModelError(f"{path} does not exist: pass image files or folders of images")
    if not found:
        raise CrackModelError(f"no images found in {', '.join(map(str, paths))}")
    return found


def predict_files(scorer: Scorer, files: Iterable[str], *, batch_size: int | None = None) -> Iterator[ImageScore]:
    def fetch(path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as error:
            raise CrackModelError(f"{path}: {error.strerror}") from None

    return score_images(files, fetch, scorer, batch_size=batch_size)


def prediction_row(score: ImageScore, scorer: Scorer) -> dict[str, object]:
    ok = score.status == "ok"
    return {
        "path": score.key,
        "status": score.status,
        "error": score.error,
        "crack_probability": f"{score.crack_probability:.6f}" if ok else "",
        "label": score.label,
        "threshold": f"{scorer.card.threshold:.6f}",
        "model_version": scorer.version,
        "width": score.width or "",
        "height": score.height or "",
        "tile_count": score.tile_count,
    }


def write_predictions(rows: Iterable[dict[str, object]], handle: IO[str]) -> int:
    writer = csv.DictWriter(handle, fieldnames=PREDICTION_COLUMNS)
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
