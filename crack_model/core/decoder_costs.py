"""What a decoder holds beyond Pillow's image of the picture, read from the header of an opened image.

The decoding budget (``ImageHeader.peak_bytes``) and the pixel limit count the picture; some decoders
hold far more, whatever size the picture is wanted at. Measured with small hostile files (peak RSS):

- a TIFF is decoded a whole tile at a time: a 300x200 TIFF declaring one 26624x26624 tile (2 MB)
  held 2.1 GB. Its tiles count, and a tile over the pixel limit is refused;
- a progressive JPEG's decoder keeps every coefficient of the full picture (64 of 2 bytes per 8x8
  block and component), even for a 1/8-scale decode: a 144 MP one (1.7 MB) held 1.06 GB where its
  baseline twin held 0.39 GB. It counts, and one over the pixel limit at full size is refused;
- libwebp decodes into canvases of its own: a flat 80 MP WebP (3 KB) held 1.32 GB, 0.75 GB over
  Pillow's image (about 10 bytes a pixel are counted);
- HEIF: libheif's planes (heif.py).
"""

from __future__ import annotations

from PIL import Image

from crack_model.core import deep_colour, heif
from crack_model.core.errors import ImageDecodeError
from crack_model.core.file_signatures import JpegFrame

TILE_WIDTH_TAG, TILE_LENGTH_TAG = 322, 323
NEW_SUBFILE_TYPE_TAG = 254  # bit 0: "a reduced-resolution version of another image in this file"
PAGES_LOOKED_AT = 16  # a TIFF's pages read for one that is not a preview (one seek each)
WEBP_BYTES_PER_PIXEL = 10
COEFFICIENT_BYTES = 2  # per pixel and component, at full size


def check_decoder(image: Image.Image, frame: JpegFrame | None, max_pixels: int) -> None:
    """Refuse what would make the decoder hold more than ``max_pixels`` pixels, whatever the picture's size."""
    if image.format == "TIFF" and (tile := _tiff_tile(image)) and tile[0] * tile[1] > max_pixels:
        raise ImageDecodeError(
            f"image too large to decode: its TIFF tiles are {tile[0]}x{tile[1]} = {tile[0] * tile[1]:,} pixels, over "
            f"the limit of {max_pixels:,} ({image.width}x{image.height} picture); re-save it untiled"
        )
    if frame is not None and frame.progressive and image.width * image.height > max_pixels:
        raise ImageDecodeError(
            f"image too large: a progressive JPEG of {image.width}x{image.height} = {image.width * image.height:,} "
            f"pixels, over the limit of {max_pixels:,} (its decoder holds the whole picture at any scale); "
            "downscale it, or save it as a baseline JPEG"
        )


def decoder_bytes(image: Image.Image, data: bytes, frame: JpegFrame | None) -> int:
    """Bytes the decoder holds beside Pillow's image (what ``ImageHeader.peak_bytes`` adds)."""
    if image.format == heif.FORMAT:
        return heif.decoder_bytes(image, data)
    if image.format == "WEBP":
        return WEBP_BYTES_PER_PIXEL * image.width * image.height
    if frame is not None and frame.progressive:
        return COEFFICIENT_BYTES * frame.components * image.width * image.height
    # Decoded twice when its data uses 12 or 14 bits (deep_colour.py), and a TIFF's tile buffer besides.
    deep = deep_colour.sixteen_bit_colour(image)
    twice = deep_colour.EXTRA_BYTES_PER_SAMPLE * len(image.getbands()) * image.width * image.height if deep else 0
    if image.format == "TIFF" and (tile := _tiff_tile(image)):
        sample = 2 if deep or image.mode.endswith(("16", "16B", "16L")) else 1
        return twice + tile[0] * tile[1] * len(image.getbands()) * sample
    return twice


def more_frames(image: Image.Image) -> bool:
    """Does the file hold more pictures than the one scored (a multi-page TIFF, an animated GIF, WebP or PNG)?

    A camera JPEG's second picture (MPO: a preview or a depth map) is no other photo, nor is a TIFF page marked
    as a reduced-resolution version of another (scanners' and cameras' previews): neither is counted.
    """
    if image.format in ("JPEG", "MPO"):
        return False
    try:
        if image.format == "TIFF":
            return _tiff_has_another_picture(image)
        return bool(getattr(image, "is_animated", False))
    except Exception:  # a broken second frame: the first is what is scored anyway
        return False


def _tiff_has_another_picture(image: Image.Image) -> bool:
    """A page after the first that is not a preview (bit 0 of NewSubfileType), among the first few."""
    if not getattr(image, "is_animated", False):
        return False
    try:
        for page in range(1, PAGES_LOOKED_AT):
            try:
                image.seek(page)
            except EOFError:
                return False
            subfile_type = image.tag_v2.get(NEW_SUBFILE_TYPE_TAG)  # type: ignore[attr-defined]
            if not (isinstance(subfile_type, int) and subfile_type & 1):
                return True
        return False
    finally:
        image.seek(0)


def _tiff_tile(image: Image.Image) -> tuple[int, int] | None:
    tags = getattr(image, "tag_v2", {})
    width, length = tags.get(TILE_WIDTH_TAG), tags.get(TILE_LENGTH_TAG)
    return (width, length) if isinstance(width, int) and isinstance(length, int) else None
