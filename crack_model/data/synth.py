"""Synthetic concrete-like textures, with and without crack-like curves, for fast tests.

Not a substitute for real photos (the demo and accuracy checks use the real sample); a
seeded, fast generator of images whose labels are right by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from crack_model.core.config import DEFAULT_CLASS_NAMES, DEFAULT_CRACK_CLASS


def concrete_texture(rng: np.random.Generator, size: int) -> Image.Image:
    """Grey concrete: smooth blotches, fine grain and a few dark pores."""
    base = rng.uniform(120, 190)
    coarse = np.asarray(
        Image.fromarray(rng.normal(0, 1, (8, 8)).astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC)
    )
    grain = rng.normal(0, rng.uniform(4, 10), (size, size))
    grey = base + coarse * rng.uniform(6, 14) + grain
    tint = rng.uniform(-4, 4, 3)
    pixels = np.clip(grey[..., None] + tint, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):
        x, y, radius = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(0.5, 2.0)
        shade = int(base - rng.uniform(30, 60))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(shade, shade, shade))
    return image


def draw_crack(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A dark, jagged curve from one edge to another, sometimes with a branch."""
    size = image.width
    draw = ImageDraw.Draw(image)
    darkness = int(rng.uniform(25, 70))
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    point = np.array([size / 2, size / 2]) - direction * size * 0.75
    points = []
    steps = 40
    for _ in range(steps):
        point = point + direction * (size * 1.5 / steps) + rng.normal(0, size * 0.015, 2)
        points.append(tuple(point))
    width = int(rng.integers(2, 6))
    draw.line(points, fill=(darkness, darkness, darkness), width=width, joint="curve")
    if rng.random() < 0.5:
        start = points[len(points) // 2]
        branch = [start]
        turn = direction @ np.array([[0, 1], [-1, 0]]) * rng.choice([-1, 1]) + direction
        for _ in range(12):
            branch.append(tuple(np.array(branch[-1]) + turn * size * 0.03 + rng.normal(0, size * 0.01, 2)))
        draw.line(branch, fill=(darkness, darkness, darkness), width=max(1, width - 1))
    return image.filter(ImageFilter.GaussianBlur(0.6))


def synth_image(rng: np.random.Generator, size: int = 227, crack: bool = False) -> Image.Image:
    image = concrete_texture(rng, size)
    return draw_crack(image, rng) if crack else image.filter(ImageFilter.GaussianBlur(0.6))


def generate_dataset(
    output_dir: str | Path,
    count_per_class: int = 50,
    *,
    size: int = 227,
    seed: int = 0,
    class_names: Sequence[str] = DEFAULT_CLASS_NAMES,
    crack_class: str = DEFAULT_CRACK_CLASS,
) -> dict[str, int]:
    """Write ``<output_dir>/<class>/synth_00000.jpg ...``; returns counts per class."""
    rng = np.random.default_rng(seed)
    output_dir = Path(output_dir)
    counts = {}
    for class_name in class_names:
        folder = output_dir / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count_per_class):
            image = synth_image(rng, size, crack=class_name == crack_class)
            image.save(folder / f"synth_{index:05d}.jpg", quality=92)
        counts[class_name] = count_per_class
    return counts
