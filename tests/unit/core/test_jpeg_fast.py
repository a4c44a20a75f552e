"""The fast JPEG path gives Pillow's tiles exactly, and leaves every doubtful upload to Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crack_model.core.errors import ImageDecodeError
from crack_model.core.imaging import DEFAULT_MAX_PIXELS, read_header
from crack_model.core.jpeg_fast import decode_clean_jpeg
from crack_model.core.tiling import TileConfig
from crack_model.serving import inference
from tests import imagefiles

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"
TILES = TileConfig(tile_size=227)


def tiles_of(data: bytes, monkeypatch: pytest.MonkeyPatch, *, fast: bool) -> inference._Prepared:
    """What scoring prepares for one upload, with the fast path allowed or not."""
    if not fast:
        monkeypatch.setattr(inference, "decodes_fast", lambda _: False)
    fetched = inference.fetch_object("upload.jpg", lambda _: data, 224, TILES, DEFAULT_MAX_PIXELS)
    prepared = inference.prepare(fetched, 224, TILES, DEFAULT_MAX_PIXELS)
    monkeypatch.undo()
    return prepared


def assert_same_as_pillow(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, pillow = tiles_of(data, monkeypatch, fast=True), tiles_of(data, monkeypatch, fast=False)
    assert fast.score.status == pillow.score.status == "ok"
    assert fast.score.boxes == pillow.score.boxes
    assert fast.tiles is not None and pillow.tiles is not None
    np.testing.assert_array_equal(fast.tiles, pillow.tiles)


def photo(width: int, height: int, *, mode: str = "RGB", orientation: int | None = None) -> bytes:
    """A JPEG with texture and a dark diagonal line, so a wrong flip or a shifted crop shows."""
    rng = np.random.default_rng(width * height)
    pixels = rng.integers(90, 170, (height, width, 3), dtype=np.uint8)
    for x in range(min(width, height)):
        pixels[x, x] = 20
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_every_exif_orientation_gives_pillows_tiles(orientation, monkeypatch):
    """Phone photos are mostly stored turned (orientation 6); each of the 8 turns is Pillow's, on a multi-tile photo."""
    data = photo(700, 500, orientation=orientation)
    assert decode_clean_jpeg(data, read_header(data)) is not None  # the fast path is the one taken
    assert_same_as_pillow(data, monkeypatch)
    assert len(tiles_of(data, monkeypatch, fast=True).score.boxes) > 1


def test_greyscale_and_near_tile_size_jpegs_give_pillows_tiles(monkeypatch):
    for data in (photo(227, 227, mode="L"), photo(230, 228), photo(227, 170), photo(100, 60)):
        assert decode_clean_jpeg(data, read_header(data)) is not None
        assert_same_as_pillow(data, monkeypatch)


@pytest.mark.parametrize("orientation", [3, 5, 6, 8])
@pytest.mark.parametrize("size", [(227, 170), (100, 60), (230, 228), (60, 900)])
def test_turned_small_and_thin_jpegs_give_pillows_tiles(orientation, size, monkeypatch):
    """Turned one-tile photos are resized from a non-contiguous view; a thin one is cut into 60-px tiles."""
    data = photo(*size, orientation=orientation)
    fetched = inference.fetch_object("upload.jpg", lambda _: data, 224, TILES, DEFAULT_MAX_PIXELS)
    assert fetched.opened is not None and fetched.fit is not None and not fetched.fit.changed  # the fast path is taken
    assert decode_clean_jpeg(data, fetched.opened.header) is not None
    assert_same_as_pillow(data, monkeypatch)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (imagefiles.cmyk_jpeg, "CMYK: Pillow inverts Adobe CMYK, libjpeg does not convert it"),
        (imagefiles.grayscale_png, "not a JPEG"),
    ],
)
def test_doubtful_uploads_are_left_to_pillow(make, why, monkeypatch):
    data = make()
    assert decode_clean_jpeg(data, read_header(data)) is None, why
    fast, pillow = tiles_of(data, monkeypatch, fast=True), tiles_of(data, monkeypatch, fast=False)
    assert (fast.score.status, fast.score.error) == (pillow.score.status, pillow.score.error)


def test_a_jpeg_with_garbage_inside_is_left_to_pillow(monkeypatch):
    """Corrupt entropy data that libjpeg reports only as "extraneous bytes" (as it does stray bytes cameras write):
    strict decoding refuses it, Pillow's row stands (jpeg_damage.py refuses what libjpeg reports lost)."""
    data = bytearray(photo(300, 300))
    middle = len(data) // 2
    data[middle : middle + 64] = np.random.default_rng(3).integers(0, 255, 64, dtype=np.uint8).tobytes()
    assert decode_clean_jpeg(bytes(data), read_header(bytes(data))) is None
    fast, pillow = tiles_of(bytes(data), monkeypatch, fast=True), tiles_of(bytes(data), monkeypatch, fast=False)
    assert (fast.score.status, fast.score.error) == (pillow.score.status, pillow.score.error)
    if pillow.tiles is not None:
        np.testing.assert_array_equal(fast.tiles, pillow.tiles)


def test_a_jpeg_cut_short_gets_the_same_error_row_on_both_paths(monkeypatch):
    data = photo(300, 300)
    data = data[: len(data) // 2]
    with pytest.raises(ImageDecodeError, match="corrupt or truncated image: libjpeg reports"):
        decode_clean_jpeg(data, read_header(data))
    fast, pillow = tiles_of(data, monkeypatch, fast=True), tiles_of(data, monkeypatch, fast=False)
    assert fast.score.status == pillow.score.status == "error"
    assert fast.score.error == pillow.score.error


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (the real samples) is not beside the project")
def test_real_photos_give_pillows_tiles(monkeypatch):
    """Every METU patch and site-b photo (most stored turned, EXIF orientation 3, 6 or 8): Pillow's tiles."""
    files = sorted(SHARED.glob("*/*/*.jpg"))
    assert len(files) >= 3000
    turned = 0
    for path in files:
        data = path.read_bytes()
        header = read_header(data)
        assert decode_clean_jpeg(data, header) is not None, path
        turned += header.orientation not in (None, 1)
        assert_same_as_pillow(data, monkeypatch)
    assert turned > 500
