"""Pillow images of any mode to 8-bit grey or RGB, a band of rows at a time.

Nightly uploads come as palette, grayscale, RGBA, CMYK, 16-bit and 32-bit images. The conversions
here never make a float64 copy and never hold a second full-size copy of a large image: 16-bit and
32-bit images go to 8 bits, and big RGBA images to RGB, ``CHUNK_PIXELS`` pixels at a time.

Transparent pixels hold no picture, and what colour a file keeps under them is the saving program's choice:
most keep black. Dropping alpha showed that black, and the outline of a cut-out, a stitched panorama's border
or a photo straightened on a transparent canvas became a dark edge across concrete: a clean photo with a
transparent oval was labeled crack 12 times in 12. They are laid on the mean colour of the opaque pixels instead
(``transparency``), as a photo padded to a tile is (``tiling.pad_to_fit``), and half-transparent edge pixels blend
into it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Modes with an alpha band (RGBa: premultiplied, a TIFF's associated alpha); a palette image may have one too.
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
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
    laid = transparency(image)  # of the whole image: a band's own colour would differ from band to band
    width, height = image.size
    rows = max(1, CHUNK_PIXELS // max(width, 1) // factor) * factor
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = _to_rgb(image.crop((0, top, width, min(height, top + rows))), laid)
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
    """Convert any Pillow mode to 8-bit RGB (scales 16-bit and float; transparent pixels become the mean colour
    of the opaque ones, ``transparency``)."""
    if image.mode == "RGB":
        return image
    image = to_8bit(image)
    return _to_rgb(image, transparency(image))


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)


@dataclass(frozen=True)
class Transparency:
    """How an image's transparent pixels are laid down: on ``colour``, alpha ``opaque`` and above counting as opaque."""

    colour: tuple[int, int, int]  # the mean colour of the opaque pixels (weighted by alpha)
    # The highest alpha in the image. An image with no pixel at 255 is not a photo behind glass: a 16-bit file's
    # 12-bit alpha (4095 of 65535) or an editor's layer opacity; laid on its mean at face value, it lost contrast.
    opaque: int
    # Colours already multiplied by alpha (no colour above its pixel's alpha), as some programs write PNGs against
    # the standard: laid down as straight alpha, the half-transparent edge of a cut-out became a dark ring, read as
    # a crack (6 of 12 clean cut-outs); their colours are divided by alpha first, as Pillow does for an RGBa TIFF.
    premultiplied: bool = False


def transparency(image: Image.Image) -> Transparency | None:
    """How to lay down an 8-bit image's transparent pixels; None when its alpha is the same everywhere (no alpha
    band, every pixel opaque, or one opacity for the whole picture): the picture is then its colour bands."""
    if not has_alpha(image):
        return None
    if image.mode in ALPHA_MODES:
        low, high = image.getextrema()[-1]  # type: ignore[misc]
        if low == high:
            return None  # most RGBA exports: an alpha band saved for nothing
    width, height = image.size
    rows = max(1, CHUNK_PIXELS // max(width, 1))
    sums, weight, low, high = np.zeros(3, dtype=np.uint64), 0, 255, 0
    premultiplied, partly = image.mode == "RGBA", False  # only an RGBA file can hold premultiplied colours unsaid
    for top in range(0, height, rows):
        band = np.asarray(_rgba(image.crop((0, top, width, min(height, top + rows)))))
        alpha = band[..., 3]
        low, high = min(low, int(alpha.min())), max(high, int(alpha.max()))
        if premultiplied:
            premultiplied = bool((band[..., :3].max(axis=-1) <= alpha).all())
            partly = partly or bool(((alpha > 0) & (alpha < 255)).any())
        weight += int(alpha.sum(dtype=np.uint64))
        for channel in range(3):  # exact in integers: 255 * 255 fits 16 bits
            sums[channel] += np.multiply(band[..., channel], alpha, dtype=np.uint16).sum(dtype=np.uint64)
    if low == high:  # a palette image whose transparent index is not used, or used for every pixel
        return None
    red, green, blue = (round(int(total) / weight) for total in sums)  # weight > 0: some alpha is above low
    # A hard mask (no half-transparent pixel) with black beneath it is laid down the same either way.
    return Transparency((red, green, blue), high, premultiplied=premultiplied and partly and high == 255)


def _rgba(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGBA" else image.convert("RGBA")  # RGBa: premultiplied colours restored


def _to_rgb(image: Image.Image, laid: Transparency | None) -> Image.Image:
    """An 8-bit image in RGB, its transparent pixels laid as ``laid`` says (None: its alpha, if any, is dropped)."""
    if laid is None or not has_alpha(image):
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        return image.convert("RGB")
    canvas = Image.new("RGB", image.size, laid.colour)
    scale = [min(255, round(value * 255 / laid.opaque)) for value in range(256)]
    width, height = image.size
    rows = max(1, CHUNK_PIXELS // max(width, 1))
    for top in range(0, height, rows):  # a band at a time: one RGBA copy of a band, never of the whole image
        band = _rgba(image.crop((0, top, width, min(height, top + rows))))
        if laid.premultiplied:
            band = Image.merge("RGBa", band.split()).convert("RGBA")  # Pillow divides the colours by alpha
        canvas.paste(band, (0, top), band.getchannel("A").point(scale))
    return canvas


def bytes_per_pixel(mode: str) -> int:
    """What Pillow holds per pixel in memory (RGB takes 4 bytes, like RGBA)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode in SIXTEEN_BIT_MODES else 4
