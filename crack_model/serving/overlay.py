"""Heat-map overlays: the photo with each tile's crack probability painted over it."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from crack_model.core.imaging import open_image, read_header
from crack_model.core.tiling import Box

MAX_SIDE = 1024


def render_overlay(data: bytes, boxes: list[Box], probabilities: list[float], threshold: float) -> bytes:
    """PNG bytes: the image (at most 1024 px a side), red where tiles score high, outlines on crack tiles."""
    header = read_header(data)
    scale = min(1.0, MAX_SIDE / max(header.width, header.height))
    # Decoded straight to the overlay's size: a large photo is never held at full size in RGB.
    size = (max(1, round(header.width * scale)), max(1, round(header.height * scale)))
    image = open_image(data, size=size if scale < 1.0 else None)
    heat = np.zeros((image.height, image.width), dtype=np.float32)
    scaled = [tuple(round(v * scale) for v in box) for box in boxes]
    for (left, top, right, bottom), probability in zip(scaled, probabilities, strict=True):
        region = heat[top:bottom, left:right]
        np.maximum(region, probability, out=region)
    pixels = np.asarray(image, dtype=np.float32)
    red = np.zeros_like(pixels)
    red[..., 0] = 255
    alpha = (0.55 * heat)[..., None]
    blended = Image.fromarray((pixels * (1 - alpha) + red * alpha).astype(np.uint8))
    draw = ImageDraw.Draw(blended)
    for box, probability in zip(scaled, probabilities, strict=True):
        if probability >= threshold:
            draw.rectangle(box, outline=(255, 255, 0), width=2)
            draw.text((box[0] + 3, box[1] + 2), f"{probability:.2f}", fill=(255, 255, 0))
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
