"""Decoding: every awkward kind of file becomes RGB pixels or a clear error."""

from __future__ import annotations

import io
import os
import struct
import tracemalloc

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin, TiffImagePlugin

from crack_model.core import imaging, pixel_modes
from crack_model.core.errors import ImageDecodeError
from crack_model.core.file_signatures import FormatNotAcceptedError
from crack_model.core.imaging import (
    DEFAULT_MAX_PIXELS,
    decode_to_array,
    difference_hash,
    open_header,
    open_image,
    read_header,
    to_8bit,
)
from crack_model.core.tiling import TileConfig
from crack_model.quality.grey_image import decode_grey
from tests import imagefiles


@pytest.mark.parametrize(
    "make",
    [
        imagefiles.jpeg,
        imagefiles.grayscale_png,
        imagefiles.rgba_png,
        imagefiles.palette_png,
        imagefiles.cmyk_jpeg,
        imagefiles.sixteen_bit_png,
    ],
)
def test_decodes_to_rgb(make):
    """Grayscale, RGBA, palette, CMYK and 16-bit images all decode to 8-bit RGB."""
    image = open_image(make())
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (48, 64, 3)


def test_sixteen_bit_keeps_its_range():
    """16-bit values are scaled, not clipped: the brightest pixel stays near white."""
    pixels = np.asarray(open_image(imagefiles.sixteen_bit_png()))
    assert pixels.max() >= 250 and pixels.min() <= 5


def test_exif_orientation_is_honoured():
    """A photo stored sideways with EXIF orientation 6 comes out upright (48 wide, 64 high)."""
    image = open_image(imagefiles.exif_rotated_jpeg(6))
    assert image.size == (48, 64)
    pixels = np.asarray(image, dtype=np.int16)
    # Rotated 90 degrees clockwise: the red ramp (left->right) now runs top->bottom.
    assert pixels[-1, :, 0].mean() - pixels[0, :, 0].mean() > 150


@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_turned_tiff_is_turned_once(orientation):
    """Pillow turns a TIFF by its orientation tag as it loads it: the picture comes out as viewers show it,
    the header gives that size, and a shrunk decode is upright too."""
    stored = imagefiles.gradient_rgb(64, 48)
    data = imagefiles.encode(stored, "TIFF", tiffinfo={0x0112: orientation})
    viewed = np.asarray(stored.transpose(imaging.TRANSPOSE_FOR_ORIENTATION[orientation]), dtype=np.int16)
    decoded = np.asarray(open_image(data), dtype=np.int16)
    assert decoded.shape == viewed.shape and np.abs(decoded - viewed).max() <= 1
    header = read_header(data)
    assert (header.height, header.width) == viewed.shape[:2]
    half = (viewed.shape[1] // 2, viewed.shape[0] // 2)
    shrunk = np.asarray(open_image(data, size=half), dtype=np.int16)
    expected = np.asarray(Image.fromarray(viewed.astype(np.uint8)).resize(half, Image.Resampling.BILINEAR))
    assert np.abs(shrunk - expected).mean() < 4


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (imagefiles.truncated_jpeg(), "corrupt or truncated"),
        (imagefiles.not_an_image(), "not an image"),
        (imagefiles.decompression_bomb_png(), "too large"),
    ],
)
def test_bad_bytes_raise_a_clear_error(data, reason):
    """Empty, truncated, non-image and bomb-sized inputs raise ImageDecodeError with a reason."""
    with pytest.raises(ImageDecodeError, match=reason):
        open_image(data)


def test_an_image_over_pillows_own_limit_is_refused_with_ours():
    """Over 179 MP Pillow refuses at open, before our check: the reason named Pillow's 178,956,970 pixels, and a
    photo downscaled to 150 MP was refused again."""
    with pytest.raises(ImageDecodeError) as refused:
        open_image(imagefiles.decompression_bomb_png(20_000))
    assert str(refused.value).startswith("image too large: 400,000,000 pixels exceeds the limit of 80,000,000;")
    assert "178956970" not in str(refused.value) and "downscale it" in str(refused.value)


