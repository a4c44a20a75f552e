"""The network: shapes, frozen base, preprocessing inside, weights options and errors."""

from __future__ import annotations

import numpy as np
import pytest

from crack_model.core.config import DataConfig, ModelConfig
from crack_model.core.errors import CrackModelError
from crack_model.training.model import (
    augmentation_key,
    build_augmentation,
    build_classifier,
    build_training_model,
    get_base,
    resolve_base_weights,
    unfreeze_top_layers,
)

SMALL = DataConfig(image_size=32)
TINY = ModelConfig(weights="none", alpha=0.35)


@pytest.fixture(scope="module")
def classifier():
    return build_classifier(SMALL, TINY)


def test_classifier_maps_pixels_to_class_probabilities(classifier):
    """Input (N, 32, 32, 3) raw pixels, output (N, 2) probabilities summing to 1."""
    assert classifier.input_shape == (None, 32, 32, 3)
    assert classifier.output_shape == (None, 2)
    output = classifier.predict(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)), verbose=0)
    assert np.allclose(output.sum(axis=1), 1, atol=1e-5)


def test_base_is_frozen_and_preprocessing_is_a_layer(classifier):
    """Only the head trains; MobileNetV2 preprocessing lives inside the model."""
    assert not get_base(classifier).trainable
    assert len(classifier.trainable_weights) == 2  # the dense head's kernel and bias
    assert classifier.get_layer("mobilenet_v2_preprocess") is not None


def test_alpha_changes_the_base_width():
    """alpha is passed through to MobileNetV2 (a narrower base has fewer weights)."""
    narrow = build_classifier(SMALL, ModelConfig(weights="none", alpha=0.35))
    wide = build_classifier(SMALL, ModelConfig(weights="none", alpha=0.5))
    assert narrow.count_params() < wide.count_params()


def test_unfreezing_top_layers_keeps_batchnorm_frozen():
    """Fine-tuning unfreezes the top N base layers except BatchNormalization."""
    from keras import layers

    model = build_classifier(SMALL, TINY)
    unfrozen = unfreeze_top_layers(model, 10)
    base = get_base(model)
    top = base.layers[-10:]
    assert unfrozen == sum(not isinstance(layer, layers.BatchNormalization) for layer in top)
    assert all(not layer.trainable for layer in base.layers[:-10])
    assert all(not layer.trainable for layer in top if isinstance(layer, layers.BatchNormalization))


def test_augmentation_changes_images_only_in_training(classifier):
    """Augmentation acts while training and is the identity when scoring."""
    augmentation = build_augmentation(TINY, seed=1)
    image = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    assert np.allclose(augmentation(image, training=False), image)
    assert not np.allclose(augmentation(image, training=True), image)
    wrapped = build_training_model(classifier, augmentation)
    assert wrapped.output_shape == (None, 2)


def test_zoom_brightness_and_contrast_act_as_configured_and_are_off_at_zero():
    """Zoomed views show the surface nearer and further (a ramp gets flatter and steeper), brightness and
    contrast move the pixel values; each lever set to 0 leaves its part alone."""
    ramp = np.tile(np.linspace(0, 255, 32, dtype="float32")[None, :, None], (32, 1, 3))
    images = np.repeat(ramp[None], 16, axis=0)
    still = {"weights": "none", "rotation_factor": 0.0, "zoom_factor": 0.0, "brightness_factor": 0.0,
             "contrast_factor": 0.0}  # fmt: skip

    def augmented(**levers: float) -> np.ndarray:
        return np.asarray(build_augmentation(ModelConfig(**{**still, **levers}), seed=3)(images, training=True))

    def steepness(views: np.ndarray) -> np.ndarray:
        return np.abs(np.diff(views[:, 8:24, 8:24, 0], axis=2)).mean(axis=(1, 2))  # flips keep it

    plain = augmented()
    assert np.allclose(steepness(plain), 255 / 31, rtol=0.02)
    zoomed = steepness(augmented(zoom_factor=0.5)) / (255 / 31)
    assert zoomed.max() > 1.1 and zoomed.min() < 0.9  # further away and nearer
    brightened = augmented(brightness_factor=0.5).mean(axis=(1, 2, 3))
    assert np.ptp(brightened) > 20
    contrasted = augmented(contrast_factor=0.5)
    assert np.ptp(contrasted.std(axis=(1, 2, 3))) > 5
    keys = {augmentation_key(ModelConfig(**{**still, name: 0.5})) for name in
            ("zoom_factor", "brightness_factor", "contrast_factor", "rotation_factor")}  # fmt: skip
    assert len(keys | {augmentation_key(ModelConfig(**still))}) == 5
    with pytest.raises(ValueError, match="zoom_factor must be in"):
        ModelConfig(zoom_factor=1.0)


def test_weights_options():
    """imagenet passes through, none means random init, a missing file is a clear error."""
    assert resolve_base_weights("imagenet") == "imagenet"
    assert resolve_base_weights("none") is None
    with pytest.raises(CrackModelError, match="does not exist"):
        resolve_base_weights("/nowhere/weights.h5")


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    """A file that is not MobileNetV2 weights fails with a one-line message naming it."""
    bogus = tmp_path / "not_weights.h5"
    bogus.write_bytes(b"this is not an HDF5 file")
    with pytest.raises(CrackModelError, match=r"not_weights\.h5"):
        build_classifier(SMALL, ModelConfig(weights=str(bogus)))


def test_weights_for_another_alpha_are_rejected(imagenet_weights):
    """The alpha 1.0 ImageNet file does not fit an alpha 0.5 base: clear error."""
    with pytest.raises(CrackModelError, match="does not fit"):
        build_classifier(DataConfig(image_size=96), ModelConfig(weights=imagenet_weights, alpha=0.5))


