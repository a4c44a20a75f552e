"""Retraining from the champion: the head starts from a fitting model's head and is pulled toward it."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import ModelCard
from crack_model.data.labeled import load_labeled
from crack_model.training.features import fit_head_on_features
from crack_model.training.model import build_classifier
from crack_model.training.train import set_seeds
from crack_model.training.warm_start import HeadAnchor, starting_point, trained_images

# The trained_model fixture's network (conftest.py): 64 px, random-init base seeded by the data seed.
CONFIG = DataConfig(image_size=64, batch_size=16)
MODEL = ModelConfig(weights="none", alpha=0.35)
CLASSES = list(CONFIG.class_names)


def fresh_classifier(seed: int = CONFIG.seed, model: ModelConfig = MODEL):
    set_seeds(seed)  # as train() does before building: the same seed gives the same random base
    return build_classifier(CONFIG, model)


def output_kernel(classifier) -> np.ndarray:
    return np.array(classifier.get_layer("class_probabilities").get_weights()[0])


def test_the_head_starts_from_a_fitting_models_head(trained_model):
    import keras

    champion = keras.models.load_model(trained_model.output_dir / "model.keras", compile=False)
    classifier = fresh_classifier()
    assert not np.allclose(output_kernel(classifier), output_kernel(champion))
    start = starting_point(trained_model.output_dir, classifier, CLASSES, 64, anchor_weight=0.1, label="models:/x")
    np.testing.assert_array_equal(output_kernel(classifier), output_kernel(champion))
    assert start.record() == {"model": "models:/x", "version": trained_model.card.version, "used": True,
                              "anchor_weight": 0.1}  # fmt: skip
    np.testing.assert_array_equal(start.anchor.kernels["class_probabilities"], output_kernel(champion))


def test_looking_at_a_model_leaves_the_random_streams_as_they_were(trained_model):
    """Loading a model draws Keras's default seeds from Python's random: a run that starts from a model must
    shuffle and drop out as the same run afresh would, so that the two differ by their start alone."""
    import random

    classifier = fresh_classifier()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    starting_point(trained_model.output_dir, classifier, CLASSES, 64, anchor_weight=0.0)
    assert random.getstate() == python_state
    numpy_after = np.random.get_state()
    assert numpy_after[0] == numpy_state[0] and numpy_after[2:] == numpy_state[2:]  # the position in the stream
    np.testing.assert_array_equal(numpy_after[1], numpy_state[1])


def changed_card(source, destination, **fields):
    shutil.copytree(source, destination)
    card = json.loads((destination / "model.json").read_text())
    card.update(fields)
    (destination / "model.json").write_text(json.dumps(card))
    return destination


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("classes", "classes"),
        ("image size", "px images"),
        ("base", "base differs"),
        ("hidden layer", "head's layers"),
    ],
)
def test_a_model_that_does_not_fit_is_no_start_and_says_why(trained_model, tmp_path, change, reason):
    model_dir, classifier = trained_model.output_dir, fresh_classifier()
    if change == "classes":
        model_dir = changed_card(model_dir, tmp_path / "m", class_names=["Positive", "Negative"])
    elif change == "image size":
        model_dir = changed_card(model_dir, tmp_path / "m", image_size=96)
    elif change == "base":
        classifier = fresh_classifier(seed=CONFIG.seed + 1)  # another random base: its cached features differ
    else:
        classifier = fresh_classifier(model=ModelConfig(weights="none", alpha=0.35, hidden_units=8))
    before = output_kernel(classifier)
    start = starting_point(model_dir, classifier, CLASSES, 64, anchor_weight=0.1)
    assert start.anchor is None and reason in start.reason
    assert start.record()["used"] is False and reason in start.record()["reason"]
    np.testing.assert_array_equal(output_kernel(classifier), before)  # untouched: training starts afresh


@pytest.mark.parametrize("damage", [b"not a keras file", "truncated"])
def test_a_damaged_model_file_is_no_start_and_says_why(trained_model, tmp_path, damage):
    model_dir = changed_card(trained_model.output_dir, tmp_path / "m")
    model_file = model_dir / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:5000] if damage == "truncated" else damage)
    start = starting_point(model_dir, fresh_classifier(), CLASSES, 64, anchor_weight=0.0)
    assert start.anchor is None and "model.keras cannot be loaded" in start.reason


def test_a_folder_without_a_model_is_an_error_naming_it(tmp_path):
    with pytest.raises(CrackModelError, match=re.escape(f"no model.keras in {tmp_path}")):
        starting_point(tmp_path, None, CLASSES, 64, anchor_weight=0.1)


def test_the_anchor_keeps_the_head_near_its_start(synth_data, tmp_path, imagenet_weights):
    """From the same start on the same images, an anchored head ends nearer its start than a free one.

    Real ImageNet features: a random base's features are near 0 and would not move a head at all.
    """
    images = load_labeled(synth_data, CONFIG)
    model = ModelConfig(weights=imagenet_weights)
    distances = {}
    for strength in (0.0, 10.0):
        classifier = fresh_classifier(model=model)
        start = output_kernel(classifier)
        anchor = HeadAnchor({"class_probabilities": start}, strength)
        fit_head_on_features(classifier, images[::2], images[1::2], CONFIG, model, TrainConfig(epochs=10),
                             tmp_path, [], verbose=0, regularizers=anchor.regularizers())  # fmt: skip
        distances[strength] = float(np.linalg.norm(output_kernel(classifier) - start))
    assert distances[0.0] > 0.1
    assert distances[10.0] < distances[0.0] / 2


def test_no_pull_means_no_regularizer():
    assert HeadAnchor({"class_probabilities": np.zeros((4, 2))}, 0.0).regularizers() == {}


def read_split(path) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["sha256"]: row["split"] for row in csv.DictReader(handle)}


def test_training_from_a_model_records_it_and_saves_a_plain_classifier(trained_model, synth_data, tmp_path):
    """metrics.json says where the head started; model.keras loads without the anchor (no custom objects).
    The images the start trained on stay in train, whatever this run's split would have done with them."""
    import keras

    from crack_model.training.train import train

    # A start that trained on what this seed's split puts in validation and test, and was tested on the rest.
    champion = shutil.copytree(trained_model.output_dir, tmp_path / "champion")
    lines = (champion / "split.csv").read_text(encoding="utf-8").splitlines()
    swapped = [re.sub(r",(train|validation|test),", lambda m: ",test," if m[1] == "train" else ",train,", line)
               for line in lines[1:]]  # fmt: skip
    (champion / "split.csv").write_text("\n".join([lines[0], *swapped]) + "\n", encoding="utf-8")
    seen = {sha for sha, part in read_split(champion / "split.csv").items() if part == "train"}
    assert seen and seen != set(read_split(champion / "split.csv"))

    run = train(synth_data, tmp_path / "out", CONFIG, MODEL, TrainConfig(epochs=1, anchor_weight=0.5), verbose=0,
                export_runtimes=False, photo_mosaics=None, feature_cache_dir=tmp_path / "cache",
                start_from=champion)  # fmt: skip
    assert run.metrics["started_from"]["used"] is True
    assert run.metrics["started_from"]["version"] == trained_model.card.version
    assert run.metrics["started_from"]["anchor_weight"] == 0.5
    assert run.metrics["started_from"]["kept_in_train"] == len(seen)
    candidate = read_split(tmp_path / "out" / "split.csv")
    assert {sha for sha in seen if candidate[sha] != "train"} == set()
    assert "validation" in candidate.values() and "test" in candidate.values()
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["started_from"] == run.metrics["started_from"]
    reloaded = keras.models.load_model(tmp_path / "out" / "model.keras", compile=False)
    assert reloaded.get_layer("class_probabilities").kernel_regularizer is None
    assert ModelCard.load(tmp_path / "out").version == run.card.version