def test_pixel_limit_is_configurable():
    """The decompression-bomb limit is a parameter."""
    with pytest.raises(ImageDecodeError, match="too large"):
        open_image(imagefiles.encode(imagefiles.gradient_rgb(64, 48), "PNG"), max_pixels=1000)


def test_a_jpeg_over_the_limit_is_decoded_at_the_first_reduction_within_it():
    """Inspection cameras take 100-150 MP JPEGs: decoded at 1/2 (or 1/4, 1/8) scale they hold what the limit
    allows, and scoring shrinks them further anyway. Another format that large is refused; so is a JPEG whose
    header claims more than a half-scale decode brings within the limit."""
    data = imagefiles.jpeg(2000, 1500)
    reduced = open_image(data, max_pixels=1_000_000)
    assert reduced.size == (1000, 750)
    assert np.abs(np.asarray(reduced, np.int16) - np.asarray(open_image(data, size=(1000, 750)), np.int16)).max() <= 1
    assert read_header(data, max_pixels=1_000_000).width == 2000
    with pytest.raises(
        ImageDecodeError,
        match="too large: 2000x1500, decoded at 1000x750, = 750,000 pixels exceeds the limit of 700,000",
    ):
        read_header(data, max_pixels=700_000)  # header: not even a half-scale decode fits
    unchecked = open_header(data, max_pixels=None)  # a header read without a limit: the decode still keeps it
    assert open_image(data, max_pixels=200_000, opened=unchecked).size == (500, 375)  # 1/2 is not enough: 1/4
    with pytest.raises(ImageDecodeError, match="2000x1500, decoded at 1000x750, = 750,000 pixels"):
        open_image(data, max_pixels=500_000, size=(1000, 750), opened=open_header(data, max_pixels=None))
    with pytest.raises(ImageDecodeError, match="too large"):
        open_image(imagefiles.encode(imagefiles.gradient_rgb(2000, 1500), "PNG"), max_pixels=1_000_000)


def test_decode_to_array_resizes():
    """The model input is size x size x 3 uint8."""
    assert decode_to_array(imagefiles.jpeg(100, 60), 32).shape == (32, 32, 3)


def test_difference_hash_ignores_reencoding_but_not_content():
    """A re-encoded copy shares the perceptual hash; a different image does not."""
    original = open_image(imagefiles.jpeg(227, 227))
    reencoded = open_image(imagefiles.encode(original, "JPEG", quality=70))
    flipped = original.transpose(0)
    assert difference_hash(original) == difference_hash(reencoded)
    assert difference_hash(original) != difference_hash(flipped)


