"""Validation measures a round picture's picture, not its black frame (frames.py), as scoring sees it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from crack_model.quality.profile import profile_bytes
from crack_model.quality.thresholds import ValidationThresholds
from tests import imagefiles
from tests.imagefiles import concrete, disc_mask, framed


def test_validation_measures_the_picture_not_its_frame():
    """A round picture filling 38 % of a 4:3 photo passes (its black frame is no underexposure: before, 62 % of
    its pixels counted as crushed black); a black photo with a small bright spot still fails as underexposed."""
    picture = disc_mask(1200, 900, 0.4)
    photo = framed(concrete(1200, 900), picture)
    limit = ValidationThresholds().max_dark_fraction
    row = profile_bytes("round.png", imagefiles.encode(Image.fromarray(photo), "PNG"))
    assert row["dark_fraction"] <= limit, row
    grey = np.asarray(Image.fromarray(photo).convert("L"))
    assert abs(row["brightness"] - grey[picture].mean()) < 3, "brightness is the picture's"
    spot = np.zeros((900, 1200, 3), dtype=np.uint8)
    spot[400:500, 550:650] = 200
    dark = profile_bytes("black.png", imagefiles.encode(Image.fromarray(spot), "PNG"))
    assert dark["dark_fraction"] > 0.9, dark