def test_the_images_a_model_trained_on_are_its_split_csvs_train_rows(tmp_path, caplog):
    """Short rows, extra fields and rows of other splits are passed over; only train rows' hashes count."""
    (tmp_path / "split.csv").write_text(
        "uri,label,sha256,split,slice\na.jpg,Positive,aaa,train,metu\nb.jpg,Positive\nc.jpg,Negative,ccc,test,metu\n"
        "d.jpg,Negative,ddd,train,metu,extra\ne.jpg,Negative,,train,metu\n",
        encoding="utf-8",
    )
    with caplog.at_level("WARNING"):
        assert trained_images(tmp_path) == {"aaa", "ddd"}
    assert not caplog.text


@pytest.mark.parametrize(
    "content",
    [None, b"uri,label,split\na.jpg,Positive,train\n", b"uri,label,sha256,split\n", b"\xff\xfe\x00 not text"],
    ids=["missing", "no sha256 column", "no rows", "not text"],
)
def test_a_split_csv_naming_no_trained_image_keeps_nothing_and_says_so(tmp_path, caplog, content):
    if content is not None:
        (tmp_path / "split.csv").write_bytes(content)
    with caplog.at_level("WARNING"):
        assert trained_images(tmp_path) == frozenset()
    assert "images the model trained on may land in validation or test" in caplog.text


def test_without_the_feature_cache_the_run_starts_from_the_model_and_records_no_pull(trained_model, synth_data,
                                                                                      tmp_path):  # fmt: skip
    from crack_model.training.train import train

    run = train(synth_data, tmp_path / "out", CONFIG, MODEL, TrainConfig(epochs=1, anchor_weight=0.5), verbose=0,
                export_runtimes=False, photo_mosaics=None, start_from=trained_model.output_dir)  # fmt: skip
    assert run.metrics["started_from"]["used"] is True and run.metrics["started_from"]["anchor_weight"] == 0.0


def test_a_wrong_start_fails_before_any_training(tmp_path, synth_data):
    from crack_model.training.train import train

    with pytest.raises(CrackModelError, match=r"no model\.keras in"):
        train(synth_data, tmp_path / "out", CONFIG, MODEL, TrainConfig(epochs=1), start_from=tmp_path / "nothing")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("weight", [-0.1, float("nan"), float("inf")])
def test_a_negative_or_nan_anchor_weight_is_refused(weight):
    with pytest.raises(ValueError, match="anchor_weight"):
        TrainConfig(anchor_weight=weight)


def test_a_start_in_the_output_folder_is_refused_before_anything_is_removed(tmp_path):
    """Training removes the output folder's earlier model files, which here are the start's."""
    from crack_model.training.warm_start import check_start

    (tmp_path / "model.keras").write_bytes(b"weights")
    with pytest.raises(CrackModelError, match="is both the model to start from and the output: train into another"):
        check_start(tmp_path, tmp_path / ".")
    assert (tmp_path / "model.keras").exists()
    assert check_start(tmp_path, tmp_path / "next") == tmp_path
