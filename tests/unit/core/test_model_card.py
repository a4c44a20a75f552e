"""``model.json`` read back: a hand-edited or damaged card is one clear error naming the field, not a crash later."""

from __future__ import annotations

import json

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.core.model_card import ModelCard


def test_a_saved_card_loads_as_it_was(tmp_path):
    card = ModelCard(version="v1", threshold=0.42, photo_threshold=0.7, photo_tiles=154, approved_runtimes=["keras"])
    card.save(tmp_path)
    assert ModelCard.load(tmp_path) == card


@pytest.mark.parametrize(
    ("document", "said"),
    [
        ([], "a JSON object is expected, got list"),
        ({"version": "v1", "threshold": "high"}, "threshold is 'high', which is not float"),
        ({"version": "v1", "image_size": "224"}, "image_size is '224', which is not int"),
        ({"version": "v1", "image_size": True}, "image_size is True, which is not int"),
        ({"version": "v1", "class_names": ["Negative", 1]}, "class_names is ['Negative', 1], which is not list[str]"),
        ({"version": "v1", "photo_threshold": [0.5]}, "photo_threshold is [0.5], which is not float | None"),
        ({"threshold": 0.5}, "missing 1 required positional argument: 'version'"),
    ],
)
def test_a_card_with_a_field_of_the_wrong_type_is_refused_naming_it(tmp_path, document, said):
    (tmp_path / "model.json").write_text(json.dumps(document))
    with pytest.raises(CrackModelError, match="is not a valid model card") as refused:
        ModelCard.load(tmp_path)
    assert said in str(refused.value) and str(tmp_path / "model.json") in str(refused.value)


def test_an_integer_threshold_and_a_missing_optional_field_are_fine(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"version": "v1", "threshold": 1, "photo_tiles": None}))
    assert ModelCard.load(tmp_path).threshold == 1
