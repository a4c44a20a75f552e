"""The export check: LiteRT files are compared with Keras before they are approved."""

from __future__ import annotations

import logging
import shutil

from crack_model.core.model_card import ModelCard
from crack_model.data.labeled import LabeledImage
from crack_model.training.export import compare_runtimes


def test_the_check_does_not_warn_that_the_runtime_it_checks_is_not_approved(
    trained_model, synth_data, tmp_path, caplog
):
    """Every training run checked its fresh exports through load_scorer, which warned, for each, that it "is not
    approved ... its labels may disagree with Keras's": before the check that approves it had even scored."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model.output_dir, model_dir)
    card = ModelCard.load(model_dir)
    card.approved_runtimes = ["keras"]  # what export_model writes before its check
    card.save(model_dir)
    photos = sorted((synth_data / "Positive").glob("*.jpg"))[:4]
    images = [LabeledImage(uri=str(path), label="crack") for path in photos]

    with caplog.at_level(logging.WARNING):
        checks = compare_runtimes(model_dir, images, ["litert-fp32", "litert-int8"])

    assert [check.runtime for check in checks] == ["litert-fp32", "litert-int8"]
    assert all(check.images == 4 for check in checks)
    assert not [record for record in caplog.records if "not approved" in record.getMessage()]
