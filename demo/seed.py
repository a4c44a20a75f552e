"""Fill a store with the demo's data: a labeled pool, a holdout, and two nights of uploads.

``labeled/`` and ``holdout/`` come from the shipped real sample (disjoint files);
``incoming/<night-1>/`` holds real uploads plus a few broken files (they become error rows or
are quarantined); ``incoming/blank-frames/`` is a batch of featureless frames that the
incoming suite must fail.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from crack_model.core.storage import open_store

HERE = Path(__file__).resolve().parent
CLASSES = ("Negative", "Positive")


def seed_store(
    store_uri: str,
    *,
    sample: Path = HERE / "sample",
    uploads: Path = HERE / "uploads",
    labeled_per_class: int = 100,
    holdout_per_class: int = 30,
    night: str = "2026-11-24",
) -> dict[str, int]:
    """Copy the sample into ``store_uri``; returns object counts per area.

    The sample's images beyond the labeled pool and the holdout join the night's uploads.
    """
    store = open_store(store_uri)
    counts = {"labeled": 0, "holdout": 0, "incoming": 0}
    for class_name in CLASSES:
        files = sorted((sample / class_name).glob("*.jpg"))
        if len(files) < labeled_per_class + holdout_per_class:
            raise ValueError(
                f"{sample / class_name} has {len(files)} images, need {labeled_per_class + holdout_per_class}"
            )
        for path in files[:labeled_per_class]:
            store.write(f"labeled/{class_name}/{path.name}", path.read_bytes())
            counts["labeled"] += 1
        for path in files[labeled_per_class : labeled_per_class + holdout_per_class]:
            store.write(f"holdout/{class_name}/{path.name}", path.read_bytes())
            counts["holdout"] += 1
        for path in files[labeled_per_class + holdout_per_class :]:
            store.write(f"incoming/{night}/site-b/{class_name.lower()}-{path.name}", path.read_bytes())
            counts["incoming"] += 1
    for path in sorted(uploads.glob("*.jpg")):
        store.write(f"incoming/{night}/site-a/{path.name}", path.read_bytes())
        counts["incoming"] += 1
    first = sorted(uploads.glob("*.jpg"))[0].read_bytes()
    store.write(f"incoming/{night}/site-a/truncated upload.jpg", first[: len(first) // 3])
    store.write(f"incoming/{night}/notes-renamed.jpg", b"a text file with an image extension\n")
    counts["incoming"] += 2
    for index in range(12):
        store.write(f"incoming/blank-frames/frame-{index:02d}.png", blank_frame(index))
        counts["incoming"] += 1
    return counts


def blank_frame(index: int, size: int = 227) -> bytes:
    """A featureless grey frame (a lens cap, a wall of fog): it decodes but is no inspection photo."""
    grey = np.full((size, size, 3), 120 + index, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return buffer.getvalue()
