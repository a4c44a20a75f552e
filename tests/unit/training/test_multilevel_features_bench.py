"""bench.multilevel_features' cross-validation: every image scored once per seed, errors counted by image."""

from __future__ import annotations

import numpy as np

from bench.multilevel_features import cross_validate
from crack_model.data.labeled import LabeledImage


def test_a_mislabeled_image_is_wrong_once_per_seed_and_counted_by_name():
    rng = np.random.default_rng(0)
    labels = np.array([index % 2 for index in range(60)])
    features = rng.normal(size=(60, 4)) + labels[:, None] * 10.0  # the classes far apart
    labels[7] = 0  # a crack's features labeled clean: every fold that holds it out calls it crack
    images = [LabeledImage(uri=f"/pool/{'Positive' if label else 'Negative'}/{index:03d}.jpg",
                           label="Positive" if label else "Negative", sha256=f"{index:064x}",
                           perceptual_hash=f"{index:016x}") for index, label in enumerate(labels)]  # fmt: skip

    result = cross_validate(features, labels, images, standardize=True, c=1.0, folds=3, seeds=range(2))

    assert result == {"missed_cracks": 0, "false_alarms": 2, "wrong_images": {"Negative/007.jpg": 2}}
