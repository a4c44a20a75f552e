"""Turn image bytes into RGB pixels the same way everywhere (training, scoring, profiling).

Pillow does the decoding, and only for the formats in ``ALLOWED_FORMATS``: JPEG, PNG, TIFF, WebP, BMP, GIF
and HEIC (through pi-heif, libheif's decoder: heif.py), what the data loader accepts. Any other format (TGA,
PSD, ...) is refused from its first bytes, before any of Pillow's parsers runs (file_signatures.py). Pillow honours
EXIF orientation and handles palette, grayscale, RGBA, CMYK and 16-bit images, which the nightly
uploads contain and ``tf.io.decode_image`` does not all handle. (Scoring decodes clean JPEGs with
simplejpeg instead, to the same pixels, and leaves every other file to this module: jpeg_fast.py.)

Memory: no float64 copy is ever made. 16-bit and 32-bit images go to 8 bits a band of rows at a time
(``pixel_modes``), and ``open_image(..., size=...)`` shrinks an image before converting it to RGB (JPEGs are even
decoded at 1/2, 1/4 or 1/8 scale), so decoding costs about what Pillow needs to hold the image once;
``ImageHeader.peak_bytes`` bounds it from the header, before decoding.
"""

from __future__ import annotations

import io
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL import _imaging as pillow_core

from crack_model.core import deep_colour, heif, zero_tail
from crack_model.core.decoder_costs import check_decoder, decoder_bytes, more_frames
from crack_model.core.errors import REUPLOAD, ImageDecodeError
from crack_model.core.file_signatures import ACCEPTED, PNG_SIGNATURE, jpeg_frame, png_refusal, raw_refusal, refusal
from crack_model.core.jpeg_damage import check_intact
from crack_model.core.pixel_modes import SIXTEEN_BIT_MODES, bytes_per_pixel, reduce_factor, rgb_reduced, to_8bit, to_rgb

# A 4032x3024 phone photo is 12 MP; 80 MP of decoded pixels leaves room for panoramas and stops
# decompression bombs (a tiny file that expands to gigabytes of pixels). A JPEG is decoded at 1/2,
# 1/4 or 1/8 scale when it is wanted smaller, so what counts is what its decode holds: the 100-150 MP
# of inspection cameras (Phase One iXM) are scored from a reduced decode. Pillow refuses anything
# above 2 x Image.MAX_IMAGE_PIXELS (179 MP) before we are asked.
DEFAULT_MAX_PIXELS = 80_000_000
# Pillow's names. MPO is what Pillow calls the JPEGs of cameras that embed a second picture; HEIF is HEIC, what
# iPhones save. AVIF is not accepted: libavif decodes the whole AV1 frame whatever size the header gives.
ALLOWED_FORMATS = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP", "GIF", heif.FORMAT)
# Formats whose decoder can shrink while decoding (DCT scaling).
DRAFT_FORMATS = ("JPEG", "MPO")
# Modes resampled before conversion to RGB; others are converted first (palette images cannot be
# resampled, and alpha must be dropped first).
RESIZED_AS_DECODED = ("L", "RGB", "CMYK")
EXIF_ORIENTATION_TAG = 0x0112
# Pillow keeps a large image in blocks, 16 MB by default. glibc serves blocks that size from its heap
# once its adaptive mmap threshold has grown (up to 32 MB, as big buffers are freed), and the heap keeps
# what is freed: a worker decoding giants kept ~300 MB it no longer used (an 80 MP RGBA TIFF scored after other
# images peaked at 1,197 MB with 16 MB blocks, 868 MB with 64 MB ones). Blocks over 32 MB are always mapped, and
# unmapped when freed. A PILLOW_BLOCK_SIZE set by the operator wins.
BLOCK_SIZE = 64 * 2**20
# Our pixel limit (open_lazy) replaces Pillow's warning; set once: catch_warnings() in threads let it through.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
if "PILLOW_BLOCK_SIZE" not in os.environ:
    pillow_core.set_block_size(BLOCK_SIZE)  # what PILLOW_BLOCK_SIZE sets (Pillow's "block allocator" docs)
TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def draft_scale(width: int, height: int, target: tuple[int, int]) -> int:
    """The JPEG decoder's reduction (1, 2, 4 or 8) for a requested size, as Pillow's ``draft`` picks it."""
    ratio = min(width // max(target[0], 1), height // max(target[1], 1))
    return next((scale for scale in (8, 4, 2) if ratio >= scale), 1)  # 1 also when a side is below the target


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says, before any pixel is decoded."""

    format: str
    mode: str
    stored_width: int
    stored_height: int
    orientation: int | None = None
    decoder_bytes: int = 0  # what the decoder holds beside Pillow's image (decoder_costs.py)
    more_frames: bool = False  # pages or frames after the first, which is the one decoded

    @property
    def swapped(self) -> bool:
        return self.orientation in (5, 6, 7, 8)

    @property
    def width(self) -> int:
        """Width as displayed (after EXIF rotation)."""
        return self.stored_height if self.swapped else self.stored_width

    @property
    def height(self) -> int:
        return self.stored_width if self.swapped else self.stored_height

    @property
    def channels(self) -> int:
        return Image.getmodebands(self.mode)

    def decoded_size(self, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """(width, height), as stored, of what the decoder produces for ``open_image(..., size=size)``."""
        width, height = self.stored_width, self.stored_height
        if size is not None and self.format in DRAFT_FORMATS:
            scale = draft_scale(width, height, stored_size(size, self.orientation))
            width, height = -(-width // scale), -(-height // scale)
        return width, height

    def decoded_pixels(self, size: tuple[int, int] | None = None) -> int:
        width, height = self.decoded_size(size)
        return width * height

    def decoded_bytes(self, size: tuple[int, int] | None = None) -> int:
        """Bytes Pillow holds for the decoded pixels, for ``open_image(..., size=size)``."""
        return self.decoded_pixels(size) * bytes_per_pixel(self.mode)

    def peak_bytes(self, size: tuple[int, int] | None = None) -> int:
        """An upper bound of the pixel memory ``open_image(..., size=size)`` holds at once.

        The decoded image; its 8-bit grey or RGB conversion where one comes before resizing; and, at the
        final size, the resized image, its EXIF rotation and its conversion to RGB where each happens.
        """
        decoded = self.decoded_pixels(size)
        width, height = self.decoded_size(size)
        source_height = height  # of the image the resize starts from
        if self.mode in (*SIXTEEN_BIT_MODES, "I", "F"):
            converted, final_mode = decoded, "L"
        elif self.mode in RESIZED_AS_DECODED:
            converted, final_mode = 0, self.mode
        else:  # converted to RGB in bands, and box-reduced when shrinking (rgb_reduced)
            factor = 1 if size is None else reduce_factor((width, height), stored_size(size, self.orientation))
            converted, final_mode = 4 * -(-width // factor) * -(-height // factor), "RGB"
            source_height = -(-height // factor)
        final = 4 * (size[0] * size[1] if size is not None else self.stored_width * self.stored_height)
        # Pillow resamples the rows first: an image of the new width and the old height lives in between.
        resized = final + 4 * stored_size(size, self.orientation)[0] * source_height if size is not None else 0
        rotated = final if self.orientation in TRANSPOSE_FOR_ORIENTATION else 0
        to_rgb = final if final_mode != "RGB" else 0
        return decoded * bytes_per_pixel(self.mode) + self.decoder_bytes + converted + resized + rotated + to_rgb


def stored_size(size: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """A displayed (width, height) as stored in the file, before EXIF rotation."""
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


@contextmanager
def decode_errors(max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[None]:
    """Turn whatever Pillow raises on bad bytes into an ImageDecodeError with a reason a person can act on."""
    try:
        yield
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image, or in a format we do not know: upload {ACCEPTED}") from None
    except Image.DecompressionBombError as error:  # Pillow's own limit (179 MP) is met at open, before ours
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(pixels[1]):,} pixels" if pixels else "its size"
        raise ImageDecodeError(f"image too large: {size} exceeds the limit of {max_pixels:,}; downscale it before "
                               "upload") from None  # fmt: skip
    except MemoryError:
        raise ImageDecodeError("cannot decode: out of memory") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(f"corrupt or truncated image: {str(error).strip()[:300]}; {REUPLOAD}") from None


def open_lazy(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The one place bytes reach Pillow: header read, format allowed, pixel limit checked; nothing decoded yet.

    Raises:
        ImageDecodeError: empty, not an allowed format, too many pixels, or a broken header.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes): re-upload the photo")
    if heif_file := heif.is_heif(data):
        heif.check_items(data, max_pixels)  # before pi-heif reads them: some crash it (heif.py)
    # Before Pillow parses their segments: floods, arithmetic coding, 12-bit samples (file_signatures.py).
    frame = jpeg_frame(data) if data.startswith(b"\xff\xd8") else None
    if data.startswith(PNG_SIGNATURE) and (flooded := png_refusal(data)) is not None:
        raise flooded
    with decode_errors(max_pixels), heif.library_errors(heif_file):
        try:
            image = Image.open(io.BytesIO(data), formats=_registered(ALLOWED_FORMATS))
        except UnidentifiedImageError:
            raise refusal(data) from None
    check_decoder(image, frame, max_pixels)
    if (cut_short := zero_tail.zero_tail_refusal(data)) is not None:  # libheif and libwebp decode zeros silently
        raise cut_short
    if image.format == "TIFF":
        tags = getattr(image, "tag_v2", {})
        if (raw := raw_refusal(data, tags, more_pictures=bool(getattr(tags, "next", 0)))) is not None:
            raise raw
    # A JPEG passes if its half-scale decode would (smaller ones are asked for where they suffice).
    reduced = 2 if image.format in DRAFT_FORMATS else 1
    check_pixels(
        image.width, image.height, max_pixels, decoded=(-(-image.width // reduced), -(-image.height // reduced))
    )
    return image


def check_pixels(width: int, height: int, max_pixels: int, decoded: tuple[int, int] | None = None) -> None:
    """Raise ImageDecodeError for an image of more than ``max_pixels`` pixels (``decoded``: its size as decoded,
    when the decoder reduces it)."""
    pixels = width * height if decoded is None else decoded[0] * decoded[1]
    if pixels > max_pixels:
        reduced = "" if decoded is None or decoded == (width, height) else f", decoded at {decoded[0]}x{decoded[1]},"
        msg = (
            f"image too large: {width}x{height}{reduced} = {pixels:,} pixels exceeds "
            f"the limit of {max_pixels:,}; downscale it before upload"
        )
        raise ImageDecodeError(msg)


@cache
def _registered(formats: tuple[str, ...]) -> tuple[str, ...]:
    """The formats Pillow has a plugin for here (MPO and WebP register only once all plugins load)."""
    Image.init()
    return tuple(name for name in formats if name in Image.OPEN)


def exif_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation tag, read without decoding pixels (a PNG's only from an eXIf chunk before its data).

    None for a HEIF: libheif turns it upright by its irot/imir boxes as it decodes, and the standard says
    its EXIF orientation is then ignored (pi-heif resets the tag, but Pillow would fall back to XMP's).
    None for a TIFF too: Pillow (13) turns it by its orientation tag as it loads it; turning it again put
    the overlay on its side and scored other tiles.
    """
    if image.format in (heif.FORMAT, "TIFF"):  # Pillow turns a TIFF upright as it loads it, and reports that size
        return None
    if image.format == "PNG" and "exif" not in image.info:
        return None  # Pillow's getexif() would decode the whole PNG to look for a late eXIf chunk
    try:
        value = image.getexif().get(EXIF_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block must not hide the pixels
        return None
    return int(value) if isinstance(value, int) else None


def read_header(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Format, mode, size and orientation, after the same checks ``open_image`` makes; no pixel decoded.

    ``max_pixels=None`` leaves the pixel limit to the caller (``check_pixels``), who may want the header of
    an image too large to decode.
    """
    return open_header(data, max_pixels=max_pixels).header


class OpenedImage:
    """An image whose header was read and checked, not decoded yet: ``open_image(..., opened=)`` decodes it
    without parsing the header again (about a sixth of a 227 px JPEG's decoding time)."""

    def __init__(self, image: Image.Image, header: ImageHeader) -> None:
        self.header = header
        self._image: Image.Image | None = image

    def take(self) -> Image.Image:
        """The undecoded image, handed over once: whoever decodes it is the only one holding its pixels."""
        image, self._image = self._image, None
        if image is None:
            raise ValueError("this image was already handed over for decoding")
        return image


def open_header(data: bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> OpenedImage:
    """``read_header``, keeping the opened image for one later ``open_image(data, opened=...)``."""
    image = open_lazy(data, max_pixels=sys.maxsize if max_pixels is None else max_pixels)
    with decode_errors():
        decoder = decoder_bytes(image, data, jpeg_frame(data) if image.format in DRAFT_FORMATS else None)
        header = ImageHeader(image.format or "", image.mode, image.width, image.height, exif_orientation(image),
                             decoder, more_frames(image))  # fmt: skip
    return OpenedImage(image, header)


def open_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    size: tuple[int, int] | None = None,
    opened: OpenedImage | None = None,
    checked: bool = False,
) -> Image.Image:
    """Decode bytes into an upright 8-bit RGB Pillow image, resized to ``size`` (width, height as displayed).

    With ``size``, the image shrinks before it is converted or rotated, so the only full-size copy
    is the decoded one (and JPEGs are decoded at a reduced scale when ``size`` allows). Without,
    it keeps its size, except a JPEG too large to decode whole within ``max_pixels``: that one is
    decoded at the first reduction (1/2, 1/4, 1/8) within it. ``checked``: a strict libjpeg decode of
    these bytes already ran (jpeg_fast.py), so the damage check is not repeated.

    Raises:
        ImageDecodeError: with a reason a person can act on (a JPEG whose picture libjpeg reports
            partly lost among them: jpeg_damage.py).
    """
    image = opened.take() if opened is not None else open_lazy(data, max_pixels=max_pixels)
    if image.format in DRAFT_FORMATS and not checked:
        check_intact(data)  # Pillow would paint a damaged stretch grey without a word
    if image.format == heif.FORMAT:
        heif.check_items(data, max_pixels)  # its tiles, against this decode's limit (the header's may be none)
    with decode_errors():
        orientation = opened.header.orientation if opened is not None else exif_orientation(image)
        stored = None if size is None else stored_size(size, orientation)
        target = stored if stored is not None else _reduction_within(image, max_pixels)
        width, height = image.size  # draft() changes image.size to the reduced size
        scale = draft_scale(width, height, target) if target is not None and image.format in DRAFT_FORMATS else 1
        # What the decode holds, whatever limit the header met (a JPEG's allows a reduced decode).
        check_pixels(width, height, max_pixels, decoded=(-(-width // scale), -(-height // scale)))
        if scale > 1:
            image.draft(None, target)
            check_pixels(width, height, max_pixels, decoded=image.size)  # what draft() set up: checked, not assumed
        image = to_8bit(load(image, data))
        if stored is not None and image.size != stored:
            if image.mode not in RESIZED_AS_DECODED:
                # Alpha is dropped before resampling, as for an image scored at full size.
                image = rgb_reduced(image, reduce_factor(image.size, stored))
            image = image.resize(stored, Image.Resampling.BILINEAR)
        if orientation in TRANSPOSE_FOR_ORIENTATION:
            image = image.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
        return to_rgb(image)


def load(image: Image.Image, data: bytes) -> Image.Image:
    """An opened image of ``data`` decoded, a 16-bit colour one at its samples' depth (deep_colour.py); inside
    ``decode_errors`` (libheif's RuntimeErrors are reasons too)."""
    deep = deep_colour.sixteen_bit_colour(image)
    with heif.library_errors(image.format == heif.FORMAT):
        image.load()
    return deep_colour.at_its_depth(image, data) if deep else image


def _reduction_within(image: Image.Image, max_pixels: int) -> tuple[int, int] | None:
    """For a JPEG too large to decode whole: the size to ask ``draft`` for, to decode it at the first
    scale within ``max_pixels`` (None: decoded whole, or too large even at 1/8, which is refused)."""
    width, height = image.size
    if image.format not in DRAFT_FORMATS or width * height <= max_pixels:
        return None
    scale = next((scale for scale in (2, 4, 8) if -(-width // scale) * -(-height // scale) <= max_pixels), None)
    return None if scale is None else (max(1, width // scale), max(1, height // scale))


# Up to this much larger than the input, the centre is cropped instead of resampling: a
# 227x227 patch loses a pixel or two at the border, and the cut costs nothing, where a
# bilinear resize costs more than decoding the JPEG.
NEAR_SIZE_SLACK = 1.05


def centre_crop(width: int, height: int, size: int) -> tuple[int, int, int, int] | None:
    """The centred ``size`` x ``size`` box of an image nearly that size (None: it must be resized)."""
    if size <= width <= size * NEAR_SIZE_SLACK and size <= height <= size * NEAR_SIZE_SLACK:
        left, top = (width - size) // 2, (height - size) // 2
        return left, top, left + size, top + size
    return None


def fit_to_input(image: Image.Image, size: int) -> Image.Image:
    """A ``size`` x ``size`` view of the image: centre crop when nearly that size, else bilinear resize."""
    if image.size == (size, size):
        return image
    box = centre_crop(*image.size, size)
    return image.crop(box) if box else image.resize((size, size), Image.Resampling.BILINEAR)


def fit_array_to_input(pixels: np.ndarray, size: int) -> np.ndarray:
    """``fit_to_input`` for (height, width, 3) uint8 pixels: a slice when nearly that size, else Pillow's resize."""
    height, width = pixels.shape[:2]
    if (width, height) == (size, size):
        return pixels
    box = centre_crop(width, height, size)
    if box is None:
        return np.asarray(fit_to_input(Image.fromarray(pixels), size), dtype=np.uint8)
    left, top, right, bottom = box
    return pixels[top:bottom, left:right]


def resize_pixels(image: Image.Image, size: int) -> np.ndarray:
    """The model's input: ``size`` x ``size`` uint8 HxWx3 pixels."""
    return np.asarray(fit_to_input(image, size), dtype=np.uint8)


def decode_to_array(data: bytes, size: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes to a ``size`` x ``size`` x 3 uint8 array, the model's input."""
    return resize_pixels(open_image(data, max_pixels=max_pixels), size)


def difference_hash(image: Image.Image, hash_size: int = 8) -> str:
    """Perceptual dHash: near-identical images (re-encoded, resized) get the same value."""
    small = image.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.int16)
    value = int("".join("1" if bit else "0" for bit in (pixels[:, 1:] > pixels[:, :-1]).flatten()), 2)
    return f"{value:0{hash_size * hash_size // 4}x}"
