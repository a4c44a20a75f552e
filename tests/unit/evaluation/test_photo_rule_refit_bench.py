"""bench.photo_rule_refit: a trained model's photo rule chosen again from its own split.csv, on a copy."""

from __future__ import annotations

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
