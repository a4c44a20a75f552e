"""bench.photo_rule_refit: a trained model's photo rule chosen again from its own split.csv, on a copy."""

from __future__ import annotations

import pytest

from crack_model.core.model_card import ModelCard


def test_refitting_a_model_without_photos_chooses_the_rule_training_chose(trained_model, tmp_path):
    from bench.photo_rule_refit import main

    out = tmp_path / "copy"
    assert main(["--model", str(trained_model.output_dir), "--out", str(out), "--mosaics-only"]) == 0
    trained, copied = trained_model.card, ModelCard.load(out)
    assert (copied.photo_threshold, copied.photo_min_tiles, copied.photo_tiles, copied.photo_tail_scale) == (
        trained.photo_threshold, trained.photo_min_tiles, trained.photo_tiles, trained.photo_tail_scale)  # fmt: skip
    assert copied.photo_calibration is not None and copied.photo_calibration["labeled_photos"] == 0
    assert ModelCard.load(trained_model.output_dir) == trained  # the trained model itself is left as it was


def test_a_folder_without_split_csv_is_named(tmp_path, capsys):
    from bench.photo_rule_refit import main

    with pytest.raises(SystemExit):
        main(["--model", str(tmp_path), "--out", str(tmp_path / "copy")])
    assert f"{tmp_path} has no split.csv" in capsys.readouterr().err


def test_an_empty_split_reads_as_no_images(tmp_path):
    from bench.photo_rule_refit import split_images

    manifest = tmp_path / "split.csv"
    manifest.write_text("uri,label,sha256,split,slice\nmissing.jpg,Positive,abc,train,(none)\n", encoding="utf-8")
    assert split_images(manifest, "validation") == []
