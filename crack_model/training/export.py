"""Export a trained model to LiteRT (fp32, int8) and check it agrees with the Keras model.

An export is offered for serving only if its labels agree with the Keras model's on at
least ``min_agreement`` of the check images (the holdout gate re-checks it on the holdout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import decode_to_array
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import MODEL_NAME, RUNTIME_PREFERENCE, ModelCard
from crack_model.data.labeled import LabeledImage, labeled_fetch, read_labeled
from crack_model.evaluation.assess import score_labeled
from crack_model.serving.runtimes import KerasRuntime, export_litert, load_runtime
from crack_model.serving.scorer import Scorer, load_scorer

log = module_logger(__name__)

MIN_AGREEMENT = 0.995


@dataclass(frozen=True)
class RuntimeCheck:
    runtime: str
    images: int
    label_agreement: float
    max_probability_difference: float

    def as_dict(self) -> dict[str, object]:
        return {
            "runtime": self.runtime,
            "images": self.images,
            "label_agreement": self.label_agreement,
            "max_probability_difference": self.max_probability_difference,
        }


def compare_runtimes(model_dir: Path, images: Sequence[LabeledImage], runtimes: Sequence[str]) -> list[RuntimeCheck]:
    """Score ``images`` with Keras and each runtime; label agreement and max probability gap."""
    keras_scorer = load_scorer(model_dir, runtime="keras")
    threshold = keras_scorer.card.threshold
    read = labeled_fetch(images)  # the images as training fingerprinted them, or an error
    reference = score_labeled(keras_scorer, images, read=read)
    checks = []
    for name in runtimes:
        # Loaded as is: through load_scorer, the runtime under check (not approved yet, by design) would log a
        # warning that it is not approved, on every training run.
        candidate = Scorer(card=keras_scorer.card, runtime=load_runtime(model_dir, name), model_dir=model_dir)
        scores = score_labeled(candidate, images, read=read)
        expected = np.array([reference[image.uri] for image in images])
        actual = np.array([scores[image.uri] for image in images])
        checks.append(
            RuntimeCheck(
                runtime=name,
                images=len(images),
                label_agreement=float(np.mean((expected >= threshold) == (actual >= threshold))),
                max_probability_difference=float(np.max(np.abs(expected - actual))),
            )
        )
    return checks


def keras_model_file(model_dir: Path) -> Path:
    """The Keras model that export converts, or a CrackModelError saying where it should be."""
    path = Path(model_dir) / MODEL_NAME
    if not path.is_file():
        raise CrackModelError(f"{path} is missing: export converts the Keras model that training saved there; "
                              "train again, or copy the version's model.keras back")  # fmt: skip
    return path


def export_model(
    model_dir: Path,
    calibration: Sequence[LabeledImage],
    check: Sequence[LabeledImage],
    *,
    min_agreement: float = MIN_AGREEMENT,
    calibration_limit: int = 200,
) -> list[RuntimeCheck]:
    """Write model_fp32.tflite and model_int8.tflite next to model.keras; approve those that agree.

    ``calibration`` are training images (int8 ranges come from real photos); ``check`` are
    images the model did not train on. The card's ``approved_runtimes`` is updated.
    """
    model_dir = Path(model_dir)
    card = ModelCard.load(model_dir)
    model = KerasRuntime.load(keras_model_file(model_dir)).model  # a file cut short: one line naming it, as scoring
    step = max(1, len(calibration) // calibration_limit)
    chosen = list(calibration)[::step][:calibration_limit]

    def representative() -> list[np.ndarray]:
        return [decode_to_array(read_labeled(image), card.image_size) for image in chosen]

    # Until the new files pass their check, only Keras is approved: a run that dies midway must not leave a
    # half-calibrated export approved.
    card.approved_runtimes = ["keras"]
    card.save(model_dir)
    written = export_litert(model, model_dir, representative_images=lambda: iter(representative()))
    checks = compare_runtimes(model_dir, check, list(written))
    agreeing = {c.runtime for c in checks if c.label_agreement >= min_agreement}
    for c in checks:
        log.info(
            "%s: label agreement %.4f, max probability difference %.4f on %d images%s",
            c.runtime,
            c.label_agreement,
            c.max_probability_difference,
            c.images,
            "" if c.runtime in agreeing else " (not approved)",
        )
    card.approved_runtimes = [name for name in RUNTIME_PREFERENCE if name in agreeing or name == "keras"]
    card.save(model_dir)
    return checks