def pillow_file(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    return imagefiles.encode(Image.new("RGB", size, (90, 120, 150)), fmt)


@pytest.mark.parametrize("fmt", ["TGA", "SGI", "PCX", "EPS", "ICO", "DDS", "QOI", "PPM", "AVIF"])
def test_formats_outside_the_allowed_list_are_refused_by_name(fmt):
    """Files Pillow could decode but we do not accept are refused with their format named, never decoded."""
    data = pillow_file(fmt)
    with pytest.raises(
        FormatNotAcceptedError, match="is not accepted: upload JPEG, HEIC, PNG, TIFF, WebP, BMP or GIF"
    ) as caught:
        open_image(data)
    assert caught.value.format_name == fmt
    assert str(caught.value).startswith(f"format {fmt} is not accepted")


def _tiff_with_tags(tags: dict[int, tuple[object, int]]) -> bytes:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, (value, kind) in tags.items():
        info[tag] = value
        info.tagtype[tag] = kind
    return imagefiles.encode(Image.new("RGB", (256, 171), (100, 120, 140)), "TIFF", tiffinfo=info)


def _tiff_pillow_cannot_open(photometric: int, compression: int = 1) -> bytes:
    """A one-strip grey TIFF whose tags say what a raw file's first picture says (Pillow refuses to decode it)."""
    width, height, pixels = 16, 8, bytes(16 * 8)
    entries = [(256, 3, width), (257, 3, height), (258, 3, 8), (259, 3, compression), (262, 3, photometric),
               (273, 4, 8 + 2 + 12 * 7 + 4), (279, 4, len(pixels))]  # fmt: skip
    packed = (struct.pack("<HHI", tag, kind, 1) + struct.pack("<H2x" if kind == 3 else "<I", value)
              for tag, kind, value in entries)  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(packed)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(4) + pixels


RAW = "upload that"  # the end of every camera raw refusal: export a JPEG or HEIC


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (_tiff_with_tags({50706: (b"\x01\x04\x00\x00", 1)}), "DNG (camera raw)"),  # DNGVersion
        # a first picture that is a reduced copy of another one under it (SubIFDs), as in a NEF or an ARW
        (_tiff_with_tags({254: (1, 4), 330: (0, 4)}), "camera raw (TIFF-based)"),
        (_tiff_pillow_cannot_open(photometric=32803), "camera raw (TIFF-based)"),  # a sensor's colour mosaic
        (_tiff_pillow_cannot_open(photometric=1, compression=34713), "camera raw (TIFF-based)"),  # Nikon's
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00" + bytes(200), "CR2 (camera raw)"),
        (b"\0\0\0\x18ftypcrx \0\0\0\x01crx isom" + bytes(200), "CR3 (camera raw)"),
        (b"FUJIFILMCCD-RAW 0201" + bytes(200), "RAF (camera raw)"),
        (b"IIRO\x08\x00\x00\x00" + bytes(200), "ORF (camera raw)"),
        (b"IIU\x00\x08\x00\x00\x00" + bytes(200), "RW2 (camera raw)"),
    ],
)
def test_camera_raw_files_are_refused_by_name_not_scored_from_their_preview(data, name):
    """Pillow opens a DNG or a NEF as a TIFF and decodes its first picture: a 256-px preview, which would be
    scored as the photo, or one it cannot decode ("damaged TIFF: re-upload" would not help). Raw files are
    refused by name, and told to export a JPEG or HEIC."""
    with pytest.raises(FormatNotAcceptedError, match=f"export the photo as JPEG or HEIC .* {RAW}$") as raised:
        open_image(data)
    assert raised.value.format_name == name


@pytest.mark.parametrize("subfile_type", [1, 2])
def test_a_tiff_of_one_picture_is_decoded_whatever_its_subfile_type(subfile_type):
    """A lone picture marked as a reduced copy has nothing to be a copy of; type 2 is a page of a document."""
    assert open_image(_tiff_with_tags({254: (subfile_type, 4)})).size == (256, 171)


