"""Retraining from the champion: its head is the candidate's start, and optionally its anchor.

A candidate trained afresh on the pool plus a few photos of a new surface moves its whole decision
boundary for them, and can miss cracks the champion found; the gate then rejects it (crack-recall
no-regression). Over 15 runs of ``bench.warm_start`` (five splits of the METU sample plus 100 site-b
photos, three training draws each, scored on 900 unseen site-b photos) the candidates started from the
champion missed as many site-b cracks in all as afresh (71 against 72), with fewer false alarms (194
against 220), and missed more than their champion in 1 run against 3 (README "Retraining").

``anchor_weight`` > 0 also adds each head weight's squared distance from the champion's to the loss
(L2-SP: Li, Grandvalet and Davis 2018, "Explicit inductive bias for transfer learning"). At 0.1 no run
missed more than its champion, but false alarms rose by a fifth, so it is off by default.

The start is the head's only: the base is the same frozen ImageNet base in both models. A champion
whose base differs (fine-tuned, other base weights or width), whose input size or classes differ, or
whose head has other layers cannot be a start; training then starts afresh and says why.
"""

from __future__ import annotations

import csv
import random
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import MODEL_NAME, SPLIT_NAME, ModelCard
from crack_model.training.features import base_fingerprint
from crack_model.training.model import get_base, head_layers

log = module_logger(__name__)


@dataclass(frozen=True)
class HeadAnchor:
    """The champion's head kernels by layer name, and how hard training pulls toward them."""

    kernels: dict[str, np.ndarray]
    strength: float

    def regularizers(self) -> dict[str, Any]:
        """A Keras kernel regularizer per head layer: ``strength`` times the squared distance from the anchor."""
        if self.strength <= 0:
            return {}
        return {name: TowardAnchor(kernel, self.strength) for name, kernel in self.kernels.items()}


class TowardAnchor:
    """``strength * sum((kernel - anchor) ** 2)``: L2 toward the champion's weights instead of toward 0.

    A Keras regularizer is any callable on the weight (a ``keras.regularizers.Regularizer`` subclass
    would import Keras with this module).
    """

    def __init__(self, anchor: np.ndarray, strength: float) -> None:
        self.anchor = np.asarray(anchor, np.float32)
        self.strength = float(strength)

    def __call__(self, kernel: Any) -> Any:
        from keras import ops

        return self.strength * ops.sum(ops.square(kernel - self.anchor))

    def get_config(self) -> dict[str, Any]:  # for the head's summary (TensorBoard); the head itself is never saved
        return {"strength": self.strength, "anchor_shape": list(self.anchor.shape)}


@dataclass(frozen=True)
class StartingPoint:
    """Where a training run's head started: the champion's (``anchor``), or afresh with the reason."""

    model: str
    version: str | None
    anchor: HeadAnchor | None
    reason: str = ""

    def record(self) -> dict[str, Any]:
        """What metrics.json keeps of it."""
        if self.anchor is None:
            return {"model": self.model, "version": self.version, "used": False, "reason": self.reason}
        return {"model": self.model, "version": self.version, "used": True, "anchor_weight": self.anchor.strength}


@contextmanager
def same_random_streams() -> Iterator[None]:
    """Keep Python's and NumPy's random streams where they were.

    Loading a model draws a default seed from Python's ``random`` for each layer that has none (Keras 3);
    without this, a run that looked at a model would shuffle and drop out unlike the same run afresh.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def check_start(model_dir: str | Path, output_dir: str | Path | None = None) -> Path:
    """``model_dir`` if it holds a saved model; else a CrackModelError naming it (before any training work)."""
    model_dir = Path(model_dir)
    if not (model_dir / MODEL_NAME).is_file():
        msg = f"no {MODEL_NAME} in {model_dir}: pass the folder of a trained model to start from"
        raise CrackModelError(msg)
    if output_dir is not None and model_dir.resolve() == Path(output_dir).resolve():
        raise CrackModelError(f"{model_dir} is both the model to start from and the output: train into another folder")
    return model_dir


def trained_images(model_dir: str | Path) -> frozenset[str]:
    """The sha256 of each image the model in ``model_dir`` trained on (the train rows of its split.csv).

    A run that starts from that model keeps them in train (``split_images``' ``keep_in_train``): its
    head has seen them, so in validation they would flatter the threshold, and in test the figures. So
    does a run whose start is then refused (it does not fit): the split is drawn before the model is
    looked at. A split.csv that cannot be read, or lists no train image by its hash, gives none, with a
    warning.
    """
    path = Path(model_dir) / SPLIT_NAME
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            trained = frozenset(
                row["sha256"] for row in csv.DictReader(handle) if row.get("split") == "train" and row.get("sha256")
            )
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        trained, why = frozenset(), f"cannot read {path} ({error})"
    else:
        why = f"{path} lists no train image with its sha256"
    if not trained:
        log.warning("%s: images the model trained on may land in validation or test", why)
    return trained


def starting_point(model_dir: str | Path, classifier: Any, class_names: list[str], image_size: int,
                   anchor_weight: float, label: str | None = None) -> StartingPoint:  # fmt: skip
    """The head of the model in ``model_dir`` as ``classifier``'s start, if it fits; else why not.

    It fits when both models have the same classes in the same order, the same base weights (the
    feature cache's fingerprint) and head layers of the same shapes. Raises CrackModelError only when
    the folder holds no model at all (a wrong path is the caller's mistake, not a reason to start afresh).
    ``label`` names the model in the record (a registry URL rather than a local cache folder).
    """
    import keras

    model_dir = check_start(model_dir)
    card = ModelCard.load(model_dir)
    name = label or str(model_dir)

    def afresh(reason: str) -> StartingPoint:
        log.warning("training starts afresh, not from %s (%s): %s", card.version, name, reason)
        return StartingPoint(name, card.version, None, reason)

    if list(card.class_names) != list(class_names):
        return afresh(f"its classes {card.class_names} are not {class_names}")
    if card.image_size != image_size:
        return afresh(f"it takes {card.image_size} px images, this run {image_size} px")
    try:
        with same_random_streams():
            start = keras.models.load_model(model_dir / MODEL_NAME, compile=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:  # a damaged file: a new model can still be trained
        return afresh(f"its {MODEL_NAME} cannot be loaded ({str(error).splitlines()[0][:200]})")
    if base_fingerprint(get_base(start), image_size) != base_fingerprint(get_base(classifier), image_size):
        return afresh("its base differs from this run's (fine-tuned, or other base weights, width or pooled layers)")
    source = {layer.name: layer.get_weights() for layer in head_layers(start)}
    target = {layer.name: layer.get_weights() for layer in head_layers(classifier)}
    shapes = {name: [weight.shape for weight in weights] for name, weights in source.items()}
    if shapes != {name: [weight.shape for weight in weights] for name, weights in target.items()}:
        return afresh(f"its head's layers {shapes} do not match this run's (hidden units differ)")
    for layer in head_layers(classifier):
        layer.set_weights(source[layer.name])
    kernels = {name: np.array(weights[0]) for name, weights in source.items()}
    log.info("the head starts from %s's (%s), pulled toward it with weight %g", card.version, name, anchor_weight)
    return StartingPoint(name, card.version, HeadAnchor(kernels, anchor_weight))
