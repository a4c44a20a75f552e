"""A HEIC or WebP whose tail an interrupted copy left as zeros decodes without a word: refused everywhere."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crack_model.core.errors import ImageDecodeError
from crack_model.core.imaging import open_image
from crack_model.core.tiling import TileConfig
from crack_model.core.zero_tail import SCAN_CHUNK, trailing_zeros, zero_tail_refusal
from crack_model.quality.profile import ProfileConfig, profile_bytes
from tests import imagefiles
from tests.unit.core.test_jpeg_damage import scored

CUT_SHORT = "are zeros, as a copy interrupted into a file of the right size leaves them; re-upload"


def textured(width: int = 640, height: int = 480) -> Image.Image:
    rng = np.random.default_rng(width * height)
    return Image.fromarray(rng.integers(60, 200, (height, width, 3), dtype=np.uint8))


def zero_tailed(data: bytes, fraction: float = 0.3) -> bytes:
    """``data`` of the same size, its last ``fraction`` zeros (a copy into a preallocated file, interrupted)."""
    kept = int(len(data) * (1 - fraction))
    return data[:kept] + bytes(len(data) - kept)


def photos() -> dict[str, bytes]:
    return {
        "heic": imagefiles.heic(textured(), quality=80),
        "webp": imagefiles.encode(textured(), "WEBP", quality=85),
        "webp-lossless": imagefiles.encode(textured(), "WEBP", lossless=True),
    }


@pytest.mark.parametrize("name", list(photos()))
def test_a_photo_with_a_zeroed_tail_is_refused_by_validation_and_scoring(name, monkeypatch):
    """Whole, it is scored; with its last 30 % zeroed, validation and scoring say it was cut short."""
    whole = photos()[name]
    damaged = zero_tailed(whole)
    open_image(whole)
    with pytest.raises(ImageDecodeError, match=CUT_SHORT):
        open_image(damaged)
    row = profile_bytes(f"upload.{name}", damaged, ProfileConfig())
    assert not row["decodable"] and CUT_SHORT in row["decode_error"], row["decode_error"]
    for tiles in (TileConfig(), TileConfig(max_tiles=1)):
        score = scored(damaged, monkeypatch, fast=False, tiles=tiles)
        assert score.status == "error" and CUT_SHORT in score.error, score
    assert scored(whole, monkeypatch, fast=False, tiles=TileConfig()).status == "ok"


def what_intact_files_end_with() -> dict[str, bytes]:
    """The intact HEIC and WebP files that end with the most zeros we found (measured in zero_tail.py)."""
    exif = Image.Exif()
    exif[0x0112] = 1
    flat = Image.new("RGB", (2000, 1500), (128, 128, 128))
    return {
        "flat lossy webp": imagefiles.encode(flat, "WEBP", quality=80),
        "flat black lossy webp": imagefiles.encode(Image.new("RGB", (3000, 2000)), "WEBP", quality=100),
        "flat lossless webp": imagefiles.encode(flat, "WEBP", lossless=True),
        "webp with exif": imagefiles.encode(textured(), "WEBP", quality=80, exif=exif.tobytes()),
        "animated webp": imagefiles.encode(
            textured(), "WEBP", save_all=True, append_images=[Image.new("RGB", (640, 480))]
        ),
        "flat heic": imagefiles.heic(flat, quality=80),
        "heic with exif": imagefiles.heic(textured(), quality=80, exif=exif.tobytes()),
        "grey heic": imagefiles.heic(Image.new("L", (227, 227)), quality=50),
    }


@pytest.mark.parametrize("name", list(what_intact_files_end_with()))
def test_the_zeros_intact_files_end_with_pass(name):
    """A flat lossy WebP ends with 5 % of its file in zeros; HEVC never holds three zero bytes in a row."""
    data = what_intact_files_end_with()[name]
    assert zero_tail_refusal(data) is None
    open_image(data)


def test_only_heic_and_webp_are_judged_by_their_tail():
    """JPEG, PNG and TIFF decoders notice a zeroed tail themselves (their own words stay the reason)."""
    assert zero_tail_refusal(zero_tailed(imagefiles.jpeg(640, 480))) is None
    assert zero_tail_refusal(bytes(4096)) is None
    assert zero_tail_refusal(zero_tailed(photos()["webp"], fraction=0.05)) is None  # too short to tell from flat


@pytest.mark.parametrize("tail", [0, 5, SCAN_CHUNK - 1, SCAN_CHUNK, 3 * SCAN_CHUNK + 7])
def test_the_tail_is_counted_exactly_across_chunks(tail):
    """Zeros ending inside a chunk, at its edge or chunks away, and a file of nothing but zeros."""
    for head in (b"x", b"x" * (2 * SCAN_CHUNK + 3)):
        assert trailing_zeros(head + bytes(tail)) == tail
    assert trailing_zeros(bytes(tail)) == tail


def test_measuring_the_tail_does_not_copy_the_photo():
    """rstrip made a copy of every HEIC and WebP read (40 MB here) to measure a few bytes of its end."""
    import tracemalloc

    data = photos()["webp"] + b"\x01" * (40 * 2**20) + bytes(5)  # a few zeros at the end, as many photos have
    tracemalloc.start()
    try:
        assert zero_tail_refusal(data) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, peak