def test_refused_formats_never_reach_a_pillow_decoder(monkeypatch):
    """The TGA parser is not even asked: the allowed list is passed to Image.open."""
    from PIL import TgaImagePlugin

    def explode(self):
        raise AssertionError("TGA parser ran")

    monkeypatch.setattr(TgaImagePlugin.TgaImageFile, "_open", explode)
    with pytest.raises(FormatNotAcceptedError, match="format TGA"):
        open_image(pillow_file("TGA"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF"])
def test_allowed_formats_decode(fmt):
    """Every format the data loader accepts still decodes."""
    image = open_image(pillow_file(fmt))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_multi_picture_jpegs_decode():
    """Some cameras write MPO (a JPEG with a second picture): that is a JPEG to us."""
    first, second = Image.new("RGB", (40, 30), (200, 10, 10)), Image.new("RGB", (40, 30), (10, 200, 10))
    buffer = io.BytesIO()
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    pixels = np.asarray(open_image(buffer.getvalue()))
    assert pixels[..., 0].mean() > 150  # the first picture


def test_sixteen_bit_becomes_eight_bit_by_a_shift():
    """16-bit values map to their high byte: 0 -> 0, 0x8000 -> 128, 0xFFFF -> 255."""
    pixels = np.array([[0, 0x00FF, 0x0100, 0x8000, 0xFFFF]], dtype=np.uint16)
    grey = np.asarray(to_8bit(Image.fromarray(pixels)))
    assert grey.tolist() == [[0, 0, 1, 128, 255]]


def test_twelve_bit_data_in_a_sixteen_bit_file_keeps_its_contrast():
    """A camera's 12-bit values (0..4095) shifted by 8 came out 0..15, almost black: 11 of 20 crack photos were
    scored no crack. The depth is snapped to 12, 14 or 16 bits, so a dark frame (a lens cap) stays dark."""
    twelve = np.array([[0, 0x0010, 0x0800, 0x0FFF]], dtype=np.uint16)
    assert np.asarray(to_8bit(Image.fromarray(twelve))).tolist() == [[0, 1, 128, 255]]
    fourteen = np.array([[0, 0x2000, 0x3FFF]], dtype=np.uint16)
    assert np.asarray(to_8bit(Image.fromarray(fourteen))).tolist() == [[0, 128, 255]]
    lens_cap = np.array([[0, 100, 200]], dtype=np.uint16)
    assert np.asarray(to_8bit(Image.fromarray(lens_cap))).tolist() == [[0, 6, 12]]


@pytest.mark.parametrize(
    "encode",
    [imagefiles.sixteen_bit_colour_png, imagefiles.sixteen_bit_colour_tiff,
     lambda samples: imagefiles.sixteen_bit_colour_tiff(samples, deflate=True)],  # libtiff: native byte order
    ids=["png", "tiff", "deflate-tiff"],
)  # fmt: skip
def test_twelve_bit_data_in_a_sixteen_bit_colour_file_keeps_its_contrast(encode):
    """Pillow keeps the high byte of a 16-bit colour sample: 12-bit camera data came out 0..15, almost black, and
    10 of 30 crack photos were scored no crack (single-band ones were already right)."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (24, 40, 3)).astype(np.uint16)
    for bits, shift in ((12, 4), (14, 6), (16, 8)):
        samples = (colour << (bits - 8)) | rng.integers(0, 1 << (bits - 8), colour.shape).astype(np.uint16)
        decoded = np.asarray(open_image(encode(samples)))
        assert np.array_equal(decoded, (samples >> shift).astype(np.uint8)), bits
        grey = decode_grey(encode(samples), TileConfig(), DEFAULT_MAX_PIXELS)  # validation sees it alike
        assert abs(float(grey.mean()) - float(np.asarray(Image.fromarray(decoded).convert("L")).mean())) < 1


def test_twelve_bit_data_in_a_sixteen_bit_grey_and_alpha_png_keeps_its_contrast():
    """A grey+alpha PNG opens as RGBA of the grey's high bytes: 12-bit data came out 0..15, a crack was scored no
    crack (0.56), and validation called the photo too dark, while the same data as grey or RGB decoded right."""
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (24, 40)).astype(np.uint16)
    opaque = np.full(grey.shape, 65535, np.uint16)
    for bits, shift in ((12, 4), (14, 6), (16, 8)):
        samples = (grey << (bits - 8)) | rng.integers(0, 1 << (bits - 8), grey.shape).astype(np.uint16)
        decoded = np.asarray(open_image(imagefiles.sixteen_bit_colour_png(np.dstack([samples, opaque]))))
        expected = (samples >> shift).astype(np.uint8)
        assert np.array_equal(decoded, np.dstack([expected] * 3)), bits


def test_a_float_image_in_zero_to_one_is_scaled_to_255():
    """Float TIFFs hold 0..1 by convention: they came out 0..0, black, and every crack photo was missed."""
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_8bit(unit)).tolist() == [[0, 127, 255]]


def test_thirty_two_bit_and_float_images_are_scaled():
    """32-bit integer and float images up to 65535 scale to 0..255; ones up to 255 keep their values."""
    wide = Image.fromarray(np.array([[0, 32768, 65535, 70000]], dtype=np.int32))
    narrow = Image.fromarray(np.array([[0.0, 100.0, 255.0, -5.0]], dtype=np.float32))
    assert np.asarray(to_8bit(wide)).tolist() == [[0, 127, 255, 255]]
    assert np.asarray(to_8bit(narrow)).tolist() == [[0, 100, 255, 0]]


def test_sixteen_bit_decoding_makes_no_float64_copy():
    """Converting a 16 MP 16-bit image allocates under 4 bytes a pixel in numpy (a float64 copy is 8)."""
    image = Image.new("I;16", (4096, 4096), 40000)
    tracemalloc.start()
    try:
        grey = to_8bit(image)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert grey.mode == "L" and grey.getpixel((0, 0)) == 40000 >> 8
    assert peak < 4 * 4096 * 4096


def test_open_image_shrinks_to_the_requested_size_upright():
    """With a size, a sideways photo comes out upright at exactly that size, and the orientation still shows."""
    image = open_image(imagefiles.exif_rotated_jpeg(6), size=(24, 32))
    assert image.size == (24, 32) and image.mode == "RGB"
    pixels = np.asarray(image, dtype=np.int16)
    assert pixels[-1, :, 0].mean() - pixels[0, :, 0].mean() > 100


def test_a_jpeg_that_draft_does_not_reduce_is_refused_not_decoded_whole(monkeypatch):
    """The pixel limit holds even if Pillow's draft() reduces less than computed (say, an odd JPEG layout)."""
    data = imagefiles.jpeg(2000, 1500)
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: None)
    with pytest.raises(ImageDecodeError, match="image too large: 2000x1500"):
        open_image(data, max_pixels=1_000_000)


def test_the_header_predicts_the_reduced_jpeg_decode():
    """decoded_pixels matches what Pillow's reduced JPEG decode produces (4000x3000 asked for 500x400: 1/4)."""
    data = imagefiles.jpeg(4000, 3000)
    header = read_header(data)
    assert (header.format, header.mode, header.width, header.height) == ("JPEG", "RGB", 4000, 3000)
    draft = Image.open(io.BytesIO(data))
    draft.draft(None, (500, 400))
    draft.load()
    assert header.decoded_pixels((500, 400)) == draft.width * draft.height == 1000 * 750
    assert header.decoded_bytes() == 4000 * 3000 * 4  # Pillow keeps RGB in 4 bytes a pixel


def test_reading_a_header_decodes_no_pixels():
    """A truncated JPEG has a readable header; only decoding it fails."""
    header = read_header(imagefiles.truncated_jpeg())
    assert (header.width, header.height) == (128, 128)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        open_image(imagefiles.truncated_jpeg())


def test_header_of_a_sideways_photo_gives_the_displayed_size():
    """EXIF orientation 6 swaps width and height in the header too."""
    header = read_header(imagefiles.exif_rotated_jpeg(6))
    assert (header.stored_width, header.stored_height, header.width, header.height) == (64, 48, 48, 64)


def test_banded_rgb_reduction_equals_converting_then_reducing(monkeypatch):
    """RGBA and palette giants shrink a band at a time with exactly the pixels of a full-size conversion."""
    monkeypatch.setattr(pixel_modes, "CHUNK_PIXELS", 1000)  # many bands, one of them partial
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 255, (301, 203, 4), dtype=np.uint8), "RGBA")
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    for image in (rgba, palette):
        banded = pixel_modes.rgb_reduced(image, 3)
        assert banded.mode == "RGB" and banded.size == (68, 101)
        assert np.array_equal(np.asarray(banded), np.asarray(pixel_modes.to_rgb(image).reduce(3)))


