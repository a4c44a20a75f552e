"""Heat-map overlays: the photo with each tile's crack probability painted over it.

Drawn in 8 bits by Pillow's C code: the heat map is a uint8 mask (the highest probability of the
tiles covering each pixel, times the red's opacity), composited over the photo, at most
``MAX_SIDE`` pixels a side (a large JPEG is decoded straight at a reduced scale), and stored as a
PNG with zlib's fastest level: the old float32 blend and default compression took most of the
14 ms a crack image cost.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from crack_model.core.imaging import open_image, read_header
from crack_model.core.tiling import Box

MAX_SIDE = 1024
OPACITY = 0.55  # of the red at probability 1: the photo stays readable under the heat
HEAT_COLOUR = (255, 0, 0)
OUTLINE_COLOUR = (255, 255, 0)
PNG_COMPRESS_LEVEL = 1  # measured: ~3x faster to encode than level 6, ~10% larger files


def heat_mask(size: tuple[int, int], boxes: list[Box], probabilities: list[float]) -> Image.Image:
    """An "L" image: for each pixel, 255 * OPACITY * the highest probability of the tiles covering it."""
    heat = np.zeros((size[1], size[0]), dtype=np.uint8)
    for (left, top, right, bottom), probability in zip(boxes, probabilities, strict=True):
        region = heat[top:bottom, left:right]
        np.maximum(region, round(255 * OPACITY * min(max(probability, 0.0), 1.0)), out=region)
    return Image.fromarray(heat, "L")


def render_overlay(data: bytes, boxes: list[Box], probabilities: list[float], threshold: float) -> bytes:
    """PNG bytes: the image (at most 1024 px a side), red where tiles score high, outlines on crack tiles."""
    header = read_header(data)
    scale = min(1.0, MAX_SIDE / max(header.width, header.height))
    # Decoded straight to the overlay's size: a large photo is never held at full size in RGB.
    size = (max(1, round(header.width * scale)), max(1, round(header.height * scale)))
    image = open_image(data, size=size if scale < 1.0 else None)
    scaled = [(round(a * scale), round(b * scale), round(c * scale), round(d * scale)) for a, b, c, d in boxes]
    mask = heat_mask(image.size, scaled, probabilities)
    blended = Image.composite(Image.new("RGB", image.size, HEAT_COLOUR), image, mask)
    draw = ImageDraw.Draw(blended)
    for box, probability in zip(scaled, probabilities, strict=True):
        if probability >= threshold:
            draw.rectangle(box, outline=OUTLINE_COLOUR, width=2)
            draw.text((box[0] + 3, box[1] + 2), f"{probability:.2f}", fill=OUTLINE_COLOUR)
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
