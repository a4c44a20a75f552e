"""Clean JPEGs decoded straight to NumPy for scoring; Pillow decodes everything else and decides every error.

Scoring a 227-px patch costs the model 2-3.4 ms of CPU on the 2-core machines here, and decoding
it with Pillow, then copying its tiles out of the Pillow image, about 0.3 ms more: on a fast CPU
that was a sixth of a night's CPU and kept the nightly path under 85 % of the model's own rate
(README "Speed"). simplejpeg wraps the same libjpeg-turbo with the same accurate DCT and smooth
chroma upsampling, and decodes into an array in about half the time; tiles are then slices of
it. It is used only where it cannot change a result:

* the header (read by Pillow first, as for every upload) says a JPEG in RGB or greyscale, scored at
  full size (no downscale, no padding: ``TileFit.changed`` is False); its EXIF orientation is applied
  as the same flips and rotations Pillow makes (most phone photos are stored turned, orientation 6);
* ``strict=True``: whatever libjpeg warns about fails here. A warning that part of the picture is
  lost (jpeg_damage.py) refuses the upload, as Pillow's path would; any other goes to Pillow, which
  decides whether it decodes and what its row says.

Anything else returns None and the caller decodes with Pillow. Training decodes with Pillow;
tests check that both give the same pixels on the real samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crack_model.core.imaging import ImageHeader
from crack_model.core.jpeg_damage import strict_decode

# Pillow modes of JPEGs libjpeg turns into the same RGB as Pillow (greyscale: the grey in every band).
FAST_MODES = ("RGB", "L")
# imaging.TRANSPOSE_FOR_ORIENTATION on (height, width, 3) arrays: views (scoring makes them contiguous once).
UPRIGHT: dict[int | None, Callable[[np.ndarray], np.ndarray]] = {
    None: lambda pixels: pixels,
    1: lambda pixels: pixels,
    2: lambda pixels: pixels[:, ::-1],
    3: lambda pixels: pixels[::-1, ::-1],
    4: lambda pixels: pixels[::-1],
    5: lambda pixels: pixels.transpose(1, 0, 2),
    6: lambda pixels: np.rot90(pixels, -1),
    7: lambda pixels: pixels[::-1, ::-1].transpose(1, 0, 2),
    8: lambda pixels: np.rot90(pixels, 1),
}


def decodes_fast(header: ImageHeader) -> bool:
    """Whether ``decode_clean_jpeg`` tries this file (a strict libjpeg decode: damage is then already checked)."""
    return header.format == "JPEG" and header.mode in FAST_MODES and header.orientation in UPRIGHT


def decode_clean_jpeg(data: bytes, header: ImageHeader) -> np.ndarray | None:
    """The image's upright RGB pixels (height, width, 3), or None when Pillow must decode it.

    Raises:
        ImageDecodeError: libjpeg lost part of the picture (jpeg_damage.py).
    """
    if not decodes_fast(header):
        return None
    pixels = strict_decode(data, colorspace="RGB")
    if pixels is None or pixels.shape != (header.stored_height, header.stored_width, 3):
        return None
    return UPRIGHT[header.orientation](pixels)


def decode_grey_jpeg(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """A JPEG's grey (luma) pixels (height, width) at ``size``, or None when Pillow must decode it.

    ``size`` is what Pillow's ``draft("L", ...)`` set up for the same file (full, 1/2, 1/4 or 1/8
    scale): libjpeg gives the same pixels either way. Validation's profile decodes with it, so a
    damaged picture is refused there as in scoring without a second decode.

    Raises:
        ImageDecodeError: libjpeg lost part of the picture (jpeg_damage.py).
    """
    width, height = size
    pixels = strict_decode(data, colorspace="GRAY", min_width=width, min_height=height)
    return pixels[..., 0] if pixels is not None and pixels.shape == (height, width, 1) else None