@pytest.mark.skipif("PILLOW_BLOCK_SIZE" in os.environ, reason="the operator chose Pillow's block size")
def test_pillow_blocks_are_large_enough_to_be_given_back_when_freed():
    """Importing imaging sets 64 MB blocks: above glibc's 32 MB mmap threshold, so freed giants leave the heap."""
    assert Image.core.get_block_size() == imaging.BLOCK_SIZE == 64 * 2**20


@pytest.mark.parametrize("size", [None, (24, 32)])
def test_an_image_opened_for_its_header_decodes_as_if_opened_afresh(size):
    """open_image(opened=open_header(...)) gives open_image's upright pixels, and hands the image over once."""
    data = imagefiles.exif_rotated_jpeg(6)
    opened = open_header(data)
    assert opened.header == read_header(data)
    image = open_image(data, size=size, opened=opened)
    assert np.array_equal(np.asarray(image), np.asarray(open_image(data, size=size)))
    with pytest.raises(ValueError, match="already handed over"):
        open_image(data, opened=opened)  # the opened image belongs to the first decode: no second copy of its pixels


def test_an_opened_image_still_meets_the_pixel_limit_of_its_decode():
    """A header read with a generous limit is checked again against the decode's own limit."""
    data = imagefiles.jpeg(400, 300)
    with pytest.raises(ImageDecodeError, match="image too large"):
        open_image(data, max_pixels=1000, opened=open_header(data, max_pixels=None))


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (imagefiles.jpeg()[:20], "JPEG"),
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"GIF89a\x00", "GIF"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF"),
        (b"RIFF\x10\x00\x00\x00WEBP", "WebP"),
        (b"\0\0\0\x18ftypheic" + bytes(40), "HEIC"),
        (b"\0\0\0\x1cftypmif1" + bytes(40), "HEIF"),
    ],
)
def test_a_damaged_file_of_an_accepted_format_is_not_told_to_use_that_format(data, name):
    """Bytes that start like a JPEG (or PNG, ...) but whose header is unreadable are a damaged upload:
    the reason says so, instead of "upload JPEG, PNG, ..." to someone who did."""
    with pytest.raises(ImageDecodeError, match=f"damaged {name} file") as raised:
        open_header(data)
    assert not isinstance(raised.value, FormatNotAcceptedError)


