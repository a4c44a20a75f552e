"""Evaluate a saved model, through the same scoring path that serves it, on labeled images."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from crack_model.core.errors import CrackModelError
from crack_model.core.uploads import Fetch, read_photo_uri
from crack_model.data.labeled import NO_SLICE, LabeledImage
from crack_model.evaluation.metrics import compute_metrics
from crack_model.serving.inference import ImageScore, score_images
from crack_model.serving.scorer import Scorer


def scored_labeled(
    scorer: Scorer, images: Sequence[LabeledImage], *, batch_size: int | None = None, read: Fetch = read_photo_uri
) -> dict[str, ImageScore]:
    """Each image's score (probability, and label by the card's photo rule) per URI; unreadable images are an
    error (labeled data must decode). ``read`` fetches an image by URI (training passes ``labeled_fetch``)."""
    uris = [image.uri for image in images]
    scores = {score.key: score for score in score_images(uris, read, scorer, batch_size=batch_size)}
    failed = [score for score in scores.values() if score.status != "ok"]
    if failed:
        raise CrackModelError(
            f"{len(failed)} labeled image(s) could not be scored, e.g. {failed[0].key}: {failed[0].error}"
        )
    return scores


def score_labeled(
    scorer: Scorer, images: Sequence[LabeledImage], *, batch_size: int | None = None, read: Fetch = read_photo_uri
) -> dict[str, float]:
    """Crack probability (a photo's highest tile) per image URI."""
    scored = scored_labeled(scorer, images, batch_size=batch_size, read=read)
    return {key: float(score.crack_probability or 0.0) for key, score in scored.items()}


def probability_rows(crack_probability: np.ndarray, class_names: Sequence[str], crack_class: str) -> np.ndarray:
    """Binary (crack vs the rest) probability rows in class order, from crack probabilities."""
    rows = np.zeros((len(crack_probability), len(class_names)))
    crack_index = list(class_names).index(crack_class)
    other_index = next(index for index, name in enumerate(class_names) if name != crack_class)
    rows[:, crack_index] = crack_probability
    rows[:, other_index] = 1.0 - crack_probability
    return rows


def recorded_fetch(images: Sequence[LabeledImage], manifest: Path) -> Fetch:
    """Read the images of a ``split.csv`` as it recorded them: other bytes under a recorded URI are an error.

    A test image replaced since training would give figures of images the model's test split never
    held, printed as its test figures; the error names the image (one row of the scoring, which
    ``scored_labeled`` turns into the command's error).
    """
    recorded = {image.uri: image.sha256 for image in images}

    def read(uri: str) -> bytes:
        data = read_photo_uri(uri)
        expected = recorded.get(uri)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise CrackModelError(
                f"{uri} is not the image {manifest} recorded (sha256 {expected[:12]}...): it changed since the "
                "model was trained, so these would not be the split's figures; evaluate the folder with --data instead"
            )
        return data

    return read


def evaluate_scorer(
    scorer: Scorer, images: Sequence[LabeledImage], *, threshold: float | None = None, read: Fetch = read_photo_uri
) -> dict[str, Any]:
    """Metrics of the model (with its own threshold unless given) on labeled images.

    Each image is labeled as scoring labels it: a full-size photo by the card's photo rule (a
    ``threshold`` given replaces the card's tile threshold in it too).
    """
    if not images:
        raise CrackModelError("no labeled images to evaluate on")
    if threshold is not None:
        scorer = replace(scorer, card=replace(scorer.card, threshold=threshold))
    card = scorer.card
    unknown = sorted({image.label for image in images} - set(card.class_names))
    if unknown:
        raise CrackModelError(f"labels {unknown} are not classes of model {card.version} ({card.class_names})")
    by_uri = scored_labeled(scorer, images, read=read)
    probability = np.array([float(by_uri[image.uri].crack_probability or 0.0) for image in images])
    metrics = compute_metrics(
        [image.label for image in images],
        probability_rows(probability, card.class_names, card.crack_class),
        threshold=card.threshold,
        class_names=card.class_names,
        crack_class=card.crack_class,
        predicted=[by_uri[image.uri].label for image in images],
    )
    metrics["model_version"] = card.version
    metrics["runtime"] = scorer.runtime.name
    return metrics


def read_split_manifest(path: Path, split_name: str) -> list[LabeledImage]:
    """Images of one split from a ``split.csv`` written at training time."""
    if not path.is_file():
        raise CrackModelError(f"{path} does not exist: --split test needs the split.csv saved with the model")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split_name]
    if not rows:
        raise CrackModelError(f"{path} lists no images in the {split_name!r} split")
    # split.csv files written before slices existed have no slice column
    return [LabeledImage(row["uri"], row["label"], row["sha256"], slice=row.get("slice") or NO_SLICE) for row in rows]
