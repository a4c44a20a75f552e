"""Colour (and grey+alpha) images of 16 bits per sample whose data uses 12 or 14 of them (a camera's depth in a
16-bit PNG or TIFF).

Pillow decodes a 16-bit colour image to 8 bits per sample by keeping each sample's high byte, so 12-bit data
(0..4095) comes out in 0..15, almost black: 10 of 30 crack photos were scored "no crack", status ok, and a batch
holding one failed validation as "too dark". Single-band 16-bit images keep all 16 bits in Pillow and are
snapped in ``pixel_modes.to_8bit``; a colour one is read a second time here with the other byte order, which
gives the low bytes, and its samples are shifted as there: by 4 for 12-bit data, by 6 for 14-bit. A full-range
16-bit image keeps Pillow's high bytes (one decode).
"""

from __future__ import annotations

import io
import sys
from typing import Any

import numpy as np
from PIL import Image

# Pillow's raw modes of 16-bit colour samples, and the same samples read with the other byte order. libtiff (a
# compressed TIFF) hands them over in this machine's order (";16N").
_NATIVE_OTHER = "B" if sys.byteorder == "little" else "L"
OTHER_BYTE_ORDER = {
    **{f"{mode};16{order}": f"{mode};16{'L' if order == 'B' else 'B'}" for mode in ("RGB", "RGBA") for order in "BL"},
    **{f"{mode};16N": f"{mode};16{_NATIVE_OTHER}" for mode in ("RGB", "RGBA")},
}
# A 16-bit grey+alpha PNG opens as RGBA of the grey's high byte ("LA;16B"; Pillow has no "LA;16L"). Read as plain
# RGBA, each pixel's four bytes land unchanged in the four bands: grey high, grey low, alpha high, alpha low.
GREY_ALPHA = "LA;16B"
OTHER_BYTE_ORDER[GREY_ALPHA] = "RGBA"
DEEP_FORMATS = ("PNG", "TIFF")
# What the second decode and the merge hold beside Pillow's image, per pixel and band (decoder_costs.py): the
# low bytes' image and array, a copy of the high bytes, and a shifted temporary.
EXTRA_BYTES_PER_SAMPLE = 4


def sixteen_bit_colour(image: Image.Image) -> bool:
    """Is this opened, not yet loaded, image one of 16-bit colour samples?"""
    tiles = getattr(image, "tile", None) or []
    return (
        image.format in DEEP_FORMATS and bool(tiles) and all(_raw_mode(tile.args) in OTHER_BYTE_ORDER for tile in tiles)
    )


def at_its_depth(image: Image.Image, data: bytes) -> Image.Image:
    """The loaded 16-bit colour ``image`` (Pillow's high bytes) at the depth its colour samples use."""
    top = max(int(band[1]) for band in image.getextrema()[:3])  # type: ignore[index]
    if top > 63:  # more than 14 bits used: the high bytes are the image (no copy)
        return image
    shift = 4 if top <= 15 else 6
    again = Image.open(io.BytesIO(data), formats=[image.format or ""])
    grey_alpha = _raw_mode(again.tile[0].args) == GREY_ALPHA
    again.tile = [tile._replace(args=_with_raw_mode(tile.args)) for tile in again.tile]
    low = np.asarray(again)[..., 1:2] if grey_alpha else np.asarray(again)[..., :3]  # grey's low byte: band 2
    del again
    deep = np.array(image)
    np.left_shift(deep[..., :3], 8 - shift, out=deep[..., :3])
    deep[..., :3] |= np.right_shift(low, shift)
    return Image.fromarray(deep, mode=image.mode)


def _raw_mode(args: Any) -> str | None:
    """A tile's raw mode: its arguments' first item (TIFF, libtiff) or the arguments themselves (PNG)."""
    first = args[0] if isinstance(args, tuple) and args else args
    return first if isinstance(first, str) else None


def _with_raw_mode(args: Any) -> Any:
    if isinstance(args, tuple):
        return (OTHER_BYTE_ORDER[args[0]], *args[1:])
    return OTHER_BYTE_ORDER[args]