@pytest.mark.parametrize("mangle", [{b"\n": b"\r\n"}, {b"\r\n": b"\n"}], ids=["LF to CRLF", "CRLF to LF"])
def test_a_png_copied_in_text_mode_is_told_to_be_copied_in_binary_mode(mangle):
    """An FTP transfer in ASCII mode changes the PNG signature's line ends: the reason names that, and what to do."""
    [(line_end, replaced)] = mangle.items()
    mangled = imagefiles.encode(imagefiles.gradient_rgb(), "PNG").replace(line_end, replaced)
    with pytest.raises(ImageDecodeError, match=r"PNG damaged in transfer \(text mode\): ") as raised:
        open_header(mangled)
    assert "re-upload it in binary mode" in str(raised.value)
    assert not isinstance(raised.value, FormatNotAcceptedError)


@pytest.mark.parametrize("size", [(1, 3000), (3000, 1), (2, 60000)])
def test_an_image_thinner_than_the_requested_size_is_decoded_at_full_scale(size):
    """A JPEG a pixel or two thin, asked for at a size above one of its sides, is not reduced (this raised
    StopIteration in the memory estimate, which sank a whole validation)."""
    header = open_header(imagefiles.encode(Image.new("RGB", size, (9, 9, 9)), "JPEG")).header
    assert imaging.draft_scale(*size, (227, 227)) == 1
    assert header.decoded_size((227, 227)) == size


def test_a_float_image_of_nan_becomes_black_without_a_warning():
    """NaN (a float TIFF's "no data") maps to 0; a cast of NaN to uint8 is undefined and warns."""
    import warnings

    pixels = np.array([[np.nan, 100.0], [np.inf, -np.inf]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.asarray(to_8bit(Image.fromarray(pixels))).tolist() == [[0, 100], [255, 0]]
        # A NaN first pixel made Pillow's extrema NaN, and a 0..60000 image was then clipped white instead of scaled.
        wide = np.array([[np.nan, 0.0], [30000.0, 60000.0]], dtype=np.float32)
        assert np.asarray(to_8bit(Image.fromarray(wide))).tolist() == [[0, 0], [116, 233]]


def test_a_file_a_decoder_stops_on_says_what_to_do():
    """ "corrupt or truncated image: image file is truncated" named the library's fault, never the remedy."""
    png = imagefiles.encode(imagefiles.gradient_rgb(200, 150), "PNG")
    with pytest.raises(ImageDecodeError, match=r"^corrupt or truncated image: .+; re-upload the original photo$"):
        open_image(png[: len(png) // 2])
