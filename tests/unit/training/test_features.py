"""The feature cache: identical to a fresh forward pass, reused across runs, same network out."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.data.labeled import load_labeled
from crack_model.evaluation.assess import read_split_manifest
from crack_model.training.features import FeatureCache, base_fingerprint, cached_features, feature_extractor
from crack_model.training.model import augmentation_key, build_augmentation, build_classifier, get_base

CONFIG = DataConfig(image_size=64, batch_size=8)
MODEL = ModelConfig(weights="none", alpha=0.35)


def test_cached_features_equal_a_fresh_forward_pass(synth_data, tmp_path):
    """View 0 from the cache (cold and warm) equals the base's pooled output on the same pixels."""
    from crack_model.core.imaging import decode_to_array
    from crack_model.core.storage import read_uri

    images = load_labeled(synth_data, CONFIG)[:10]
    classifier = build_classifier(CONFIG, MODEL)
    extractor = feature_extractor(classifier)
    cache = FeatureCache(tmp_path, base_fingerprint(get_base(classifier), 64))
    augmentation = build_augmentation(MODEL, seed=1)
    cold, computed = cached_features(images, 2, extractor, augmentation, cache, CONFIG)
    assert computed == 20
    pixels = np.stack([decode_to_array(read_uri(image.uri), 64) for image in images]).astype("float32")
    fresh = extractor.predict(pixels, verbose=0)
    scale = np.abs(fresh).max()
    assert scale > 0
    assert np.allclose(cold[0], fresh, rtol=1e-4, atol=1e-5 * scale)
    warm, computed_again = cached_features(images, 2, extractor, augmentation, cache, CONFIG)
    assert computed_again == 0
    assert np.array_equal(warm, cold)
    # augmented views differ from the plain image
    assert np.linalg.norm(cold[1] - cold[0]) > 1e-3 * np.linalg.norm(cold[0])


def test_a_photo_replaced_before_its_features_stops_and_is_never_cached_under_its_old_hash(synth_data, tmp_path):
    """Features are cached under the fingerprint's sha256: a photo replaced between its fingerprint and the
    feature pass stops it with the photo named, and no feature of the new bytes is filed under the old hash
    (a later run with the old photo, or a copy of it, would read them back as its own)."""
    import shutil

    from crack_model.data.labeled import LabeledPhotoChangedError

    folder = tmp_path / "data"
    shutil.copytree(synth_data, folder)
    labeled = load_labeled(folder, CONFIG)
    images = [*labeled[:8], *labeled[-8:]]  # both classes, two batches of 8
    replaced = images[10]  # in the second batch: the first one's features are cached before it is read
    Path(replaced.uri).write_bytes(Path(images[0].uri).read_bytes())  # the other class's photo, in place
    assert replaced.label != images[0].label
    classifier = build_classifier(CONFIG, MODEL)
    cache = FeatureCache(tmp_path / "cache", base_fingerprint(get_base(classifier), 64))
    with pytest.raises(LabeledPhotoChangedError, match=f"labeled photo {re.escape(replaced.uri)} changed"):
        cached_features(images, 2, feature_extractor(classifier), build_augmentation(MODEL, seed=1), cache, CONFIG)
    assert all(cache.get(replaced.sha256, view) is None for view in (0, 1))
    assert cache.get(images[1].sha256, 0) is not None  # the cache was being written: the check above is not vacuous


