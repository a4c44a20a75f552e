"""Decoding: every awkward kind of file becomes RGB pixels or a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from crack_model.core.errors import ImageDecodeError
from crack_model.core.imaging import decode_to_array, difference_hash, open_image
from tests import imagefiles


@pytest.mark.parametrize(
    "make",
    [
        imagefiles.jpeg,
        imagefiles.grayscale_png,
        imagefiles.rgba_png,
        imagefiles.palette_png,
        imagefiles.cmyk_jpeg,
        imagefiles.sixteen_bit_png,
    ],
)
def test_decodes_to_rgb(make):
    """Grayscale, RGBA, palette, CMYK and 16-bit images all decode to 8-bit RGB."""
    image = open_image(make())
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (48, 64, 3)


def test_sixteen_bit_keeps_its_range():
    """16-bit values are scaled, not clipped: the brightest pixel stays near white."""
    pixels = np.asarray(open_image(imagefiles.sixteen_bit_png()))
    assert pixels.max() >= 250 and pixels.min() <= 5


def test_exif_orientation_is_honoured():
    """A photo stored sideways with EXIF orientation 6 comes out upright (48 wide, 64 high)."""
    image = open_image(imagefiles.exif_rotated_jpeg(6))
    assert image.size == (48, 64)
    pixels = np.asarray(image, dtype=np.int16)
    # Rotated 90 degrees clockwise: the red ramp (left->right) now runs top->bottom.
    assert pixels[-1, :, 0].mean() - pixels[0, :, 0].mean() > 150


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (imagefiles.truncated_jpeg(), "corrupt or truncated"),
        (imagefiles.not_an_image(), "not an image"),
        (imagefiles.decompression_bomb_png(), "too large"),
    ],
)
def test_bad_bytes_raise_a_clear_error(data, reason):
    """Empty, truncated, non-image and bomb-sized inputs raise ImageDecodeError with a reason."""
    with pytest.raises(ImageDecodeError, match=reason):
        open_image(data)


def test_pixel_limit_is_configurable():
    """The decompression-bomb limit is a parameter."""
    with pytest.raises(ImageDecodeError, match="too large"):
        open_image(imagefiles.jpeg(64, 48), max_pixels=1000)


def test_decode_to_array_resizes():
    """The model input is size x size x 3 uint8."""
    assert decode_to_array(imagefiles.jpeg(100, 60), 32).shape == (32, 32, 3)


def test_difference_hash_ignores_reencoding_but_not_content():
    """A re-encoded copy shares the perceptual hash; a different image does not."""
    original = open_image(imagefiles.jpeg(227, 227))
    reencoded = open_image(imagefiles.encode(original, "JPEG", quality=70))
    flipped = original.transpose(0)
    assert difference_hash(original) == difference_hash(reencoded)
    assert difference_hash(original) != difference_hash(flipped)
