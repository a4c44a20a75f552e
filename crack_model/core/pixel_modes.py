"""Pillow images of any mode to 8-bit grey or RGB, a band of rows at a time.

Nightly uploads come as palette, grayscale, RGBA, CMYK, 16-bit and 32-bit images. The conversions
here never make a float64 copy and never hold a second full-size copy of a large image: 16-bit and
32-bit images go to 8 bits, and big RGBA images to RGB, ``CHUNK_PIXELS`` pixels at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# 32-bit and 16-bit modes are brought to 8 bits this many pixels at a time: the temporaries stay
# a few megabytes whatever the image size.
CHUNK_PIXELS = 1 << 22


def reduce_factor(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The whole factor an image of ``size`` can be box-reduced by and stay at least ``target``."""
    return max(1, min(size[0] // max(target[0], 1), size[1] // max(target[1], 1)))


def rgb_reduced(image: Image.Image, factor: int) -> Image.Image:
    """``to_rgb(image).reduce(factor)`` a band of rows at a time: no full-size RGB copy of a big RGBA image."""
    if factor == 1:
        return to_rgb(image)
    width, height = image.size
    rows = max(1, CHUNK_PIXELS // max(width, 1) // factor) * factor
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = to_rgb(image.crop((0, top, width, min(height, top + rows))))
        reduced.paste(band.reduce(factor), (0, top // factor))
    return reduced


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images to 8-bit grey ("L"); other modes unchanged.

    16-bit values are shifted right by 8, or by 4 (6) when no value exceeds 12 (14) bits: a camera's 12-bit data
    in a 16-bit file (0..4095) shifted by 8 came out almost black, and 11 of 20 crack photos were missed. The
    depth is snapped to a camera's 12, 14 or 16 bits, so a dark frame stays dark. 32-bit ones are scaled from
    0..65535 (or 0..255 when no value exceeds 255, or 0..1 for a float image whose values do not exceed 1).
    A band of rows at a time, in uint16 or float32: never a float64 copy.
    """
    if image.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
        return image
    width, height = image.size
    sixteen = image.mode in SIXTEEN_BIT_MODES
    rows = max(1, CHUNK_PIXELS // max(width, 1))

    def bands() -> Iterator[tuple[int, np.ndarray]]:
        for top in range(0, height, rows):
            yield top, np.asarray(image.crop((0, top, width, min(height, top + rows))))

    scale, shift = 1.0, 8
    if sixteen:
        bits = int(image.getextrema()[1]).bit_length()  # type: ignore[arg-type]
        shift = 4 if bits <= 12 else 6 if bits <= 14 else 8
    else:
        highest = float(image.getextrema()[1])  # type: ignore[arg-type]
        if not math.isfinite(highest):  # NaN ("no data") or inf hides the range: the largest finite value
            highest = max((float(band[np.isfinite(band)].max(initial=0)) for _, band in bands()), default=0.0)
        # Float images hold 0..1 by convention (0..0 in 8 bits: 30 of 30 crack photos missed), else 0..255.
        unit = image.mode == "F" and highest <= 1.0
        scale = 255.0 / (65535.0 if highest > 255 else 1.0 if unit else 255.0)
    grey = np.empty((height, width), dtype=np.uint8)
    for top, band in bands():
        if sixteen:
            grey[top : top + len(band)] = np.right_shift(band, shift).astype(np.uint8)
        else:
            # NaN (a float TIFF's "no data") becomes black, not whatever an undefined cast gives.
            values = np.nan_to_num(band.astype(np.float32) * scale, nan=0.0, posinf=255.0, neginf=0.0)
            grey[top : top + len(band)] = np.clip(values, 0, 255).astype(np.uint8)
    return Image.fromarray(grey)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (drops alpha, scales 16-bit and float)."""
    if image.mode == "RGB":
        return image
    image = to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def bytes_per_pixel(mode: str) -> int:
    """What Pillow holds per pixel in memory (RGB takes 4 bytes, like RGBA)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode in SIXTEEN_BIT_MODES else 4