def test_augmented_views_are_cached_per_augmentation_and_the_plain_view_is_shared(synth_data, tmp_path):
    """Views drawn with another augmentation (say, a new zoom) are computed anew, never read back as its own."""
    images = load_labeled(synth_data, CONFIG)[:6]
    classifier = build_classifier(CONFIG, MODEL)
    extractor = feature_extractor(classifier)
    fingerprint = base_fingerprint(get_base(classifier), 64)
    plain = ModelConfig(weights="none", alpha=0.35, zoom_factor=0.0)
    zoomed = ModelConfig(weights="none", alpha=0.35, zoom_factor=0.5)

    def features(config: ModelConfig) -> tuple[np.ndarray, int]:
        cache = FeatureCache(tmp_path, fingerprint, augmentation_key(config))
        return cached_features(images, 2, extractor, build_augmentation(config, seed=1), cache, CONFIG)

    first, computed = features(plain)
    assert computed == 12
    second, computed = features(zoomed)
    assert computed == 6  # the augmented views only
    assert np.array_equal(second[0], first[0])
    assert np.linalg.norm(second[1] - first[1]) > 1e-3 * np.linalg.norm(first[1])
    assert features(plain)[1] == 0 and features(zoomed)[1] == 0


def test_fingerprint_follows_the_base_weights():
    """Different base weights (or input size) never share cache entries."""
    first = get_base(build_classifier(CONFIG, MODEL))
    second = get_base(build_classifier(CONFIG, MODEL))
    assert base_fingerprint(first, 64) == base_fingerprint(first, 64)
    assert base_fingerprint(first, 64) != base_fingerprint(first, 96)
    assert base_fingerprint(first, 64) != base_fingerprint(second, 64)


@pytest.mark.slow
def test_training_with_the_cache_gives_a_working_classifier(synth_data, tmp_path):
    """Cached training saves a full classifier whose head holds the trained weights; a rerun reuses all."""
    import keras

    from crack_model.training.train import train

    cache = tmp_path / "cache"
    run = train(synth_data, tmp_path / "m1", CONFIG, MODEL, TrainConfig(epochs=3), verbose=0,
                export_runtimes=False, feature_cache_dir=cache)  # fmt: skip
    model = keras.models.load_model(run.output_dir / "model.keras")
    assert model.output_shape == (None, 2)
    assert len(run.history["loss"]) >= 1 and "val_loss" in run.history
    sizes = {name: len(part) for name, part in split_sizes(run.output_dir).items()}
    files = sorted(cache.rglob("*.npy"))
    # plain + 1 augmented view per training image and seam example (seams.py: share x each class's
    # training images); validation and test are scored from the cache too
    train_cells = Counter(image.label for image in read_split_manifest(run.output_dir / "split.csv", "train"))
    seams = sum(round(TrainConfig().seam_share * count) for count in train_cells.values())
    assert seams > 0 and len(files) == 2 * (sizes["train"] + seams) + sizes["validation"] + sizes["test"]
    (tmp_path / "m2").mkdir()
    (tmp_path / "m2" / "model_int8.tflite").write_bytes(b"an earlier model's export")
    train(synth_data, tmp_path / "m2", CONFIG, MODEL, TrainConfig(epochs=1), verbose=0,
          export_runtimes=False, feature_cache_dir=cache)  # fmt: skip
    assert sorted(cache.rglob("*.npy")) == files  # the same seeded base and seam examples: everything reused
    # An export this run did not write would be read, and registered, as this model's.
    assert not (tmp_path / "m2" / "model_int8.tflite").exists()


def split_sizes(model_dir):
    import csv
    from collections import defaultdict

    parts = defaultdict(list)
    with open(model_dir / "split.csv") as handle:
        for row in csv.DictReader(handle):
            parts[row["split"]].append(row["uri"])
    return parts


