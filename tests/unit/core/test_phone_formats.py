"""HEIC (what iPhones save by default) and AVIF decode like any accepted photo: upright, 8-bit RGB, bounded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pi_heif.as_plugin import HeifImageFile
from PIL import Image

from crack_model.core.errors import ImageDecodeError
from crack_model.core.imaging import open_image, read_header
from tests import imagefiles

PROJECT = Path(__file__).resolve().parents[3]
ROTATIONS = {  # EXIF orientation: how the picture is stored so that turning it by the tag shows it upright
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
}


def avif(image: Image.Image, orientation: int | None = None) -> bytes:
    """Pillow writes an EXIF orientation as irot/imir boxes, as a camera would."""
    options: dict[str, object] = {"quality": 90}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    return imagefiles.encode(image, "AVIF", **options)


def heic(image: Image.Image, orientation: int | None = None) -> bytes:
    return imagefiles.heic(image, orientation, quality=95)


ENCODERS = {"HEIF": heic, "AVIF": avif}


def quadrants(width: int = 96, height: int = 64) -> Image.Image:
    """Red top left, blue bottom right, grey elsewhere: a turn or a flip moves the colours."""
    pixels = np.full((height, width, 3), 128, np.uint8)
    pixels[: height // 2, : width // 2] = (230, 20, 20)
    pixels[height // 2 :, width // 2 :] = (20, 20, 230)
    return Image.fromarray(pixels)


def mean_difference(image: Image.Image, expected: Image.Image) -> float:
    return float(np.abs(np.asarray(image, np.int16) - np.asarray(expected.convert("RGB"), np.int16)).mean())


@pytest.mark.parametrize("fmt", ENCODERS)
def test_a_phone_photo_decodes_to_its_pixels(fmt):
    picture = imagefiles.gradient_rgb(120, 90)
    data = ENCODERS[fmt](picture)
    header = read_header(data)
    assert (header.format, header.width, header.height) == (fmt, 120, 90)
    image = open_image(data)
    assert image.mode == "RGB" and image.size == (120, 90)
    assert mean_difference(image, picture) < 4


@pytest.mark.parametrize("fmt", ENCODERS)
@pytest.mark.parametrize("orientation", ROTATIONS)
def test_a_turned_phone_photo_is_decoded_upright_and_turned_once(fmt, orientation):
    """HEIC is turned by libheif (and its EXIF tag reset), AVIF by its EXIF tag: either way, once."""
    upright = quadrants()
    data = ENCODERS[fmt](upright.transpose(ROTATIONS[orientation]), orientation)
    header = read_header(data)
    assert (header.width, header.height) == upright.size
    assert mean_difference(open_image(data), upright) < 6
    assert mean_difference(open_image(data, size=(48, 32)), upright.resize((48, 32))) < 12


@pytest.mark.parametrize(
    "picture",
    [
        imagefiles.gradient_rgb(64, 48).convert("L"),
        imagefiles.gradient_rgb(64, 48).convert("RGBA"),
        Image.fromarray(np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)),
    ],
    ids=["grey", "alpha", "sixteen-bit-grey"],
)
def test_grey_alpha_and_deep_heics_decode_to_8bit_rgb(picture):
    image = open_image(heic(picture))
    assert image.mode == "RGB" and image.size == (64, 48)
    expected = picture if picture.mode != "I;16" else Image.fromarray((np.asarray(picture) >> 8).astype(np.uint8))
    assert mean_difference(image, expected) < 4


def test_a_heic_cut_short_is_a_damaged_photo_with_a_reason():
    data = heic(imagefiles.gradient_rgb(200, 150))
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: its header cannot be read"):
        open_image(data[:200])
    with pytest.raises(ImageDecodeError, match=r"^corrupt or truncated image: .+\S$"):
        open_image(data[: len(data) // 2])


def test_a_heic_over_the_pixel_limit_is_refused_before_it_is_decoded(monkeypatch):
    data = heic(Image.new("RGB", (400, 300), (90, 90, 90)))

    def explode(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(HeifImageFile, "load", explode)
    with pytest.raises(ImageDecodeError, match="image too large: 400x300"):
        open_image(data, max_pixels=100_000)


DECODE_IN_A_FRESH_PROCESS = """
import json, sys
from crack_model.core.imaging import open_image, read_header

def status(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))

data = open(sys.argv[1], "rb").read()
header = read_header(data)
open("/proc/self/clear_refs", "w").write("5")  # VmHWM starts again from what the process holds now
before = status("VmRSS")
image = open_image(data)
print(json.dumps({"growth": status("VmHWM") - before, "estimate": header.peak_bytes(), "size": image.size}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux's /proc")
@pytest.mark.parametrize("fmt", ENCODERS)
def test_the_header_bounds_what_decoding_a_phone_photo_holds(fmt, tmp_path):
    """libheif and libavif keep their own planes and pixels while Pillow copies them: the estimate counts them
    (counting Pillow's image alone, it was exceeded by 2.3-2.4 times)."""
    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(ENCODERS[fmt](texture.resize((2000, 1500), Image.Resampling.BICUBIC)))
    result = subprocess.run(
        [sys.executable, "-c", DECODE_IN_A_FRESH_PROCESS, str(path)],
        capture_output=True, text=True, check=True, cwd=PROJECT, timeout=120,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["size"] == [2000, 1500]
    assert report["growth"] <= report["estimate"], report


def test_a_generic_heif_of_either_codec_reaches_its_decoder():
    """Files branded plain "mif1" may hold HEVC or AV1: each is decoded by the plugin that can."""
    picture = imagefiles.gradient_rgb(80, 60)
    for data, fmt in ((heic(picture), "HEIF"), (avif(picture), "AVIF")):
        generic = data[:8] + b"mif1" + data[12:]
        assert read_header(generic).format == fmt
        assert mean_difference(open_image(generic), picture) < 4
    assert Image.open(io.BytesIO(heic(picture))).format == "HEIF"
