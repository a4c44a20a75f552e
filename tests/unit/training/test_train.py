"""Training end to end on synthetic data: artifacts, saved-model fidelity, prediction rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from crack_model.core.model_card import ModelCard
from tests import imagefiles


def test_training_writes_every_artifact(trained_model):
    """model.keras, card, history, metrics, split, curves, confusion matrix, checkpoint, logs."""
    out = trained_model.output_dir
    for name in (
        "model.keras",
        "model.json",
        "history.json",
        "metrics.json",
        "split.csv",
        "training_accuracy.png",
        "training_loss.png",
        "confusion_matrix.png",
        "examples.png",
        "augmentation.png",
        "checkpoints/best.keras",
        "training_config.json",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").rglob("*tfevents*"))
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2 and "val_crack_recall" in history
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "split.csv") as handle:
        test_rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    assert metrics["test"]["images"] == len(test_rows)
    card = ModelCard.load(out)
    assert card.version == metrics["model_version"] and 0 < card.threshold <= 0.5
    # Patches scored from the threshold up to 0.9 are confirmed by their flips (training/patch_confirmation.py).
    chosen = metrics["patch_confirmation"]
    assert card.patch_confirm_threshold == chosen["threshold"] <= card.threshold
    assert chosen["validation_cracks_in_band"] <= chosen["validation_images_in_band"]
    without = metrics["test"]["without_patch_confirmation"]
    assert metrics["test"]["false_alarms"] <= without["false_alarms"]
    assert metrics["test"]["missed_cracks"] >= without["missed_cracks"]


def test_saved_model_predicts_like_the_in_memory_one(trained_model, synth_data):
    """Reloading model.keras gives the same probabilities as the model that was trained."""
    import keras

    from crack_model.core.config import DataConfig
    from crack_model.data.labeled import load_labeled, make_dataset

    images = load_labeled(synth_data, DataConfig())[:16]
    config = DataConfig(image_size=64, batch_size=16)
    pixels = next(iter(make_dataset(images, config)))[0]
    reloaded = keras.models.load_model(trained_model.output_dir / "model.keras")
    from crack_model.training.train import predict_probabilities

    in_memory = predict_probabilities(reloaded, images, config)
    assert np.allclose(reloaded.predict(pixels, verbose=0), in_memory, atol=1e-5)
    # and the scoring path (Pillow decode + batching) agrees with tf.data + predict
    from crack_model.evaluation.assess import score_labeled
    from crack_model.serving.scorer import load_scorer

    scored = score_labeled(load_scorer(trained_model.output_dir, runtime="keras"), images)
    assert np.allclose([scored[i.uri] for i in images], in_memory[:, 1], atol=1e-5)


def test_predict_cli_writes_a_row_per_image_including_failures(trained_model, synth_data, tmp_path):
    """predict scores a folder; a corrupt file is a row with status=error, the rest are scored."""
    from tests.conftest import run_cli

    folder = tmp_path / "uploads"
    folder.mkdir()
    for path in sorted((synth_data / "Positive").glob("*.jpg"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.jpg").write_bytes(imagefiles.truncated_jpeg())
    (folder / "gray.png").write_bytes(imagefiles.grayscale_png())
    out = tmp_path / "predictions.csv"
    result = run_cli("predict", str(folder), "--model", str(trained_model.output_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with open(out) as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}
    assert len(rows) == 5
    assert rows["broken.jpg"]["status"] == "error" and "truncated" in rows["broken.jpg"]["error"]
    assert rows["gray.png"]["status"] == "ok"
    card = ModelCard.load(trained_model.output_dir)
    for name, row in rows.items():
        assert row["model_version"] == card.version
        if name != "broken.jpg":
            probability = float(row["crack_probability"])
            assert 0 <= probability <= 1
            assert row["label"] == ("Positive" if probability >= card.threshold else "Negative")


def test_evaluate_cli_on_the_test_split(trained_model, tmp_path):
    """evaluate --split test reproduces the test metrics saved at training time."""
    from tests.conftest import run_cli

    result = run_cli("evaluate", "--model", str(trained_model.output_dir), "--split", "test", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    saved = trained_model.metrics["test"]
    assert evaluated["images"] == saved["images"]
    assert evaluated["accuracy"] == saved["accuracy"]
    assert evaluated["crack_recall"] == saved["crack_recall"]


def test_evaluate_on_the_test_split_refuses_an_image_changed_since_training(trained_model, tmp_path):
    """A test image whose bytes are not the ones split.csv recorded stops evaluate --split test, named: its
    figures would be printed as the test split's."""
    import csv
    import shutil

    from tests.conftest import run_cli

    model = shutil.copytree(trained_model.output_dir, tmp_path / "model")
    with open(model / "split.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    changed = next(row for row in rows if row["split"] == "test")
    changed["sha256"] = "0" * 64  # as if the image at that URI had been replaced since
    with open(model / "split.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    result = run_cli("evaluate", "--model", str(model), "--split", "test", "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert changed["uri"] in result.stderr and "changed since the model was trained" in result.stderr, result.stderr
    assert "--data" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_fitting_on_a_photo_gone_since_its_fingerprint_stops_with_one_line_naming_it(tmp_path):
    """Training without the feature cache reads photos in tf.data: one that is gone by then ends the fit with
    the library's error naming it (``crack-model: error: ...``), not a TensorFlow traceback."""
    import re

    import keras
    import pytest

    from crack_model.core.config import DataConfig
    from crack_model.core.errors import CrackModelError
    from crack_model.data.labeled import load_labeled, make_dataset
    from crack_model.data.synth import generate_dataset
    from crack_model.training.fitting import compile_and_fit

    generate_dataset(tmp_path, 6, size=48, seed=3)
    images = load_labeled(tmp_path, DataConfig())
    config = DataConfig(image_size=32, batch_size=4)
    Path(images[7].uri).unlink()
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    with pytest.raises(CrackModelError, match=rf"^object not found: .*{re.escape(Path(images[7].uri).name)}$"):
        compile_and_fit(model, make_dataset(images, config), None, 1, 0.001, [], 0, 1)