@pytest.mark.slow
def test_the_feature_cache_checkpoint_scores_pixels(synth_data, tmp_path):
    """checkpoints/best.keras from cached training is the full classifier: it takes a pixel batch, like model.keras."""
    import keras

    from crack_model.core.imaging import decode_to_array
    from crack_model.core.storage import read_uri
    from crack_model.training.train import train

    run = train(synth_data, tmp_path / "model", CONFIG, MODEL, TrainConfig(epochs=2), verbose=0,
                export_runtimes=False, feature_cache_dir=tmp_path / "cache")  # fmt: skip
    assert run.artifacts["checkpoint"] == run.output_dir / "checkpoints" / "best.keras"
    checkpoint = keras.models.load_model(run.artifacts["checkpoint"])
    assert checkpoint.input_shape == (None, 64, 64, 3)
    images = load_labeled(synth_data, CONFIG)[:6]
    pixels = np.stack([decode_to_array(read_uri(image.uri), 64) for image in images]).astype("float32")
    probabilities = checkpoint.predict(pixels, verbose=0)
    assert probabilities.shape == (6, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # Early stopping restores the best epoch, the epoch the checkpoint saved: the two models agree.
    final = keras.models.load_model(run.output_dir / "model.keras")
    assert np.allclose(probabilities, final.predict(pixels, verbose=0), atol=1e-5)


def test_many_missing_features_are_computed_on_litert_with_the_same_values(synth_data, tmp_path, monkeypatch):
    """Past the threshold the extractor is converted to LiteRT once (kept in the cache); its features match Keras's."""
    from crack_model.core.imaging import decode_to_array
    from crack_model.core.storage import read_uri
    from crack_model.training import features as features_module

    monkeypatch.setattr(features_module, "LITERT_MIN_IMAGES", 10)
    images = load_labeled(synth_data, CONFIG)[:12]
    classifier = build_classifier(CONFIG, MODEL)
    extractor = feature_extractor(classifier)
    cache = FeatureCache(tmp_path, base_fingerprint(get_base(classifier), 64))
    computed_plain, computed = cached_features(images, 1, extractor, build_augmentation(MODEL, seed=1), cache, CONFIG)
    assert computed == 12 and cache.extractor_path.is_file()
    pixels = np.stack([decode_to_array(read_uri(image.uri), 64) for image in images]).astype("float32")
    fresh = extractor.predict(pixels, verbose=0)
    scale = np.abs(fresh).max()
    assert scale > 0 and np.allclose(computed_plain[0], fresh, rtol=1e-4, atol=1e-5 * scale)
    assert not np.array_equal(computed_plain[0], fresh)  # computed by LiteRT, not by Keras
    few = load_labeled(synth_data, CONFIG)[12:14]  # below the threshold, but the converted model is there
    assert cached_features(few, 1, extractor, build_augmentation(MODEL, seed=1), cache, CONFIG)[1] == 2


def test_a_damaged_cached_extractor_falls_back_to_keras_and_is_converted_again(tmp_path, caplog):
    """A truncated extractor file is not fatal: features come from Keras and the file goes (converted next time)."""
    from crack_model.training.features import litert_extractor

    classifier = build_classifier(CONFIG, MODEL)
    cache = FeatureCache(tmp_path, base_fingerprint(get_base(classifier), 64))
    cache.extractor_path.parent.mkdir(parents=True)
    cache.extractor_path.write_bytes(b"TFL3 truncated")
    assert litert_extractor(feature_extractor(classifier), cache, 10_000) is None
    assert not cache.extractor_path.exists() and "computing features on Keras" in caplog.text


@pytest.mark.slow
def test_a_hidden_layer_head_is_trained_on_cached_features_and_scores_as_the_network(
    synth_data, tmp_path, imagenet_weights
):
    """With hidden_units, fitting on cached features trains both head layers of the classifier itself.

    ImageNet weights: a randomly initialised base pools to features of about 1e-10, too small to
    move a hidden layer in two epochs.
    """
    from crack_model.core.imaging import decode_to_array
    from crack_model.core.storage import read_uri
    from crack_model.training.features import fit_head_on_features, predict_from_features

    model_config = ModelConfig(weights=imagenet_weights, hidden_units=8)
    images = load_labeled(synth_data, CONFIG)
    classifier = build_classifier(CONFIG, model_config)
    assert classifier.get_layer("hidden").units == 8
    before = {name: classifier.get_layer(name).get_weights()[0].copy() for name in ("hidden", "class_probabilities")}
    fit_head_on_features(classifier, images[::2], images[1::2], CONFIG, model_config, TrainConfig(epochs=2),
                         tmp_path / "cache", [], verbose=0)  # fmt: skip
    for name, kernel in before.items():
        assert not np.allclose(classifier.get_layer(name).get_weights()[0], kernel), f"{name} was not trained"
    pixels = np.stack([decode_to_array(read_uri(image.uri), 64) for image in images[:6]]).astype("float32")
    from_cache = predict_from_features(classifier, images[:6], CONFIG, model_config, tmp_path / "cache")
    assert np.allclose(classifier.predict(pixels, verbose=0), from_cache, atol=1e-4)


@pytest.mark.parametrize("content", [b"", b"\x93NUMPY\x01\x00v\x00{'descr'", b"garbage"], ids=["empty", "cut", "junk"])
def test_a_damaged_cached_vector_is_a_miss_and_is_removed(tmp_path, content):
    """An empty file (a crash before the data reached the disk) raised EOFError in every later training."""
    cache = FeatureCache(tmp_path, "fingerprint")
    cache.put("ab" * 32, 0, np.ones(8))
    [path] = [path for path in tmp_path.rglob("*.npy")]
    path.write_bytes(content)
    assert cache.get("ab" * 32, 0) is None
    assert not path.exists()  # computed and written again by the next training


def test_a_failed_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
    """A write that fails midway (disk full) leaves neither a partial temporary file nor an entry."""
    cache = FeatureCache(tmp_path, "fingerprint")
    cache.put("ab" * 32, 0, np.ones(8))
    written = sorted(path.name for path in tmp_path.rglob("*") if path.is_file())

    def disk_full(handle, array):
        handle.write(b"\x93NUMPY")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    cache.put("cd" * 32, 0, np.ones(8))  # warned of, not raised (the next test)
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == written
    assert cache.get("cd" * 32, 0) is None


def test_writes_abandoned_by_a_killed_training_are_swept_and_fresh_ones_kept(tmp_path):
    """kill -9 mid-write left ``.tmp-*`` files in the cache for good; a young one may be another training's."""
    cache = FeatureCache(tmp_path, "fingerprint")
    cache.put("ab" * 32, 0, np.ones(8))
    [kept] = list(tmp_path.rglob("*.npy"))
    abandoned, in_progress = kept.with_name(".tmp-dead-x.npy"), kept.with_name(".tmp-live-x.npy")
    extractor = cache.extractor_path.with_name(".tmp-dead-extractor_fp32.tflite")  # litert_extractor's, at the top
    for leftover in (abandoned, in_progress, extractor):
        leftover.write_bytes(b"\x93NUMPY")
    two_hours_ago = time.time() - 7200
    for leftover in (abandoned, extractor):
        os.utime(leftover, (two_hours_ago, two_hours_ago))
    FeatureCache(tmp_path, "fingerprint")
    assert not abandoned.exists() and not extractor.exists()
    assert in_progress.exists() and kept.exists()


def test_a_failed_feature_pass_stops_its_decoding_stage_itself(synth_data, tmp_path):
    """The base failing mid-pass (out of memory, say) closes the decoding stage in the failing thread, with the
    collector off: a stage left to the collector holds its threads, and closing one there could deadlock."""
    import gc

    from tests.gc_hang_probe import suspended_stages

    class FailingExtractor:
        output_shape = (None, 8)

        def predict_on_batch(self, pixels):
            raise MemoryError("the base ran out of memory")

    images = load_labeled(synth_data, CONFIG)[:40]  # 5 batches of 8: the stage is mid-way when the first fails
    gc.collect()
    earlier = suspended_stages()  # an earlier test's failure may hold its own
    gc.disable()
    try:
        with pytest.raises(MemoryError, match="ran out of memory") as failure:
            cached_features(images, 1, FailingExtractor(), None, FeatureCache(tmp_path, "fingerprint"), CONFIG)
        assert failure.value.__traceback__ is not None  # the failure, traceback and all, is still held here
        assert suspended_stages(other_than=earlier) == []
    finally:
        gc.enable()


@pytest.mark.slow
def test_a_model_with_pooled_layers_trains_on_cached_features_and_serves_as_trained(synth_data, tmp_path,
                                                                                   imagenet_weights):  # fmt: skip
    """Earlier layers pooled beside the last: the head trained on cached features, the saved model and its
    LiteRT export score alike; a champion that pooled only the last layer is no start for it (afresh)."""
    from crack_model.evaluation.assess import score_labeled
    from crack_model.serving.scorer import load_scorer
    from crack_model.training.features import predict_from_features
    from crack_model.training.train import train

    pooled = ModelConfig(weights=imagenet_weights, pooled_layers=("block_6_expand_relu", "block_13_expand_relu"))
    quick = TrainConfig(epochs=2, seam_share=0)
    plain = train(synth_data, tmp_path / "plain", CONFIG, ModelConfig(weights=imagenet_weights), quick, verbose=0,
                  feature_cache_dir=tmp_path / "cache", photo_mosaics=None, export_runtimes=False)  # fmt: skip
    run = train(synth_data, tmp_path / "pooled", CONFIG, pooled, quick, verbose=0, feature_cache_dir=tmp_path / "cache",
                photo_mosaics=None, start_from=plain.output_dir)  # fmt: skip

    import json

    import keras

    assert "pooled layers" in run.metrics["started_from"]["reason"]
    recorded = json.loads((run.output_dir / "training_config.json").read_text())["model"]["pooled_layers"]
    assert recorded == ["block_6_expand_relu", "block_13_expand_relu"]
    images = read_split_manifest(run.output_dir / "split.csv", "test")[:8]
    keras_scores = score_labeled(load_scorer(run.output_dir, runtime="keras"), images)
    fp32_scores = score_labeled(load_scorer(run.output_dir, runtime="litert-fp32"), images)
    saved = keras.models.load_model(run.output_dir / "model.keras", compile=False)
    from_cache = predict_from_features(saved, images, CONFIG, pooled, tmp_path / "cache")[:, 1]
    assert np.allclose([keras_scores[image.uri] for image in images], from_cache, atol=1e-4)
    assert np.allclose([fp32_scores[image.uri] for image in images], from_cache, atol=1e-3)


def test_a_full_cache_is_warned_of_once_and_the_features_are_still_computed(tmp_path, monkeypatch, caplog):
    """A full disk under the cache failed a retraining, and each retry, with "OSError: 1280 requested and 992
    written": a cache is a shortcut, not a requirement."""
    cache = FeatureCache(tmp_path / "cache", "f" * 16)

    def full(handle, array):
        raise OSError("1280 requested and 992 written")

    monkeypatch.setattr(np, "save", full)
    with caplog.at_level("WARNING"):
        for view in (0, 1):
            cache.put("ab" * 32, view, np.ones(4, np.float32))
    assert cache.get("ab" * 32, 0) is None and cache.unwritable
    warned = [record.getMessage() for record in caplog.records if "feature cache" in record.getMessage()]
    assert len(warned) == 1 and str(cache.root) in warned[0] and "CRACK_MODEL_CACHE" in warned[0]
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_an_extractor_the_cache_cannot_take_falls_back_to_keras(tmp_path, monkeypatch, caplog):
    """With the cache's disk full, writing the converted extractor raised and failed the retraining."""
    from crack_model.training import features

    cache = FeatureCache(tmp_path / "cache", "f" * 16)
    classifier = build_classifier(DataConfig(image_size=32), ModelConfig(weights="none", alpha=0.35))
    real_write = Path.write_bytes

    def full(self, data):
        if ".tmp-" in self.name:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with caplog.at_level("WARNING"):
        assert features.litert_extractor(feature_extractor(classifier), cache, missing=10_000) is None
    assert "cannot write the LiteRT feature extractor" in caplog.text and not cache.extractor_path.exists()
