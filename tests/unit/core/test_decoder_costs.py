"""Small files that make a decoder hold or do far more than their picture: refused, or counted (decoder_costs.py)."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from crack_model.core.errors import ImageDecodeError
from crack_model.core.file_signatures import MAX_SEGMENTS, FormatNotAcceptedError
from crack_model.core.imaging import DEFAULT_MAX_PIXELS, open_image, read_header
from crack_model.core.tiling import TileConfig
from crack_model.quality.profile import ProfileConfig, profile_bytes
from crack_model.serving import inference
from crack_model.serving.inference import MORE_FRAMES_NOTE
from tests import imagefiles


def _prepared(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> inference.ImageScore:
    fetched = inference.fetch_object("upload", lambda _: data, 224, TileConfig(), max_pixels)
    return inference.prepare(fetched, 224, TileConfig(), max_pixels).score


def _tiled_tiff(width: int, height: int, tile: int) -> bytes:
    """An RGB TIFF of ``width`` x ``height`` whose one tile is declared ``tile`` x ``tile`` (deflated zeros)."""
    pixels = zlib.compress(bytes(tile * tile * 3), 9)
    ifd_at = 8 + len(pixels) + len(pixels) % 2
    entries = [(256, 3, width), (257, 3, height), (258, 3, None), (259, 3, 8), (262, 3, 2), (277, 3, 3),
               (284, 3, 1), (322, 4, tile), (323, 4, tile), (324, 4, 8), (325, 4, len(pixels))]  # fmt: skip
    bits_at = ifd_at + 2 + 12 * len(entries) + 4

    def entry(tag: int, kind: int, value: int | None) -> bytes:
        if value is None:  # BitsPerSample: three values, stored after the directory
            return struct.pack("<HHII", tag, kind, 3, bits_at)
        return struct.pack("<HHI", tag, kind, 1) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )

    directory = struct.pack("<H", len(entries)) + b"".join(entry(*e) for e in entries) + struct.pack("<I", 0)
    head = b"II*\x00" + struct.pack("<I", ifd_at) + pixels
    return head + bytes(ifd_at - len(head)) + directory + struct.pack("<HHH", 8, 8, 8)


def test_a_tiff_whose_tile_is_over_the_pixel_limit_is_refused_and_a_smaller_one_counted():
    """A 300x200 TIFF declaring a tile of 1024x1024: libtiff decodes whole tiles, so the tile is what counts."""
    bomb = _tiled_tiff(300, 200, 1024)
    with pytest.raises(ImageDecodeError, match=r"TIFF tiles are 1024x1024 = 1,048,576 pixels, over the limit"):
        open_image(bomb, max_pixels=1_000_000)
    assert _prepared(bomb, max_pixels=1_000_000).status == "error"
    row = profile_bytes("bomb.tif", bomb, ProfileConfig(max_pixels=1_000_000))
    assert not row["decodable"] and "TIFF tiles" in row["decode_error"]
    header = read_header(bomb)  # within the default limit: decoded, its tile counted in the budget
    assert header.decoder_bytes == 1024 * 1024 * 3
    assert open_image(bomb).size == (300, 200)


def test_a_progressive_jpeg_counts_its_coefficients_and_is_refused_over_the_limit_at_full_size():
    """Its decoder holds the whole picture's coefficients even for a 1/8-scale decode."""
    picture = Image.open(io.BytesIO(imagefiles.jpeg(800, 600)))
    progressive = imagefiles.encode(picture, "JPEG", progressive=True)
    baseline = imagefiles.encode(picture, "JPEG")
    assert read_header(progressive).decoder_bytes == 2 * 3 * 800 * 600
    assert read_header(baseline).decoder_bytes == 0
    # A baseline JPEG passes where its half-scale decode fits; a progressive one does not.
    assert open_image(baseline, max_pixels=400_000, size=(200, 150)).size == (200, 150)
    with pytest.raises(ImageDecodeError, match="progressive JPEG of 800x600 = 480,000 pixels"):
        open_image(progressive, max_pixels=400_000, size=(200, 150))


def test_a_webp_counts_the_decoders_canvases():
    webp = imagefiles.encode(imagefiles.gradient_rgb(300, 200), "WEBP", lossless=True)
    assert read_header(webp).decoder_bytes == 10 * 300 * 200


@pytest.mark.parametrize("precision", [12, 16])
def test_a_jpeg_of_other_than_8_bit_samples_is_refused_as_such_not_as_damaged(precision):
    data = bytearray(imagefiles.jpeg(64, 48))
    frame = data.index(b"\xff\xc0")
    data[frame + 4] = precision
    with pytest.raises(FormatNotAcceptedError, match=f"format {precision}-bit JPEG is not accepted: export"):
        open_image(bytes(data))
    assert _prepared(bytes(data)).error.startswith(f"format {precision}-bit JPEG is not accepted")


