"""One photo under two classes is left out of training, named; duplicates within one class are not."""

from __future__ import annotations

import logging

from crack_model.data.label_conflicts import leave_out_label_conflicts
from crack_model.data.labeled import LabeledImage


def photo(uri: str, label: str, sha: str, perceptual: str) -> LabeledImage:
    return LabeledImage(uri, label, sha * 64, perceptual * 16)


def test_a_resaved_copy_under_the_other_class_leaves_both_out_with_a_warning(caplog):
    """A re-saved crack photo filed under Negative (other bytes, the same perceptual hash) was trained as both."""
    images = [
        photo("Positive/00020.jpg", "Positive", "a", "1"),
        photo("Negative/conflict-00020.jpg", "Negative", "b", "1"),  # re-encoded: other bytes, same look
        photo("Negative/copy.jpg", "Negative", "c", "2"),
        photo("Negative/copy-again.jpg", "Negative", "c", "3"),  # the same bytes twice, one class: kept
        photo("Positive/other.jpg", "Positive", "d", "4"),
    ]
    with caplog.at_level(logging.WARNING, logger="crack_model.data.label_conflicts"):
        kept = leave_out_label_conflicts(images)
    assert [image.uri for image in kept] == ["Negative/copy.jpg", "Negative/copy-again.jpg", "Positive/other.jpg"]
    assert "Positive/00020.jpg (Positive); Negative/conflict-00020.jpg (Negative)" in caplog.text
    assert "relabel or remove one" in caplog.text


def test_a_class_left_empty_is_an_error_naming_it():
    import pytest

    from crack_model.core.errors import CrackModelError

    images = [photo("Positive/a.jpg", "Positive", "a", "1"), photo("Negative/a.jpg", "Negative", "a", "1"),
              photo("Negative/b.jpg", "Negative", "b", "2")]  # fmt: skip
    with pytest.raises(CrackModelError, match="class Positive has no image left once its photos filed under two"):
        leave_out_label_conflicts(images)
