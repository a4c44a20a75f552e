"""What bytes are, from their first bytes: the reason for a file none of the accepted decoders opens.

An upload that is not an image we decode still gets a row that says what it is (a PDF, a PSD,
a TGA) and what to upload instead, without handing its bytes to a parser we do not
accept: header parsers of rare formats have had their own bugs. A file that starts like an
accepted format but that Pillow cannot open is a damaged photo, not a wrong format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from crack_model.core.errors import REUPLOAD, ImageDecodeError

ACCEPTED = "JPEG, HEIC, PNG, TIFF, WebP, BMP or GIF"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNG signature after a text-mode copy (FTP's ASCII mode) changed line ends: LF to CRLF, CRLF to LF. The
# signature holds both so that this shows at once; the rest of the file is changed the same way.
TEXT_MODE_PNG_SIGNATURES = (b"\x89PNG\r\r\n\x1a\r\n", b"\x89PNG\n\x1a\n")
# First bytes of formats people upload by mistake, to name them in the reason without handing the
# bytes to a parser we do not accept (header parsers of rare formats have had their own bugs).
SIGNATURES = (
    (0, b"%PDF", "PDF document"),
    (0, b"%!PS", "EPS"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS"),
    (0, b"8BPS", "PSD"),
    (0, b"\x01\xda", "SGI"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"icns", "ICNS"),
    (0, b"DDS ", "DDS"),
    (0, b"qoif", "QOI"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
    (0, b"\xffO\xffQ", "JPEG2000"),
    (0, b"Image type:", "IM"),
    (0, b"SIMPLE  =", "FITS"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypavis", "AVIF"),
)
NOT_IMAGES = ("PDF document",)
# Camera raw files. Most are TIFF inside, so they are named before a "damaged TIFF" is; Pillow even opens
# some of them as a TIFF, whose first picture is a small preview (raw_refusal checks those).
RAW_SIGNATURES = (
    (0, b"II*\x00\x10\x00\x00\x00CR", "CR2 (camera raw)"),
    (4, b"ftypcrx ", "CR3 (camera raw)"),
    (0, b"FUJIFILMCCD-RAW", "RAF (camera raw)"),
    (0, b"IIRO", "ORF (camera raw)"),
    (0, b"IIRS", "ORF (camera raw)"),
    (0, b"MMOR", "ORF (camera raw)"),
    (0, b"IIU\x00", "RW2 (camera raw)"),
)
DNG_VERSION_TAG = 50706
NEW_SUBFILE_TYPE_TAG = 254  # bit 0: "a reduced-resolution version of another image in this file"
SUB_IFDS_TAG = 330
PHOTOMETRIC_TAG = 262
RAW_PHOTOMETRICS = frozenset((32803, 34892))  # colour filter array (a sensor's mosaic), linear raw
COMPRESSION_TAG = 259
RAW_COMPRESSIONS = frozenset((32767, 34713, 65535))  # Sony, Nikon and Pentax raw
MAX_TIFF_TAGS = 1000
# The first bytes of the accepted formats: a file that starts like one but that Pillow cannot
# open is a damaged photo (cut short in upload, say), and "upload JPEG" would be the wrong advice.
ACCEPTED_SIGNATURES = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, PNG_SIGNATURE, "PNG"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WebP"),
    (0, b"GIF8", "GIF"),
    # HEIF files start with an ftyp box; its major brand says HEIC (HEVC inside) or the generic HEIF.
    *(
        (4, b"ftyp" + brand, "HEIC")
        for brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs")
    ),
    *((4, b"ftyp" + brand, "HEIF") for brand in (b"mif1", b"msf1")),
)
TGA_FOOTER = b"TRUEVISION-XFILE.\x00"
# JPEG frame markers (SOFn) of arithmetic coding, and of Huffman coding (the JPEGs cameras write).
ARITHMETIC_FRAMES = frozenset((0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
HUFFMAN_FRAMES = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7))
PROGRESSIVE_FRAMES = frozenset((0xC2, 0xC6))
LOSSLESS_FRAMES = frozenset((0xC3, 0xC7))
# Sample precisions a frame can state (ITU T.81): 8 or 12 bits for DCT coding (16 in libjpeg-turbo's
# extensions), 2 to 16 for lossless. Any other is a damaged header, not a format to export differently.
DCT_PRECISIONS = frozenset((8, 12, 16))
LOSSLESS_PRECISIONS = frozenset(range(2, 17))
SCAN_OR_IMAGE_END = frozenset((0xDA, 0xD8, 0xD9))  # SOS, SOI, EOI: no frame header before them
STANDALONE_MARKERS = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM and RST0-7 have no length
SKIPPED_WHEN_SHORT = frozenset((*range(0xE0, 0xF0), 0xFE))  # APPn and COM of length 0 or 1: libjpeg reads on
# Segments (JPEG) or chunks (PNG) before the picture: cameras write a few dozen; an ICC profile split in
# 64 KB pieces a few more.
MAX_SEGMENTS = 1_000
FILL_BYTES = re.compile(rb"\xff+")
MAX_FILL_BYTES = 65_536


class FormatNotAcceptedError(ImageDecodeError):
    """An image in a format we do not decode; ``format_name`` says which (None if unknown)."""

    def __init__(self, message: str, format_name: str | None = None) -> None:
        super().__init__(message)
        self.format_name = format_name


def refusal(data: bytes) -> ImageDecodeError:
    """The error for bytes none of the allowed decoders recognises, naming the format when we know it."""
    if (raw := _signature(data, RAW_SIGNATURES)) is not None:
        return _raw_error(raw)
    damaged = _signature(data, ACCEPTED_SIGNATURES)
    if damaged == "TIFF" and (raw := _raw_tiff(*_first_tiff_picture(data))) is not None:
        return _raw_error(raw)  # a raw picture Pillow cannot decode: re-uploading would not help
    if data.startswith(TEXT_MODE_PNG_SIGNATURES):
        return ImageDecodeError(
            "PNG damaged in transfer (text mode): a copy in text (ASCII) mode changed its line-end bytes; "
            "re-upload it in binary mode"
        )
    if damaged is not None:
        return ImageDecodeError(
            f"damaged {damaged} file: its header cannot be read (cut short or corrupt); re-upload the photo"
        )
    name = _signature(data, SIGNATURES)
    if name is None and data.endswith(TGA_FOOTER):
        name = "TGA"
    if name is None and len(data) > 3 and data[0] == 0x0A and data[1] in (0, 2, 3, 4, 5) and data[2] == 1:
        name = "PCX"
    if name is None and len(data) > 3 and data[:1] == b"P" and data[1:2] in b"1234567" and data[2:3].isspace():
        name = "PPM"
    if name is None:
        return FormatNotAcceptedError(f"not an image, or in a format we do not know: upload {ACCEPTED}")
    if name in NOT_IMAGES:
        return FormatNotAcceptedError(f"not an image (a {name}): upload {ACCEPTED}", name)
    return FormatNotAcceptedError(f"format {name} is not accepted: upload {ACCEPTED}", name)


def accepted_format(data: bytes) -> str | None:
    """The accepted format ``data`` starts like ("JPEG", "PNG", "TIFF", "WebP", "GIF", "HEIC", "HEIF"), else None."""
    return _signature(data, ACCEPTED_SIGNATURES)


def raw_refusal(data: bytes, tags: Mapping[int, object], more_pictures: bool) -> FormatNotAcceptedError | None:
    """The error for a camera raw file that Pillow opened as a TIFF, else None.

    ``tags``: its first picture's; ``more_pictures``: the file has another picture after it, or under it.
    Pillow would decode the first picture of a DNG or a NEF: a small preview, or nothing it can decode.
    Scoring a 256-px preview as the photo would miss its cracks without a word.
    """
    name = _signature(data, RAW_SIGNATURES) or _raw_tiff(tags, more_pictures)
    return None if name is None else _raw_error(name)


def _raw_tiff(tags: Mapping[int, object], more_pictures: bool) -> str | None:
    """The name of a TIFF-based raw file from its first picture's tags, else None."""
    if DNG_VERSION_TAG in tags:
        return "DNG (camera raw)"
    subfile_type = tags.get(NEW_SUBFILE_TYPE_TAG)
    preview = isinstance(subfile_type, int) and subfile_type & 1 and (more_pictures or SUB_IFDS_TAG in tags)
    if preview or tags.get(PHOTOMETRIC_TAG) in RAW_PHOTOMETRICS or tags.get(COMPRESSION_TAG) in RAW_COMPRESSIONS:
        return "camera raw (TIFF-based)"
    return None


