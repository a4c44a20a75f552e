"""Training with slices: scoring from cached features equals the pixel path; weights reach the loss."""

from __future__ import annotations

import numpy as np

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.data.labeled import load_labeled
from crack_model.training import fitting
from crack_model.training.features import fit_head_on_features, predict_from_features
from crack_model.training.model import build_classifier

CONFIG = DataConfig(image_size=64, batch_size=8)
MODEL = ModelConfig(weights="none", alpha=0.35)


def test_scoring_from_cached_features_equals_the_full_classifier(synth_data, tmp_path):
    """predict_from_features gives the probabilities the classifier gives on the pixels."""
    from crack_model.training.train import predict_probabilities

    images = load_labeled(synth_data, CONFIG)[::8]
    classifier = build_classifier(CONFIG, MODEL)
    from_cache = predict_from_features(classifier, images, CONFIG, MODEL, tmp_path)
    from_pixels = predict_probabilities(classifier, images, CONFIG)
    np.testing.assert_allclose(from_cache, from_pixels, atol=1e-4)


def test_zero_weight_images_do_not_train_the_head(synth_data, tmp_path):
    """With every training weight 0 the head's loss is 0 and its weights stay where they started."""
    images = load_labeled(synth_data, CONFIG)
    train, validation = images[::2], images[1::2]
    classifier = build_classifier(CONFIG, MODEL)
    before = [weight.copy() for weight in classifier.get_layer("class_probabilities").get_weights()]
    history = fit_head_on_features(
        classifier, train, validation, CONFIG, MODEL, TrainConfig(epochs=2), tmp_path, [], verbose=0,
        train_weights=np.zeros(len(train), np.float32),
    )  # fmt: skip
    assert history["loss"] == [0.0, 0.0]
    after = classifier.get_layer("class_probabilities").get_weights()
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)


def test_label_smoothing_reaches_the_head_trained_on_cached_features(synth_data, tmp_path, monkeypatch):
    """The recipe's label smoothing is the head's (it was dropped on the cached-features path)."""
    from crack_model.training import features

    seen: list[float] = []

    def recording_fit(*args, **kwargs):
        seen.append(args[8] if len(args) > 8 else kwargs.get("label_smoothing", 0.0))
        return fitting.compile_and_fit(*args, **kwargs)

    monkeypatch.setattr(features, "compile_and_fit", recording_fit)
    images = load_labeled(synth_data, CONFIG)
    recipe = TrainConfig(epochs=1, label_smoothing=0.2)
    fit_head_on_features(build_classifier(CONFIG, MODEL), images[::2], images[1::2], CONFIG, MODEL, recipe, tmp_path,
                         [], verbose=0)  # fmt: skip
    assert seen == [0.2]
