"""Each scored image's tile boxes and crack probabilities, kept beside the part rows.

Scoring writes ``part-N.tiles.jsonl`` before ``part-N.csv`` (so a part's rows imply its tile
scores), one JSON line per image scored: ``{"key": ..., "sha256": ..., "max_tiles": ..., "boxes": [left,
top, right, bottom, ...], "probabilities": [...]}``, boxes in the original image's pixels, ``sha256`` that
of the bytes scored (absent in lines written before it was kept), ``max_tiles`` the tile budget the image was
tiled within (absent in lines written before it was an option: 512). Overlays are drawn from these later,
on demand (``crack_model.pipelines.overlays``), instead of during the night: a night pays one small write
per part, not a decode, a blend and a PNG per crack image. The boxes are the tiling itself, in the upload's
pixels: an overlay drawn from them marks the tiles its scores were made on, whatever budget a later run uses.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from crack_model.core import layout
from crack_model.core.documents import ShardStats
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectStore
from crack_model.core.tiling import DEFAULT_MAX_TILES, Box
from crack_model.serving.inference import ImageScore

# predictions.csv's precision: an outline drawn at ">= threshold" agrees with the row's label.
DECIMALS = 6
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BUDGET = re.compile(r'"max_tiles":(\d+)')


@dataclass(frozen=True)
class TileScores:
    """One image's tiles: boxes in its own pixels, and each tile's crack probability."""

    key: str
    boxes: list[Box]
    probabilities: list[float]
    sha256: str | None = None  # of the bytes scored; None in lines written before it was kept
    max_tiles: int = DEFAULT_MAX_TILES  # the tile budget it was scored within; lines from before it was kept: 512


def _line_start(key: str) -> str:
    return '{"key":' + json.dumps(key) + ","


def encode(scores: Iterable[ImageScore], max_tiles: int = DEFAULT_MAX_TILES) -> bytes:
    """JSON lines for the images scored within the tile budget ``max_tiles`` (error rows have no tiles and no
    line)."""
    lines = []
    for score in scores:
        if score.status != "ok" or not score.boxes:
            continue
        flat = [value for box in score.boxes for value in box]
        probabilities = [round(probability, DECIMALS) for probability in score.tile_probabilities]
        document = {"sha256": score.sha256, "max_tiles": max_tiles, "boxes": flat, "probabilities": probabilities}
        body = json.dumps(document, separators=(",", ":"))
        lines.append(_line_start(score.key) + body[1:] + "\n")
    return "".join(lines).encode("utf-8")


def decode(line: str, source: str) -> TileScores:
    """One line back into TileScores; a broken line is a CrackModelError naming its file."""
    try:
        document = json.loads(line)
        flat = [int(value) for value in document["boxes"]]
        probabilities = [float(value) for value in document["probabilities"]]
        key = str(document["key"])
        sha256 = document.get("sha256")
        max_tiles = int(document.get("max_tiles", DEFAULT_MAX_TILES))
    except (ValueError, KeyError, TypeError) as error:
        raise CrackModelError(f"broken tile scores in {source}: {error}; score the batch again") from None
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise CrackModelError(
            f"broken tile scores in {source}: sha256 {sha256!r} is not a SHA-256; score the batch again"
        )
    if len(flat) != 4 * len(probabilities):
        raise CrackModelError(f"broken tile scores in {source}: {len(flat)} box values for {len(probabilities)} tiles")
    boxes = [(flat[index], flat[index + 1], flat[index + 2], flat[index + 3]) for index in range(0, len(flat), 4)]
    return TileScores(key, boxes, probabilities, sha256, max_tiles)


def tile_score_files(store: ObjectStore, prefix: str) -> list[str]:
    """The tile-score files under a parts prefix (a model version's, or one shard's), in order."""
    return sorted(info.key for info in store.list(prefix) if info.key.endswith(layout.TILE_SCORES_SUFFIX))


def budgets_used(store: ObjectStore, parts_prefix: str, done: ShardStats | None) -> set[int]:
    """The tile budgets an earlier attempt at a shard scored with: its ``_DONE`` marker's, else those its tile
    scores name (a marker or a line from before the budget was kept: 512). Read without parsing the lines."""
    if done is not None:
        return {done.max_tiles or DEFAULT_MAX_TILES}
    budgets: set[int] = set()
    for file in tile_score_files(store, parts_prefix + "/"):
        lines = store.read(file).decode("utf-8", errors="replace").splitlines()
        # A key cannot hold the pattern: JSON escapes the quote that would close it.
        budgets.update(
            int(found[1]) if (found := _BUDGET.search(line)) else DEFAULT_MAX_TILES for line in lines if line
        )
    return budgets


def iter_tile_scores(store: ObjectStore, files: Iterable[str], keys: set[str] | None = None) -> Iterator[TileScores]:
    """Every image's tile scores in ``files`` (only those of ``keys`` when given).

    An image scored again (its upload was replaced) has a line in a later part: the last line of a key wins,
    so files and lines are read from the end.
    """
    seen: set[str] = set()
    for file in sorted(files, reverse=True):
        for line in reversed(store.read(file).decode("utf-8").splitlines()):
            if not line:
                continue
            scores = decode(line, store.url(file))
            if scores.key in seen or (keys is not None and scores.key not in keys):
                continue
            seen.add(scores.key)
            yield scores


def find_tile_scores(store: ObjectStore, files: Iterable[str], key: str) -> TileScores | None:
    """One image's tile scores, from its last line (as ``iter_tile_scores``); lines are matched on their
    start, so only the image's own line is parsed.

    A part's rows are a twentieth of its tile scores (one row against a line of every tile's box), so the
    rows say which part to read: a tile-score file is read only if its part scored ``key`` (or its rows are
    missing: a run killed between the two writes).
    """
    start = _line_start(key)
    for file in sorted(files, reverse=True):
        if not _part_scored(store, file, key):
            continue
        for line in reversed(store.read(file).decode("utf-8").splitlines()):
            if line.startswith(start):
                return decode(line, store.url(file))
    return None


def _part_scored(store: ObjectStore, tiles_file: str, key: str) -> bool:
    """Did the part of ``tiles_file`` score ``key`` (a row of status ``ok``)? True when its rows cannot be read."""
    rows_file = tiles_file.removesuffix(layout.TILE_SCORES_SUFFIX) + ".csv"
    try:
        text = store.read(rows_file).decode("utf-8")
    except CrackModelError:  # not there (or not readable): read the tile scores themselves, as before
        return True
    if key.replace('"', '""') not in text and key not in text:  # most parts: no row of it (stored quoted: "" for ")
        return False
    return any(row.get("key") == key and row.get("status") == "ok" for row in csv.DictReader(io.StringIO(text)))