def _raw_error(name: str) -> FormatNotAcceptedError:
    return FormatNotAcceptedError(
        f"format {name} is not accepted: export the photo as JPEG or HEIC (in the camera or a raw converter) "
        "and upload that",
        name,
    )


def _first_tiff_picture(data: bytes) -> tuple[dict[int, int | None], bool]:
    """The tags of a TIFF's first picture as read from its bytes (values of single numbers only), and whether
    another picture follows: for a file Pillow could not open."""
    order: Literal["little", "big"] = "little" if data[:2] == b"II" else "big"
    offset = int.from_bytes(data[4:8], order)
    count = min(int.from_bytes(data[offset : offset + 2], order), MAX_TIFF_TAGS)
    tags: dict[int, int | None] = {}
    for index in range(count):
        entry = data[offset + 2 + 12 * index : offset + 14 + 12 * index]
        if len(entry) < 12:
            return tags, False
        tag, kind, values = (int.from_bytes(entry[a:b], order) for a, b in ((0, 2), (2, 4), (4, 8)))
        single = values == 1 and kind in (3, 4)  # SHORT or LONG
        tags[tag] = int.from_bytes(entry[8:10] if kind == 3 else entry[8:12], order) if single else None
    following = data[offset + 2 + 12 * count : offset + 6 + 12 * count]
    return tags, int.from_bytes(following, order) != 0 if len(following) == 4 else False


