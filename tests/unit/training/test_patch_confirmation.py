"""Choosing the patch confirmation on the validation split, and the labels it gives (training/patch_confirmation.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crack_model.core.config import DataConfig
from crack_model.data.labeled import LabeledImage, fingerprint
from crack_model.training.patch_confirmation import (
    UNSEEN_SURFACE_MARGIN,
    band_flip_means,
    choose_patch_confirmation,
    confirmed_labels,
)
from tests import imagefiles

CONFIG = DataConfig(image_size=64)
NAN = float("nan")


class CornerClassifier:
    """Crack probability = the red of the top-left 4x4 corner: a flip reads another corner."""

    def predict_on_batch(self, pixels: np.ndarray) -> np.ndarray:
        crack = pixels[:, :4, :4, 0].mean(axis=(1, 2)) / 255
        return np.stack([1 - crack, crack], axis=1)


def patch(tmp_path, name: str, corners: tuple[int, int, int, int], label: str) -> LabeledImage:
    """A 64-px PNG whose corners (top-left, top-right, bottom-left, bottom-right) are that red."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    for red, (y, x) in zip(corners, ((0, 0), (0, 56), (56, 0), (56, 56)), strict=True):
        pixels[y : y + 8, x : x + 8, 0] = red
    path = tmp_path / name
    path.write_bytes(imagefiles.encode(Image.fromarray(pixels), "PNG"))
    return fingerprint(LabeledImage(str(path), label, ""))


def test_only_patches_in_the_band_get_the_mean_over_their_flips(tmp_path):
    images = [
        patch(tmp_path, "stain.png", (204, 0, 0, 0), "Negative"),  # 0.80 as cut, 0.20 over its flips
        patch(tmp_path, "crack.png", (204, 204, 204, 204), "Positive"),
        patch(tmp_path, "sure.png", (250, 0, 0, 0), "Positive"),  # 0.98: above the band
        patch(tmp_path, "photo.png", (204, 0, 0, 0), "Negative"),  # told it is a photo: its tiles decide
        patch(tmp_path, "clean.png", (0, 0, 0, 0), "Negative"),
    ]
    crack_probabilities = np.array([0.8, 0.8, 0.98, 0.8, 0.0])
    means = band_flip_means(CornerClassifier(), images, crack_probabilities, 0.5, CONFIG,
                            patches=[True, True, True, False, True])  # fmt: skip
    np.testing.assert_allclose(means[:2], [0.2, 0.8], atol=0.01)
    assert np.isnan(means[2:]).all()


def test_the_threshold_keeps_every_validation_crack_in_the_band_with_a_margin_and_never_rises():
    chosen = choose_patch_confirmation([True, True, False, True], np.array([0.45, NAN, 0.3, 0.8]), 0.5)
    assert chosen["threshold"] == pytest.approx(0.45 - UNSEEN_SURFACE_MARGIN) and chosen["lowest_crack_mean"] == 0.45
    assert chosen["validation_cracks_in_band"] == 2 and chosen["validation_images_in_band"] == 3
    assert choose_patch_confirmation([True, False], np.array([0.9, 0.2]), 0.5)["threshold"] == pytest.approx(
        0.5 - UNSEEN_SURFACE_MARGIN
    )
    none_in_band = choose_patch_confirmation([True, False], np.array([NAN, 0.2]), 0.5)
    assert none_in_band["threshold"] == pytest.approx(0.5 - UNSEEN_SURFACE_MARGIN)
    assert none_in_band["lowest_crack_mean"] is None
    assert choose_patch_confirmation([True], np.array([0.05]), 0.5)["threshold"] == 0.0  # never below 0


@pytest.mark.parametrize(
    ("confirm_threshold", "expected"),
    [(0.5, ["Negative", "Positive", "Positive", "Negative"]), (None, ["Positive", "Positive", "Positive", "Negative"])],
)
def test_an_unconfirmed_crack_gets_the_other_label(confirm_threshold, expected):
    probabilities = np.array([[0.3, 0.7], [0.3, 0.7], [0.05, 0.95], [0.6, 0.4]])
    means = np.array([0.3, 0.6, NAN, NAN])
    labels = confirmed_labels(probabilities, means, 0.5, confirm_threshold, ("Negative", "Positive"), "Positive")
    assert labels == expected
