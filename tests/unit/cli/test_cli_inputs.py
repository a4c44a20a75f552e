"""What users hand the commands that cost them before: an export, a training or an evaluation that altered a
registered version, an --out that overwrote a photo or went into the labeled data, names and files predict skipped
or choked on, damaged model files, empty settings."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from crack_model.cli.arguments import default_weights
from crack_model.cli.main import build_parser, main
from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import ModelCard
from crack_model.serving.scorer import load_scorer
from crack_model.training.model import resolve_base_weights


@pytest.fixture()
def model(trained_model, tmp_path) -> Path:
    """A copy of the trained model's folder, to damage at will."""
    return Path(shutil.copytree(trained_model.output_dir, tmp_path / "model"))


def test_export_never_writes_into_a_registered_version(tmp_path, capsys):
    """Its files are checked against their registered hashes: one export made the version unloadable for good."""
    folder = tmp_path / "versions" / "v1"
    folder.mkdir(parents=True)
    (folder / "version.json").write_text("{}")
    assert main(["export", "--model", str(folder)]) == 1
    assert "is a registered version, which is never changed: copy the folder" in capsys.readouterr().err


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def train_args(data: Path, out: Path) -> list[str]:
    """A small, quick training (refused before it starts; run, it would take seconds, not minutes)."""
    return ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--weights", "none", "--alpha",
            "0.35", "--image-size", "64", "--no-export"]  # fmt: skip


@pytest.mark.parametrize(
    ("version", "said"),
    [
        ("v1", "is a registered version, which is never changed: train into a new folder"),
        ("v1/retrained", "is in a registry's models/<name>/versions/ folder, where only a registration writes"),
        ("not-yet-registered", "is in a registry's models/<name>/versions/ folder"),
    ],
)
def test_train_never_writes_into_a_registered_version(model, tmp_path, synth_data, capsys, version, said):
    """`train --out <the champion's folder>` replaced its model and deleted its exports, exit 0: no worker could
    load the champion after (its files no longer matched their registered hashes)."""
    versions = tmp_path / "store" / "models" / "crack" / "versions"
    shutil.copytree(model, versions / "v1")
    (versions / "v1" / "version.json").write_text("{}")
    before, folders = files_under(versions), sorted(versions.rglob("*"))
    assert main(train_args(synth_data, versions / version)) == 1
    assert said in capsys.readouterr().err
    assert files_under(versions) == before and sorted(versions.rglob("*")) == folders  # no folder made either


@pytest.mark.parametrize("out", [".", "Positive/run1", "Negative"])
def test_train_refuses_an_out_inside_its_data(tmp_path, synth_data, capsys, out):
    """`train --data data --out data/Positive/run1` wrote its plots among the crack photos: the next run trained on
    them as cracks."""
    data = Path(shutil.copytree(synth_data, tmp_path / "data"))
    before = files_under(data)
    assert main(train_args(data, data / out)) == 1
    assert f"is inside the labeled folder {data}, in a class folder or at its top" in capsys.readouterr().err
    assert files_under(data) == before


def test_train_takes_an_out_beside_the_class_folders(tmp_path, synth_data):
    """A folder beside the class folders is never read as photos: `--out data/runs/r1` (or `evaluate --cv` run
    from inside the data with its default `build/cv-K`) must not be refused with the rest."""
    from crack_model.training.output_folder import prepare_output_folder

    data = Path(shutil.copytree(synth_data, tmp_path / "data"))
    prepare_output_folder(data / "runs" / "r1", data, ("Negative", "Positive"))
    assert (data / "runs" / "r1").is_dir()


@pytest.mark.parametrize("registered", [False, True])
def test_evaluate_refuses_an_out_that_holds_a_model(model, capsys, registered):
    """`evaluate --out <the model folder>` wrote over training's metrics.json and confusion matrix (a registered
    version's then no longer matched their hashes)."""
    if registered:
        (model / "version.json").write_text("{}")
    before = files_under(model)
    assert main(["evaluate", "--model", str(model), "--split", "validation", "--out", str(model)]) == 1
    said = capsys.readouterr().err
    assert ("is a registered version, which is never changed" if registered else "holds a model, whose") in said
    assert files_under(model) == before


