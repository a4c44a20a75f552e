"""The gate's holdout: labeled images below ``<class>/[<slice>/]``, and models scored on it.

Scoring goes through the same core as batch scoring (``inference.score_images`` with the
holdout store's reader) and the metrics through the same code as ``assess.evaluate_scorer``;
per-image outcomes are kept for bootstrap intervals and runtime agreement.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import open_store
from crack_model.data.labeled import LabeledImage, is_image_name
from crack_model.evaluation.assess import probability_rows
from crack_model.evaluation.intervals import Outcomes
from crack_model.evaluation.metrics import compute_metrics, predicted_labels
from crack_model.serving.inference import score_images
from crack_model.serving.scorer import Scorer

log = logging.getLogger(__name__)

NO_SLICE = "(none)"


@dataclass(frozen=True)
class Holdout:
    """Labeled images below ``<uri>/<class>/[<slice>/]...``, in a fixed order."""

    uri: str
    images: list[LabeledImage]
    slices: list[str]  # per image: the first folder below the class folder, or NO_SLICE
    digest: str
    store: ObjectStore = field(repr=False)
    keys: list[str] = field(repr=False)  # per image: its key in ``store``

    def summary(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "images": len(self.images),
            "per_class": dict(sorted(Counter(image.label for image in self.images).items())),
            "per_slice": dict(sorted(Counter(self.slices).items())),
            "listing_digest": self.digest,
        }


def load_holdout(uri: str, class_names: Sequence[str]) -> Holdout:
    """List a holdout folder or store prefix (local path, ``file://`` or ``s3://``)."""
    store = open_store(uri)
    images, slices, lines, keys = [], [], [], []
    for info in store.list(""):
        parts = info.key.split("/")
        if len(parts) < 2 or parts[0] not in class_names or not is_image_name(parts[-1]):
            continue
        if any(part.startswith(".") for part in parts):
            continue
        images.append(LabeledImage(store.url(info.key), parts[0]))
        keys.append(info.key)
        slices.append(parts[1] if len(parts) >= 3 else NO_SLICE)
        lines.append(f"{info.key}\t{info.size}\t{info.etag or ''}")
    if not images:
        expected = f"<holdout>/<class>/[<slice>/]<image> for classes {list(class_names)}"
        msg = f"holdout {uri} has no images: expected {expected}"
        raise CrackModelError(msg)
    missing = [name for name in class_names if not any(image.label == name for image in images)]
    if missing:
        raise CrackModelError(f"holdout {uri} has no images of class {', '.join(missing)}: the gate needs every class")
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    return Holdout(store.uri, images, slices, digest, store, keys)


@dataclass(frozen=True)
class Evaluation:
    """One model with one runtime on the holdout: per-image probabilities and the metrics of assess."""

    version: str
    runtime: str
    threshold: float
    crack_probability: np.ndarray
    metrics: dict[str, Any]
    outcomes: Outcomes


def evaluate_on_holdout(scorer: Scorer, holdout: Holdout, *, batch_size: int = 64) -> Evaluation:
    """Score the holdout and compute the metrics as ``assess.evaluate_scorer`` does, keeping per-image outcomes.

    Images are read through the holdout's store with the scoring core batch scoring uses
    (``inference.score_images``); one store client serves every image.
    """
    card = scorer.card
    scores = {
        score.key: score for score in score_images(holdout.keys, holdout.store.read, scorer, batch_size=batch_size)
    }
    failed = [score for score in scores.values() if score.status != "ok"]
    if failed:
        example = f"{failed[0].key}: {failed[0].error}"
        msg = f"{len(failed)} holdout image(s) could not be scored, e.g. {example}; fix or remove them"
        raise CrackModelError(msg)
    probability = np.array([float(scores[key].crack_probability or 0.0) for key in holdout.keys])
    rows = probability_rows(probability, card.class_names, card.crack_class)
    labels = [image.label for image in holdout.images]
    metrics = compute_metrics(
        labels, rows, threshold=card.threshold, class_names=card.class_names, crack_class=card.crack_class
    )
    metrics["model_version"] = card.version
    metrics["runtime"] = scorer.runtime.name
    predicted = predicted_labels(rows, card.threshold, card.class_names, card.crack_class)
    outcomes = Outcomes(
        is_crack=np.array([label == card.crack_class for label in labels]),
        says_crack=np.array([label == card.crack_class for label in predicted]),
        correct=np.array([truth == guess for truth, guess in zip(labels, predicted, strict=True)]),
    )
    log.info(
        "%s (%s) on %d holdout images: crack recall %.4f, accuracy %.4f",
        card.version,
        scorer.runtime.name,
        len(labels),
        metrics["crack_recall"],
        metrics["accuracy"],
    )
    return Evaluation(card.version, scorer.runtime.name, card.threshold, probability, metrics, outcomes)
