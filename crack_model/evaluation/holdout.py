"""The gate's holdout: labeled images below ``<class>/[<slice>/]``, and models scored on it.

Scoring goes through the same core as batch scoring (``inference.score_images`` with the
holdout store's reader) and the metrics through the same code as ``assess.evaluate_scorer``;
per-image outcomes are kept for bootstrap intervals and runtime agreement.

What the gate checks about a holdout before it grades on it (training images in it) is in holdout_checks.py.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from crack_model.core.concurrency import map_bounded
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import fetch_threads, open_store
from crack_model.core.uploads import UnservableObjectError, read_upload
from crack_model.data.image_names import why_not_an_image
from crack_model.data.labeled import LabeledImage
from crack_model.evaluation.assess import probability_rows
from crack_model.evaluation.intervals import Outcomes
from crack_model.evaluation.metrics import compute_metrics
from crack_model.serving.inference import score_images
from crack_model.serving.scorer import Scorer

log = module_logger(__name__)

NO_SLICE = "(none)"
READ_WORKERS = 8
LEFT_OUT_EXAMPLES = 5


class HoldoutChangedError(CrackModelError):
    """A holdout image read again during the gate is not the image first read."""


@dataclass(frozen=True)
class Holdout:
    """Labeled images below ``<uri>/<class>/[<slice>/]...``, in a fixed order."""

    uri: str
    images: list[LabeledImage]
    slices: list[str]  # per image: the first folder below the class folder, or NO_SLICE
    digest: str
    store: ObjectStore = field(repr=False)
    keys: list[str] = field(repr=False)  # per image: its key in ``store``
    # key -> SHA-256 of the bytes first read (by the overlap check, else the first scoring), and the images read
    # as other bytes since, with why: every model is graded on the images first read
    pinned: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    changed: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # key -> why it is not a holdout image (no class folder, not an image name, hidden): said, never silent
    left_out: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # key -> the copies of its bytes filed under another class (``without_label_conflicts``): not graded on
    conflicts: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def read(self, key: str) -> bytes:
        """One holdout image's bytes, within the upload size limit (one over it fails the gate as unreadable).

        Bytes other than those first read are refused (``HoldoutChangedError``, and kept in ``changed``): an
        image replaced during the gate could be a training image the overlap check never saw, and the
        candidate, its runtimes and the champion would be graded on different photos.
        """
        data = read_upload(self.store, key)
        now = hashlib.sha256(data).hexdigest()
        first = self.pinned.setdefault(key, now)
        if now != first:
            self.changed[key] = (
                f"holdout image {self.store.url(key)} changed during the gate (sha256 {first[:12]}... when first "
                f"read, {now[:12]}... now): every model must be graded on the same images; run the gate again "
                "once the holdout stops changing"
            )
            raise HoldoutChangedError(self.changed[key])
        return data

    def without(self, keys: Collection[str], **reasons: dict[str, str]) -> Holdout:
        """This holdout without the images of ``keys``; ``reasons``: the field that keeps why (``left_out``...)."""
        kept = [index for index, key in enumerate(self.keys) if key not in keys]
        return replace(self, images=[self.images[index] for index in kept],
                       slices=[self.slices[index] for index in kept], keys=[self.keys[index] for index in kept],
                       **reasons)  # type: ignore[arg-type]  # fmt: skip

    def raise_if_changed(self) -> None:
        """``HoldoutChangedError`` if any image read so far changed, even where its error was taken as a
        runtime's or a mosaic's failure: the gate must then decide nothing."""
        if self.changed:
            more = f" ({len(self.changed) - 1} more image(s) changed too)" if len(self.changed) > 1 else ""
            raise HoldoutChangedError(next(iter(self.changed.values())) + more)

    def summary(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "images": len(self.images),
            "per_class": dict(sorted(Counter(image.label for image in self.images).items())),
            "per_slice": dict(sorted(Counter(self.slices).items())),
            "listing_digest": self.digest,
            "left_out": len(self.left_out),
            "label_conflicts": len(self.conflicts),
        }

    def notes(self) -> list[str]:
        """For the gate report: what under the holdout is not graded on, and why."""
        return [note for note in (self._conflicts_note(), self.left_out_note()) if note]

    def _conflicts_note(self) -> str | None:
        if not self.conflicts:
            return None
        return (
            f"{len(self.conflicts)} holdout image(s) are the same bytes as a copy under another class, so one of the "
            f"labels is wrong; they are not graded on until the wrong copy is removed: "
            f"{_examples(self.conflicts, '{key} ({why})')}"
        )

    def left_out_note(self) -> str | None:
        """For the gate report: what under the holdout is not graded on, with a few names and why."""
        if not self.left_out:
            return None
        return f"{len(self.left_out)} file(s) under the holdout are not graded on: {_examples(self.left_out)}"


def _examples(reasons: dict[str, str], form: str = "{key}: {why}") -> str:
    """A few of ``reasons`` (key -> why) in key order, and how many more."""
    shown = "; ".join(form.format(key=key, why=why) for key, why in sorted(reasons.items())[:LEFT_OUT_EXAMPLES])
    return shown + (f"; and {len(reasons) - LEFT_OUT_EXAMPLES} more" if len(reasons) > LEFT_OUT_EXAMPLES else "")


def load_holdout(uri: str, class_names: Sequence[str]) -> Holdout:
    """List a holdout folder or store prefix (local path, ``file://`` or ``s3://``)."""
    store = open_store(uri)
    images, slices, lines, keys = [], [], [], []
    left_out: dict[str, str] = {}
    for info in store.list(""):
        parts = info.key.split("/")
        if len(parts) < 2 or parts[0] not in class_names:
            left_out[info.key] = f"not in a class folder ({', '.join(class_names)})"
            continue
        if why := info.problem or why_not_an_image(info.key):  # a name the store cannot serve says why
            left_out[info.key] = why
            continue
        images.append(LabeledImage(store.url(info.key), parts[0]))
        keys.append(info.key)
        slices.append(parts[1] if len(parts) >= 3 else NO_SLICE)
        lines.append(f"{info.key}\t{info.size}\t{info.etag or ''}")
    if not images:
        expected = f"<holdout>/<class>/[<slice>/]<image> for classes {list(class_names)}"
        msg = f"holdout {uri} has no images: expected {expected}"
        raise CrackModelError(msg)
    raise_if_a_class_is_missing(uri, images, class_names)
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    holdout = Holdout(store.uri, images, slices, digest, store, keys, left_out=left_out)
    if note := holdout.left_out_note():
        log.warning("%s", note)
    return holdout


def raise_if_a_class_is_missing(uri: str, images: Sequence[LabeledImage], class_names: Sequence[str]) -> None:
    missing = [name for name in class_names if not any(image.label == name for image in images)]
    if missing:
        raise CrackModelError(f"holdout {uri} has no images of class {', '.join(missing)}: the gate needs every class")


def without_label_conflicts(holdout: Holdout, class_names: Sequence[str]) -> Holdout:
    """The holdout without the images whose bytes are also filed under another class (kept in ``conflicts``).

    One of the two labels is wrong, and every model would be graded wrong on one copy whatever it says: the gate
    names them and grades on the rest rather than decide on a contradiction. Reads every image (and pins it).
    """
    labels_of: dict[str, set[str]] = {}
    keys_of: dict[str, list[str]] = {}
    hashes = holdout_hashes(holdout)
    for key, image, digest in zip(holdout.keys, holdout.images, hashes, strict=True):
        labels_of.setdefault(digest, set()).add(image.label)
        keys_of.setdefault(digest, []).append(key)
    conflicts = {
        key: "same bytes as " + ", ".join(other for other in keys_of[digest] if other != key)
        for key, digest in zip(holdout.keys, hashes, strict=True)
        if len(labels_of[digest]) > 1
    }
    if not conflicts:
        return holdout
    trimmed = holdout.without(conflicts, conflicts=conflicts)
    log.warning("%s", trimmed.notes()[0])
    raise_if_a_class_is_missing(f"{holdout.uri} (without its label conflicts)", trimmed.images, class_names)
    return trimmed


def holdout_hashes(holdout: Holdout) -> list[str]:
    """SHA-256 of every holdout image's bytes, in the holdout's order; later reads must match them
    (``Holdout.read``). An image already read is not read again here."""

    def digest(key: str) -> str:
        if key in holdout.pinned:
            return holdout.pinned[key]
        try:
            holdout.read(key)
            return holdout.pinned[key]
        except UnservableObjectError as error:  # e.g. over the size limit: the gate says which image, and why
            raise CrackModelError(f"holdout image {holdout.store.url(key)} cannot be read: {error}") from None

    return list(map_bounded(digest, holdout.keys, workers=READ_WORKERS, thread_name_prefix="holdout-hash"))


@dataclass(frozen=True)
class Evaluation:
    """One model with one runtime on the holdout: per-image probabilities and the metrics of assess."""

    version: str
    runtime: str
    threshold: float
    crack_probability: np.ndarray
    metrics: dict[str, Any]
    outcomes: Outcomes
    tiles: np.ndarray | None = None  # per image: the tiles scoring cut it into (1: a patch)

    def photo_keys(self, holdout: Holdout) -> set[str]:
        """The holdout's full-size photos: keys of images scored as more than one tile."""
        if self.tiles is None:
            return set()
        return {key for key, tiles in zip(holdout.keys, self.tiles, strict=True) if tiles > 1}


def evaluate_on_holdout(scorer: Scorer, holdout: Holdout, *, batch_size: int = 64) -> Evaluation:
    """Score the holdout and compute the metrics as ``assess.evaluate_scorer`` does, keeping per-image outcomes.

    Images are read through the holdout's store with the scoring core batch scoring uses
    (``inference.score_images``); one store client serves every image.
    """
    card = scorer.card
    scores = {
        score.key: score
        for score in score_images(
            holdout.keys, holdout.read, scorer, batch_size=batch_size, workers=fetch_threads(holdout.store)
        )
    }
    holdout.raise_if_changed()
    failed = [score for score in scores.values() if score.status != "ok"]
    if failed:
        example = f"{failed[0].key}: {failed[0].error}"
        msg = f"{len(failed)} holdout image(s) could not be scored, e.g. {example}; fix or remove them"
        raise CrackModelError(msg)
    probability = np.array([float(scores[key].crack_probability or 0.0) for key in holdout.keys])
    rows = probability_rows(probability, card.class_names, card.crack_class)
    labels = [image.label for image in holdout.images]
    predicted = [scores[key].label for key in holdout.keys]  # a full-size photo's: by the photo rule
    metrics = compute_metrics(labels, rows, threshold=card.threshold, class_names=card.class_names,
                              crack_class=card.crack_class, predicted=predicted)  # fmt: skip
    metrics["model_version"] = card.version
    metrics["runtime"] = scorer.runtime.name
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
    tiles = np.array([scores[key].tile_count for key in holdout.keys])
    return Evaluation(card.version, scorer.runtime.name, card.threshold, probability, metrics, outcomes, tiles)