def test_local_imagenet_weights_load(imagenet_weights):
    """The offline weights file loads into the base (its first conv is not random)."""
    model = build_classifier(DataConfig(image_size=96), ModelConfig(weights=imagenet_weights))
    random_model = build_classifier(DataConfig(image_size=96), ModelConfig(weights="none"))
    loaded = get_base(model).get_layer("Conv1").get_weights()[0]
    fresh = get_base(random_model).get_layer("Conv1").get_weights()[0]
    assert loaded.shape == fresh.shape and not np.allclose(loaded, fresh)


def test_a_hidden_layer_is_optional_and_trains_with_the_output():
    """hidden_units adds one ReLU layer before the output: two more trainable weights, the base still frozen."""
    wider = build_classifier(SMALL, ModelConfig(weights="none", alpha=0.35, hidden_units=16))
    assert wider.get_layer("hidden").units == 16
    assert len(wider.trainable_weights) == 4
    assert wider.output_shape == (None, 2)
    with pytest.raises(ValueError, match="hidden_units"):
        ModelConfig(hidden_units=-1)


POOLED = ("block_6_expand_relu", "block_13_expand_relu")


def test_pooled_layers_join_the_last_in_the_features_the_head_sees():
    """Each named layer pooled beside the last: the head's input is their widths summed; the base stays frozen."""
    plain = build_classifier(SMALL, TINY)
    pooled = build_classifier(SMALL, ModelConfig(weights="none", alpha=0.35, pooled_layers=POOLED))
    base = get_base(pooled)
    assert base.output_names == [*POOLED, "out_relu"]
    widths = [base.get_layer(name).output.shape[-1] for name in POOLED]
    assert pooled.get_layer("pool").output.shape[-1] == plain.get_layer("pool").output.shape[-1] + sum(widths)
    assert not base.trainable and len(pooled.trainable_weights) == 2
    assert unfreeze_top_layers(pooled, 10) > 0  # fine-tuning finds the same layers through the same name
    output = pooled.predict(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)), verbose=0)
    assert np.allclose(output.sum(axis=1), 1, atol=1e-5)


def test_an_unknown_pooled_layer_is_named_in_the_error():
    with pytest.raises(CrackModelError, match=r"\['block_99_relu'\] are not layers of MobileNetV2"):
        build_classifier(SMALL, ModelConfig(weights="none", alpha=0.35, pooled_layers=("block_99_relu",)))
    with pytest.raises(ValueError, match="names a layer twice"):
        ModelConfig(pooled_layers=("block_6_expand_relu", "block_6_expand_relu"))


def test_pooled_layers_have_their_own_feature_cache_and_the_plain_base_keeps_its_own():
    """Cached features of one set of pooled layers never stand in for another's; the plain base's key is the size,
    the decoding and the weights, as before the option."""
    import hashlib

    from crack_model.training import features
    from crack_model.training.features import base_fingerprint

    plain = get_base(build_classifier(SMALL, TINY))
    pooled = get_base(build_classifier(SMALL, ModelConfig(weights="none", alpha=0.35, pooled_layers=POOLED[:1])))
    pooled.set_weights(plain.get_weights())
    old_key = hashlib.sha256(f"size=32;decoding={features.DECODING}".encode())
    for weights in plain.get_weights():
        old_key.update(np.ascontiguousarray(weights).tobytes())
    assert base_fingerprint(plain, 32) == old_key.hexdigest()[:16]
    assert base_fingerprint(pooled, 32) != base_fingerprint(plain, 32)


def test_a_change_of_decoding_makes_cached_features_misses(monkeypatch):
    """A cache filled while 16-bit colour photos decoded near black kept serving those vectors after the fix."""
    from crack_model.training import features

    plain = get_base(build_classifier(SMALL, TINY))
    before = features.base_fingerprint(plain, 32)
    monkeypatch.setattr(features, "DECODING", "a later fix")
    assert features.base_fingerprint(plain, 32) != before


def test_each_set_of_pooled_layers_has_its_own_key_and_bad_names_are_refused_before_training():
    from crack_model.training.features import base_fingerprint

    def base(layers):
        return get_base(build_classifier(SMALL, ModelConfig(weights="none", alpha=0.35, pooled_layers=layers)))

    first, second, swapped = base(POOLED), base((*POOLED[:1], "block_12_expand_relu")), base(POOLED[::-1])
    for other in (second, swapped):
        other.set_weights(first.get_weights())
    keys = {base_fingerprint(model, 32) for model in (first, second, swapped)}
    assert len(keys) == 3  # a set of layers, or their order, never reads another's cached features
    with pytest.raises(CrackModelError, match="out_relu is the base's last layer"):
        base(("out_relu",))
    assert ModelConfig(pooled_layers=["block_6_expand_relu"]).pooled_layers == ("block_6_expand_relu",)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sequence of layer names"):
        ModelConfig(pooled_layers="block_6_expand_relu")  # type: ignore[arg-type]


def test_imagenet_weights_that_cannot_be_fetched_are_one_line_saying_what_to_do(monkeypatch):
    """Offline, Keras's download raised a bare Exception: 60 lines of traceback, and the DAG retried twice."""
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...no_top.h5: None -- [Errno -3]")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(CrackModelError, match=r"could not get the ImageNet weights for MobileNetV2 \(URL fetch failure"
                       r".*offline, pass --weights PATH"):  # fmt: skip
        build_classifier(SMALL, ModelConfig(weights="imagenet"))