@dataclass(frozen=True)
class JpegFrame:
    """A JPEG's frame header (SOFn): how its picture is coded."""

    marker: int
    precision: int
    components: int

    @property
    def progressive(self) -> bool:
        return self.marker in PROGRESSIVE_FRAMES


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """A JPEG's frame header, read before any decoder parses the file; None where the walk cannot follow.

    Walks the markers up to the frame header as libjpeg reads them (stray and fill bytes skipped, restart
    markers without a length); anything it cannot follow is left to the decoders.

    Raises:
        FormatNotAcceptedError: arithmetic coding (Pillow's libjpeg cannot decode it and simplejpeg's can, so
            validation and scoring would disagree; no camera writes it), or samples of 12 or 16 bits
            (Pillow cannot decode them: "damaged" would be the wrong advice).
        ImageDecodeError: a precision no JPEG has (0, 9, 255: a damaged byte); over ``MAX_SEGMENTS`` segments
            before the frame (Pillow keeps each one in lists as it opens the file: 10 million empty comments,
            40 MB, held 786 MB and took 20 s), or over ``MAX_FILL_BYTES`` fill bytes (Pillow reads them one by one).
    """
    position, segments, fill = 2, 0, 0  # after SOI
    while (position := data.find(b"\xff", position)) != -1 and position + 2 <= len(data):
        # Fill bytes (0xFF before a marker) are allowed and are no segment: skipped in one step, up to a bound
        # (Pillow reads them one by one: 40 MB of them cost 25 s of CPU to open and decode a 64x48 photo).
        run_end = FILL_BYTES.match(data, position).end()  # type: ignore[union-attr]  # matches at an 0xFF
        if (fill := fill + run_end - position - 1) > MAX_FILL_BYTES:
            raise ImageDecodeError(_flooded("JPEG", "fill bytes", MAX_FILL_BYTES, "a handful"))
        position = run_end - 1
        if position + 2 > len(data):
            return None
        marker = data[position + 1]
        if (segments := segments + 1) > MAX_SEGMENTS:
            raise ImageDecodeError(_flooded("JPEG", "metadata segments"))
        if marker == 0x00 or marker in STANDALONE_MARKERS:  # a stuffed zero, RSTn or TEM
            position += 2
            continue
        if marker in ARITHMETIC_FRAMES:
            raise FormatNotAcceptedError(
                "format arithmetic-coded JPEG is not accepted: re-save it as a standard (Huffman-coded) JPEG",
                "arithmetic-coded JPEG",
            )
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in HUFFMAN_FRAMES:
            return _frame(marker, data[position + 4 : position + 2 + length])
        if marker in SCAN_OR_IMAGE_END:
            return None
        if length < 2 and marker not in SKIPPED_WHEN_SHORT:
            return None  # libjpeg stops at such a marker: the decoders say why
        position += 2 + max(length, 2)
    return None


def _frame(marker: int, header: bytes) -> JpegFrame | None:
    if len(header) < 6:
        return None  # cut short: the decoders say why
    precision, components = header[0], header[5]
    if precision not in (LOSSLESS_PRECISIONS if marker in LOSSLESS_FRAMES else DCT_PRECISIONS):
        raise ImageDecodeError(
            f"damaged JPEG header: its frame says {precision}-bit samples (a JPEG has 8, 12 or 16); {REUPLOAD}"
        )
    if precision != 8:
        raise FormatNotAcceptedError(
            f"format {precision}-bit JPEG is not accepted: export the photo as an 8-bit JPEG", f"{precision}-bit JPEG"
        )
    return JpegFrame(marker, precision, components)


def png_refusal(data: bytes) -> ImageDecodeError | None:
    """The error for a PNG of over ``MAX_SEGMENTS`` chunks before its pixel data (Pillow keeps the chunks it
    does not know in lists as it opens the file: 4 million empty ones, 48 MB, held 559 MB), else None."""
    position = len(PNG_SIGNATURE)
    for _ in range(MAX_SEGMENTS):
        header = data[position : position + 8]
        if len(header) < 8 or header[4:8] in (b"IDAT", b"IEND"):
            return None
        position += 12 + int.from_bytes(header[:4], "big")
    return ImageDecodeError(_flooded("PNG", "chunks"))


def _flooded(format_name: str, parts: str, most: int = MAX_SEGMENTS, usual: str = "a few dozen") -> str:
    return (
        f"a {format_name} with over {most:,} {parts} before its picture is not accepted (cameras write {usual}): "
        "re-save the photo"
    )


def _signature(data: bytes, signatures: tuple[tuple[int, bytes, str], ...]) -> str | None:
    return next((name for offset, magic, name in signatures if data[offset : offset + len(magic)] == magic), None)