def test_export_of_a_model_cut_short_is_one_line_naming_it(model, capsys):
    """A half-copied model.keras gave a Python traceback (ValueError), where predict gives one line."""
    (model / "model.keras").write_bytes((model / "model.keras").read_bytes()[:5000])
    before = files_under(model)
    assert main(["export", "--model", str(model)]) == 1
    said = capsys.readouterr().err
    assert f"cannot load Keras model {model / 'model.keras'} (" in said and "is the file whole?" in said
    assert files_under(model) == before


def test_export_with_missing_split_photos_stops_before_writing_anything(model, capsys):
    """Missing training photos were dropped from calibration in silence, then export crashed after rewriting."""
    rows = list(csv.DictReader(io.StringIO((model / "split.csv").read_text())))
    gone = next(row for row in rows if row["split"] == "train")
    gone["uri"] = str(model / "moved-away.jpg")
    with (model / "split.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = {path.name: path.read_bytes() for path in model.iterdir() if path.is_file()}

    assert main(["export", "--model", str(model)]) == 1
    said = capsys.readouterr().err
    assert "1 of its photos cannot be read (e.g. " in said and "moved-away.jpg" in said
    assert {path.name: path.read_bytes() for path in model.iterdir() if path.is_file()} == before


def test_predict_refuses_an_out_that_is_a_photo_or_a_model_file(model, tmp_path, synth_data, capsys):
    """`--out photos/*.jpg` (the output's name forgotten) wrote the CSV over the first photo, exit 0."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((synth_data / "Positive").glob("*.jpg"))[:2]:
        shutil.copy(path, photos / path.name)
    first, second = sorted(photos.iterdir())
    kept = first.read_bytes()
    assert main(["predict", "--model", str(model), "--out", str(first), str(second)]) == 1
    assert first.read_bytes() == kept and "the output's name forgotten?" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), "--out", str(model / "model.json"), str(second)]) == 1


def test_predict_writes_every_row_of_a_folder_holding_odd_entries(model, tmp_path, synth_data):
    """A name that is not UTF-8 crashed the CSV (5 of 12 rows written); a broken link and a pipe got no row."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((synth_data / "Negative").glob("*.jpg"))[:2]:
        shutil.copy(path, photos / path.name)
    with open(os.fsencode(photos) + b"/fissure_b\xe9ton.jpg", "wb") as handle:
        handle.write((synth_data / "Positive" / sorted(p.name for p in (synth_data / "Positive").iterdir())[0])
                     .read_bytes())  # fmt: skip
    (photos / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(photos / "pipe.jpg")
    out = tmp_path / "out" / "predictions.csv"

    assert main(["predict", "--model", str(model), "--out", str(out), str(photos)]) == 0
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in csv.DictReader(io.StringIO(out.read_text("utf-8")))}
    assert len(rows) == 5 and rows["fissure_b\\xe9ton.jpg"]["status"] == "ok"
    assert rows["broken.jpg"]["status"] == rows["pipe.jpg"]["status"] == "error"
    assert not list(out.parent.glob(".*partial"))  # written beside, then renamed


def test_a_damaged_litert_file_is_one_line_naming_it(model):
    (model / "model_int8.tflite").write_bytes(b"")
    with pytest.raises(CrackModelError, match=r"cannot load LiteRT model .*model_int8\.tflite .*export the model"):
        load_scorer(str(model), runtime="litert-int8")


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"threshold": 2}, "threshold is 2, which is not a probability"),
        ({"patch_confirm_threshold": -0.1}, "patch_confirm_threshold is -0.1, which is not a probability"),
        ({"crack_class": "Crack"}, "crack_class 'Crack' is not one of class_names"),
        ({"tile_size": 0}, "tile_size is 0, which is not from 32 to 8192"),
        ({"image_size": 100000}, "image_size is 100000, which is not from 32 to 1024"),
        ({"photo_min_tiles": 0}, "photo_min_tiles is 0"),
    ],
)
def test_a_model_card_out_of_range_is_refused_naming_the_field(model, change, said):
    """A threshold of 2 labelled every crack no crack, exit 0; an image size of 100,000 took 23 GB."""
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, **change}))
    with pytest.raises(CrackModelError, match=f"is not a valid model card: .*{said}"):
        ModelCard.load(model)


