"""HEIC, what iPhones save by default: pi-heif (libheif with libde265, decoder only) inside Pillow.

Three things the rest of imaging.py needs and Pillow cannot say:

* **Its item list is checked before libheif sees it.** pi-heif 1.4 crashes the whole process
  (a segmentation fault, not an exception) on an item whose type or name is not text: it hands
  libheif's bytes to ``PyUnicode_FromString`` and uses the NULL it gets back (pillow_heif PR #478,
  fixed upstream after the last pi-heif release). A 2 KB upload must not take down a night, so
  ``check_item_names`` refuses such a file from its boxes, as a damaged photo.
* **What decoding holds.** libheif keeps its colour planes (at 2 bytes a sample above 8 bits, a
  turned copy when irot/imir turn the photo) and an interleaved picture, which Pillow then copies:
  ``decoder_bytes`` counts them from the header, before anything is decoded.
* **libheif's own errors** arrive as RuntimeError and ValueError; imaging.decode_errors turns them
  into reasons.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pi_heif
from PIL import Image

from crack_model.core.errors import ImageDecodeError

FORMAT = "HEIF"  # Pillow's name for what pi-heif opens (HEIC is HEIF with HEVC inside)
# libheif turns the photo upright as it decodes it (irot/imir) and pi-heif resets its EXIF orientation.
# Thumbnails, depth maps and auxiliary images (an iPhone's HDR gain map) are never read. One thread
# per image: scoring and validation already decode on pools sized to the cores.
pi_heif.register_heif_opener(decode_threads=1, thumbnails=False, depth_images=False, aux_images=False)
# Colour planes per pixel for the chroma subsampling pi-heif reports (400: grey).
PLANES = {400: 1.0, 420: 1.5, 422: 2.0, 444: 3.0}


def is_heif(data: bytes) -> bool:
    """Starts with an ftyp box, as every file pi-heif opens does."""
    return data[4:8] == b"ftyp"


def check_item_names(data: bytes) -> None:
    """Refuse a HEIF whose item types, names or content types are not text (the crash above).

    Walks ``meta`` / ``iinf`` / ``infe`` and ``iprp`` / ``ipco`` / ``auxC`` as ISO/IEC 23008-12 lays them
    out; a box it cannot follow is left to libheif, which refuses it with an error of its own.

    Raises:
        ImageDecodeError: naming the box.
    """
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"meta":
            _check_texts(data, start, end)


def decoder_bytes(image: Image.Image) -> int:
    """Bytes libheif holds while decoding an opened (not yet decoded) HEIF, beside Pillow's image.

    Its planes twice (decoded, and turned when irot/imir turn it) and its interleaved picture, at 1
    byte a sample up to 8 bits and 2 above. Measured on 3000x2000 photos, a process grew by at most
    this (tests/unit/core/test_phone_formats.py): 8-bit 4:2:0, 10-bit 4:2:2 and 4:4:4, alpha, turned.
    """
    sample = 1 if int(image.info.get("bit_depth") or 8) <= 8 else 2
    alpha = 1 if image.mode in ("RGBA", "LA") else 0
    planes = PLANES.get(int(image.info.get("chroma") or 444), 3.0) + alpha
    channels = Image.getmodebands(image.mode)
    return math.ceil((2 * planes + channels) * sample * image.width * image.height)


def _check_texts(data: bytes, start: int, end: int) -> None:
    """Every infe and auxC under a meta box starting its payload at ``start``."""
    for kind, payload, box_end in _boxes(data, start + 4, end):  # meta is a full box
        if kind == b"iinf":
            entries = payload + 4 + (2 if data[payload] == 0 else 4)
            for child, child_start, child_end in _boxes(data, entries, box_end):
                if child == b"infe":
                    _check_item(data, child_start, child_end)
        elif kind == b"iprp":
            for _, properties, properties_end in _boxes(data, payload, box_end):
                for child, child_start, child_end in _boxes(data, properties, properties_end):
                    if child == b"auxC":
                        _check_strings(data, child_start + 4, child_end, "auxC", count=1)


def _check_item(data: bytes, start: int, end: int) -> None:
    version = data[start]
    if version < 2:  # item_ID, protection index, then name, content type and encoding
        _check_strings(data, start + 8, end, "infe", count=3)
        return
    position = start + 4 + (2 if version == 2 else 4) + 2  # version and flags, item_ID, protection index
    item_type = data[position : position + 4]
    if len(item_type) == 4 and not all(0x20 <= byte < 0x7F for byte in item_type):
        raise _damaged(f"an item of type {item_type!r}")
    strings = 3 if item_type == b"mime" else 2 if item_type == b"uri " else 1  # name [, content type, encoding]
    _check_strings(data, position + 4, end, "infe", count=strings)


def _check_strings(data: bytes, start: int, end: int, box: str, *, count: int) -> None:
    """Up to ``count`` NUL-terminated UTF-8 strings from ``start``."""
    position = start
    for _ in range(count):
        if position >= end:
            return
        stop = data.find(b"\0", position, end)
        text = data[position : stop if stop != -1 else end]
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise _damaged(f"a name in its {box} box that is not text ({text[:20]!r})") from None
        if stop == -1:
            return
        position = stop + 1


def _damaged(what: str) -> ImageDecodeError:
    return ImageDecodeError(f"damaged HEIC file: it holds {what}; re-upload the photo")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each box from ``start`` to ``end``; stops at one that does not fit."""
    position = start
    while position + 8 <= end:
        size, kind, header = int.from_bytes(data[position : position + 4], "big"), data[position + 4 : position + 8], 8
        if size == 1:  # a 64-bit size follows the type
            size, header = int.from_bytes(data[position + 8 : position + 16], "big"), 16
        elif size == 0:  # to the end of the enclosing box
            size = end - position
        if size < header or position + size > end:
            return
        yield kind, position + header, position + size
        position += size