@pytest.mark.parametrize("precision", [0, 9, 255])
def test_a_jpeg_whose_precision_byte_is_damaged_is_refused_as_damaged_not_as_a_format(precision):
    """Only 8, 12 and 16 bits are JPEG precisions: another is a damaged byte, and exporting again would not help."""
    data = bytearray(imagefiles.jpeg(64, 48))
    data[data.index(b"\xff\xc0") + 4] = precision
    reason = f"damaged JPEG header: its frame says {precision}-bit samples (a JPEG has 8, 12 or 16); re-upload"
    with pytest.raises(ImageDecodeError, match=re.escape(reason)) as raised:
        open_image(bytes(data))
    assert not isinstance(raised.value, FormatNotAcceptedError)
    assert _prepared(bytes(data)).error.startswith(reason)
    row = profile_bytes("upload.jpg", bytes(data), ProfileConfig())
    assert row["decode_error"].startswith(reason) and not row["format"]


def test_floods_of_empty_segments_are_refused_before_pillow_parses_them():
    """Pillow keeps each segment or chunk in lists as it opens a file; cameras write a few dozen."""
    jpeg = imagefiles.jpeg(64, 48)
    flooded_jpeg = jpeg[:2] + b"\xff\xfe\x00\x02" * (MAX_SEGMENTS + 1) + jpeg[2:]
    png = imagefiles.encode(imagefiles.gradient_rgb(64, 48), "PNG")
    chunk = struct.pack(">I", 0) + b"prIv" + struct.pack(">I", zlib.crc32(b"prIv"))
    flooded_png = png[:33] + chunk * (MAX_SEGMENTS + 1) + png[33:]
    for flooded, name in ((flooded_jpeg, "JPEG"), (flooded_png, "PNG")):
        with pytest.raises(ImageDecodeError, match=f"a {name} with over 1,000 .* before its picture is not accepted"):
            read_header(flooded)
    # A few hundred are still a photo.
    assert open_image(jpeg[:2] + b"\xff\xfe\x00\x02" * 300 + jpeg[2:]).size == (64, 48)
    assert open_image(png[:33] + chunk * 300 + png[33:]).size == (64, 48)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "PNG"])
def test_a_file_of_several_pictures_is_scored_on_the_first_and_its_row_says_so(fmt):
    """A crack on a later page would be missed without a word: the note says only the first was scored."""
    first, second = imagefiles.gradient_rgb(300, 240), Image.new("RGB", (300, 240), (20, 20, 20))
    several = imagefiles.encode(first, fmt, save_all=True, append_images=[second])
    score = _prepared(several)
    assert score.status == "ok" and MORE_FRAMES_NOTE in score.note
    single = _prepared(imagefiles.encode(first, fmt))
    assert single.status == "ok" and MORE_FRAMES_NOTE not in single.note


def test_fill_bytes_before_a_marker_are_no_segments():
    """0xFF may come before any marker (T.81 B.1.1.2): a photo with 5,000 is a photo."""
    jpeg = imagefiles.jpeg(64, 48)
    at = jpeg.index(b"\xff\xdb")
    filled = jpeg[:at] + b"\xff" * 5_000 + jpeg[at:]
    assert np.array_equal(np.asarray(open_image(filled)), np.asarray(open_image(jpeg)))
    assert _prepared(filled).status == "ok"
    # Pillow reads them one by one: 40 MB of them cost 25 s of CPU. Past a bound no encoder comes near, refused.
    flooded = jpeg[:at] + b"\xff" * 70_000 + jpeg[at:]
    with pytest.raises(ImageDecodeError, match="a JPEG with over 65,536 fill bytes before its picture is not"):
        read_header(flooded)


def test_a_tiff_whose_second_page_is_a_preview_is_one_photo():
    """Scanners and cameras store a reduced-resolution copy as a second page (NewSubfileType bit 0): no note."""
    photo = imagefiles.gradient_rgb(300, 240)
    data = bytearray(imagefiles.encode(photo, "TIFF", save_all=True, append_images=[photo.resize((150, 120))],
                                       tiffinfo={254: 0}))  # fmt: skip
    entry = bytes.fromhex("fe00040001000000") + bytes(4)  # NewSubfileType = 0, in both pages' directories
    second = data.find(entry, data.find(entry) + 1)
    data[second + 8] = 1  # the second page: a reduced-resolution version of the first
    score = _prepared(bytes(data))
    assert score.status == "ok" and MORE_FRAMES_NOTE not in score.note
    assert not read_header(bytes(data)).more_frames
    assert np.array_equal(np.asarray(open_image(bytes(data))), np.asarray(open_image(imagefiles.encode(photo, "TIFF"))))


def test_a_tiled_sixteen_bit_colour_tiff_counts_its_tile_buffer_and_its_second_decode():
    """The second decode's bytes replaced the tile buffer's in the budget: a 4096 x 4096 tile went uncounted."""
    from PIL import Image

    from crack_model.core import deep_colour
    from crack_model.core.decoder_costs import decoder_bytes
    from tests import imagefiles

    image = Image.open(io.BytesIO(imagefiles.sixteen_bit_colour_tiff(np.zeros((20, 30, 3), np.uint16))))
    assert deep_colour.sixteen_bit_colour(image)
    second = deep_colour.EXTRA_BYTES_PER_SAMPLE * 3 * 20 * 30
    assert decoder_bytes(image, b"", None) == second
    image.tag_v2[322], image.tag_v2[323] = 4096, 4096  # TileWidth, TileLength
    assert decoder_bytes(image, b"", None) == second + 4096 * 4096 * 3 * 2