def test_an_empty_weights_variable_is_unset_and_an_empty_choice_is_refused(monkeypatch):
    """CRACK_MODEL_WEIGHTS set but empty trained a random base (50 % accuracy) without a word."""
    monkeypatch.setenv("CRACK_MODEL_WEIGHTS", " ")
    assert default_weights() == "imagenet"
    with pytest.raises(CrackModelError, match="does not exist: pass 'imagenet'"):
        resolve_base_weights("")
    assert resolve_base_weights("none") is None


def test_a_batch_size_past_1024_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["predict", "--model", "m", "--batch-size", "100000", "x.jpg"])
    assert stopped.value.code == 2 and "--batch-size: must be from 1 to 1024" in capsys.readouterr().err


def test_a_card_training_writes_with_a_low_threshold_loads(model):
    """Training writes patch_confirm_threshold 0.0 when its threshold is under 0.2: such a card must load."""
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, "threshold": 0.103, "patch_confirm_threshold": 0.0}))
    assert ModelCard.load(model).patch_confirm_threshold == 0.0


def test_predict_writes_through_an_out_that_is_a_link_and_may_write_beside_the_model(model, tmp_path, synth_data):
    """A link (/dev/stdout is one) was replaced by a regular file; a new CSV beside the model was refused."""
    photo = sorted((synth_data / "Positive").glob("*.jpg"))[0]
    target = tmp_path / "kept" / "latest.csv"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    assert main(["predict", "--model", str(model), "--out", str(link), str(photo)]) == 0
    assert link.is_symlink() and target.read_text().startswith("path,status")
    assert main(["predict", "--model", str(model), "--out", str(model / "predictions.csv"), str(photo)]) == 0


def test_a_runtime_the_model_is_not_approved_for_scores_no_batch_and_warns_elsewhere(model, tmp_path, caplog, capsys):
    """`score --runtime litert-int8` wrote results of an export that failed its agreement check into the store."""
    import logging

    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, "approved_runtimes": ["keras"]}))
    (tmp_path / "store" / "incoming" / "b1").mkdir(parents=True)
    (tmp_path / "store" / "incoming" / "b1" / "a.jpg").write_bytes(b"x")
    batch = str(tmp_path / "store" / "incoming" / "b1")
    assert main(["score", "--batch", batch, "--model", str(model), "--runtime", "litert-fp32"]) == 1
    assert "runtime litert-fp32 is not approved for model" in capsys.readouterr().err
    assert not (tmp_path / "store" / "results").exists()
    with caplog.at_level(logging.WARNING, logger="crack_model.serving.scorer"):
        assert load_scorer(str(model), runtime="litert-fp32").runtime.name == "litert-fp32"
    assert "runtime litert-fp32 is not approved for model" in caplog.text


def test_evaluate_a_registry_uri_on_its_own_split(model, tmp_path, monkeypatch, capsys):
    """`evaluate --model models:/crack@champion --split test` looked for split.csv in a folder named models:."""
    from crack_model.registry.versions import Registry

    registry = Registry(tmp_path / "registry")
    version = registry.register(model)
    monkeypatch.setenv("CRACK_MODEL_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "cache"))
    assert main(["evaluate", "--model", f"models:/crack/{version}", "--split", "test"]) == 0
    said = capsys.readouterr().out
    test_rows = [
        row for row in csv.DictReader(io.StringIO((model / "split.csv").read_text())) if row["split"] == "test"
    ]
    assert f"model {version} (" in said and f"on {len(test_rows)} images" in said


def test_evaluate_on_folders_not_named_as_the_models_classes_says_so(model, tmp_path, synth_data, capsys):
    """It said "set the names with --classes", which evaluating a model ignores."""
    data = tmp_path / "data"
    for kind, name in (("Negative", "nocrack"), ("Positive", "crack")):
        shutil.copytree(synth_data / kind, data / name)
    assert main(["evaluate", "--model", str(model), "--data", str(data)]) == 1
    said = capsys.readouterr().err
    assert f"--data {data} has no folder Negative: model " in said and "(Negative, Positive); name them so" in said
    assert "--classes" not in said
