"""Small model folders for registry and gate tests, built in seconds instead of trained.

``build_detector`` writes a hand-set Keras model that finds the dark lines crack_model.data.synth
draws (the darkest 4x4 patch against the mean darkness), with its LiteRT exports and card:
a model whose quality the tests control, unlike a two-epoch training run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from crack_model.core.model_card import ModelCard


def build_detector(
    output_dir: Path,
    version: str,
    *,
    image_size: int = 64,
    feature_threshold: float = 0.2,
    sharpness: float = 50.0,
    calibration: list[np.ndarray] | None = None,
) -> Path:
    """A model folder (model.keras, model.json, LiteRT fp32 and int8) of the dark-line detector."""
    import keras
    from keras import layers

    from crack_model.serving.runtimes import export_litert

    inputs = keras.Input((image_size, image_size, 3))
    darkness = layers.Rescaling(scale=-1.0 / 255.0, offset=1.0)(inputs)
    grey = layers.Conv2D(1, 1, use_bias=False, name="grey")(darkness)
    patch = layers.GlobalMaxPooling2D()(layers.AveragePooling2D(pool_size=4, strides=1)(grey))
    contrast = layers.Subtract()([patch, layers.GlobalAveragePooling2D()(grey)])
    outputs = layers.Dense(2, activation="softmax", name="decide")(contrast)
    model = keras.Model(inputs, outputs)
    model.get_layer("grey").set_weights([np.full((1, 1, 3, 1), 1.0 / 3.0, dtype=np.float32)])
    weight = sharpness
    model.get_layer("decide").set_weights(
        [
            np.array([[-weight, weight]], dtype=np.float32),
            np.array([weight * feature_threshold, -weight * feature_threshold], dtype=np.float32),
        ]
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save(output_dir / "model.keras")
    images = calibration or calibration_images(image_size)
    export_litert(model, output_dir, representative_images=lambda: iter(images))
    card = ModelCard(
        version=version,
        image_size=image_size,
        threshold=0.5,
        base_weights="none",
        approved_runtimes=["litert-int8", "litert-fp32", "keras"],
        git_commit="0123456789abcdef0123456789abcdef01234567",
    )
    card.save(output_dir)
    (output_dir / "metrics.json").write_text(json.dumps({"validation": {"accuracy": 1.0}}) + "\n")
    return output_dir


def calibration_images(image_size: int, count: int = 24, seed: int = 99) -> list[np.ndarray]:
    """Synthetic images for int8 calibration (value ranges come from images like the real input)."""
    from crack_model.data.synth import synth_image

    rng = np.random.default_rng(seed)
    return [np.asarray(synth_image(rng, image_size, crack=index % 2 == 0)) for index in range(count)]


def variant(source: Path, output_dir: Path, version: str, **card_changes: object) -> Path:
    """A copy of a model folder under a new version, with card fields changed (e.g. threshold=1.0)."""
    shutil.copytree(source, output_dir, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    card = ModelCard.load(output_dir)
    replace(card, version=version, **card_changes).save(output_dir)
    return output_dir


def fake_model(output_dir: Path, version: str, payload: bytes = b"not a real model") -> Path:
    """A folder that registers (model.keras + model.json) without any TensorFlow: for registry logic."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "model.keras").write_bytes(payload)
    ModelCard(version=version, image_size=64).save(output_dir)
    return output_dir
