"""Training with slices: scoring from cached features equals the pixel path; weights reach the loss."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_label_smoothing_and_focal_gamma_reach_the_head_trained_on_cached_features(synth_data, tmp_path, monkeypatch):
    """The recipe's loss settings are the head's (label smoothing was once dropped on the cached-features path)."""
    from crack_model.training import features

    seen: list[tuple[float, float]] = []

    def recording_fit(*args, **kwargs):
        seen.append((args[8], args[9]))
        return fitting.compile_and_fit(*args, **kwargs)

    monkeypatch.setattr(features, "compile_and_fit", recording_fit)
    images = load_labeled(synth_data, CONFIG)
    recipe = TrainConfig(epochs=1, label_smoothing=0.2, focal_gamma=2.0)
    fit_head_on_features(build_classifier(CONFIG, MODEL), images[::2], images[1::2], CONFIG, MODEL, recipe, tmp_path,
                         [], verbose=0)  # fmt: skip
    assert seen == [(0.2, 2.0)]


def test_focal_loss_weighs_the_images_the_model_gets_wrong():
    """With gamma 2 an image scored 0.9 for its class keeps 1 % of its cross-entropy, one scored 0.1 keeps 81 %."""
    truth = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    scores = np.array([[0.1, 0.9], [0.9, 0.1]], np.float32)
    plain = fitting.training_loss(0.0, 0.0)
    focal = fitting.training_loss(0.0, 2.0)
    cross_entropy = -np.log([0.9, 0.1])
    np.testing.assert_allclose([float(plain(truth[i : i + 1], scores[i : i + 1])) for i in range(2)], cross_entropy,
                               rtol=1e-4)  # fmt: skip
    focal_share = [float(focal(truth[i : i + 1], scores[i : i + 1])) / cross_entropy[i] for i in range(2)]
    np.testing.assert_allclose(focal_share, [0.01, 0.81], rtol=1e-3)


@pytest.mark.parametrize("gamma", [-1.0, float("nan")])
def test_a_negative_or_nan_focal_gamma_is_refused(gamma):
    with pytest.raises(ValueError, match="focal_gamma"):
        TrainConfig(focal_gamma=gamma)
