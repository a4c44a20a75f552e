"""HEIC, what iPhones save by default: pi-heif (libheif with libde265, decoder only) inside Pillow.

What imaging.py needs and Pillow cannot say, read from the file's boxes (ISO/IEC 23008-12) before
pi-heif or libheif see them:

* **Item types that are not text are refused.** pi-heif 1.4 crashes the whole process (a
  segmentation fault, not an exception) on a metadata item whose type or content type is not UTF-8:
  it hands libheif's bytes to ``PyUnicode_FromString`` and uses the NULL it gets back (pillow_heif
  PR #478, fixed upstream after the last pi-heif release). A 2 KB upload must not take down a night.
* **What is decoded, not what is shown.** A photo stored as a grid (an iPhone's: 512-px tiles) or an
  overlay is decoded tile by tile at each tile's own size, and a crafted file can declare a small
  picture made of huge tiles. ``coded_pixels`` sums the tiles, so the pixel limit and the memory
  estimate count what libheif decodes; references that loop or fan out (libheif follows every path
  of them when it opens a file) are refused before it does.
* **What decoding holds.** libheif keeps its colour planes (2 bytes a sample above 8 bits, a turned
  copy when irot/imir turn the photo) and an interleaved picture that Pillow then copies.

A box this walk cannot follow is left to libheif, which refuses the file with an error of its own
(``library_errors`` turns its RuntimeErrors into reasons).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pi_heif
from PIL import Image

from crack_model.core.errors import REUPLOAD, ImageDecodeError
from crack_model.core.file_signatures import ACCEPTED, FormatNotAcceptedError

FORMAT = "HEIF"  # Pillow's name for what pi-heif opens (HEIC is HEIF with HEVC inside)
# libheif turns the photo upright as it decodes it (irot/imir) and pi-heif resets its EXIF orientation.
# Thumbnails, depth maps and auxiliary images (an iPhone's HDR gain map) are never read. One thread
# per image: scoring and validation already decode on pools sized to the cores.
pi_heif.register_heif_opener(decode_threads=1, thumbnails=False, depth_images=False, aux_images=False)
# Colour planes per pixel for the chroma subsampling pi-heif reports (none for a grey photo).
PLANES = {420: 1.5, 422: 2.0, 444: 3.0}
GREY_MODES = ("L", "LA", "I;16")
DERIVED = frozenset((b"grid", b"iovl", b"iden"))  # items decoded from the items they reference (dimg)
MAX_DERIVATION = 4  # a derived item may reference derived ones; no camera nests them
# libheif follows every path of references from the primary item when it opens a file (~90 ns each): an
# iPhone grid has 49 paths, a 16384-px photo of 512-px tiles 1,025; a few KB of crafted references, billions.
MAX_REFERENCE_PATHS = 100_000


@contextmanager
def library_errors(active: bool = True) -> Iterator[None]:
    """libheif's errors come as RuntimeError: reasons, not faults of ours (elsewhere one is ours: ``active``)."""
    try:
        yield
    except RuntimeError as error:
        if not active:
            raise
        if "has not been built in" in str(error):  # AV1 (AVIF), JPEG or another codec inside a generic HEIF
            name = "HEIF of a codec other than HEVC"
            raise FormatNotAcceptedError(f"format {name} is not accepted: upload {ACCEPTED}", name) from None
        raise ImageDecodeError(f"corrupt or truncated image: {str(error).strip()[:300]}; {REUPLOAD}") from None


def is_heif(data: bytes) -> bool:
    """Starts with an ftyp box, as every file pi-heif opens does."""
    return data[4:8] == b"ftyp"


@dataclass
class _Items:
    """What the meta box says of its items: types, the primary one, references, sizes."""

    types: dict[int, bytes] = field(default_factory=dict)
    primary: int | None = None
    derived_from: dict[int, list[int]] = field(default_factory=dict)  # dimg references, repeats kept
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # from each item's first ispe property
    associated: set[int] = field(default_factory=set)  # items whose properties were listed (ipma)


def check_items(data: bytes, max_pixels: int) -> None:
    """Refuse a HEIF whose item list would crash pi-heif, hang libheif, or decode more than ``max_pixels``.

    Raises:
        ImageDecodeError: naming what is wrong and what to do.
    """
    coded = coded_pixels(data)
    if coded is not None and coded > max_pixels:
        raise ImageDecodeError(
            f"image too large: its tiles hold {coded:,} pixels to decode, which exceeds the limit of "
            f"{max_pixels:,}; downscale it before upload"
        )


def coded_pixels(data: bytes) -> int | None:
    """Pixels libheif decodes for a primary picture made of tiles (a grid, an overlay), summed; None for a
    picture coded whole, which imaging.check_pixels counts as it counts every other format's.

    Raises:
        ImageDecodeError: the item list is not one libheif could read safely (see _read_items).
    """
    items = _read_items(data)
    if items.primary is None or items.types.get(items.primary) not in DERIVED:
        return None
    return _tiles(items, items.primary, {})


def decoder_bytes(image: Image.Image, data: bytes) -> int:
    """Bytes libheif holds while decoding an opened HEIF, beside Pillow's image of it.

    Its planes twice (decoded, and turned when irot/imir turn it) at the tiles' size, and its
    interleaved picture, at 1 byte a sample up to 8 bits and 2 above. Measured on 3000x2000 photos,
    a process grew by less (tests/unit/core/test_phone_formats.py): 8-bit 4:2:0, 10-bit 4:2:2 and
    4:4:4, alpha, turned, a grid.
    """
    sample = 1 if int(image.info.get("bit_depth") or 8) <= 8 else 2
    chroma = image.info.get("chroma")
    planes = PLANES.get(int(chroma), 3.0) if chroma else 1.0 if image.mode in GREY_MODES else 3.0
    planes += 1 if image.mode in ("RGBA", "LA") else 0
    shown = image.width * image.height
    coded = max(coded_pixels(data) or 0, shown)
    return math.ceil((2 * planes * coded + Image.getmodebands(image.mode) * shown) * sample)


def _tiles(items: _Items, item: int, known: dict[int, int]) -> int:
    """Pixels decoded for ``item``: its own size, or its parts' (each part as often as it is referenced)."""
    if item not in known:
        if items.types.get(item) in DERIVED:
            known[item] = sum(_tiles(items, part, known) for part in items.derived_from.get(item, []))
        elif (size := items.sizes.get(item)) is not None:
            known[item] = size[0] * size[1]
        else:  # libheif would fail on it only when decoding reached it
            raise _damaged("a tile without a size (no ispe property)")
    return known[item]


def _read_items(data: bytes) -> _Items:
    """The item list as libheif reads it, refused where a reading of ours and libheif's could differ.

    libheif reads the last top-level meta box and the first pitm, iinf, iref and ipco in it, and merges
    every ipma. No camera writes two of them, so a file that does is refused instead of read twice.
    """
    metas = [(start, end) for kind, start, end in _boxes(data, 0, len(data)) if kind == b"meta"]
    items = _Items()
    if not metas:
        return items
    if len(metas) > 1:
        raise _damaged(f"{len(metas)} meta boxes")
    start, end = metas[0]
    seen: set[bytes] = set()
    for child, payload, child_end in _boxes(data, start + 4, end):  # meta is a full box
        if child in _READERS:
            if child in seen:
                raise _damaged(f"two {child.decode('ascii')} boxes")
            seen.add(child)
            _READERS[child](data, payload, child_end, items)
    _check_references(items)
    return items


def _check_references(items: _Items) -> None:
    """Refuse references that loop, nest deeper than a camera's, or fan out so that libheif's own check of
    them (it follows every path from the primary item, whatever the items' types) would take hours."""
    if items.primary is None:
        return
    paths: dict[int, int] = {}  # how many paths libheif follows from each item
    heights: dict[int, int] = {}  # the longest chain of references below each item

    def visit(item: int, path: list[int]) -> int:
        if item in path:
            raise _damaged("pictures that reference themselves")
        if item not in paths:
            parts = items.derived_from.get(item, [])
            paths[item] = 1 + sum(visit(part, [*path, item]) for part in parts)
            heights[item] = 1 + max((heights[part] for part in parts), default=0)
            if paths[item] > MAX_REFERENCE_PATHS:
                raise _damaged(f"more than {MAX_REFERENCE_PATHS:,} paths of references between its pictures")
        if len(path) + heights[item] > MAX_DERIVATION + 1:  # checked on every way in, not only the first
            raise _damaged(f"pictures derived from pictures more than {MAX_DERIVATION} deep")
        return paths[item]

    visit(items.primary, [])


def _read_iinf(data: bytes, payload: int, end: int, items: _Items) -> None:
    entries = payload + 4 + (2 if data[payload : payload + 1] == b"\0" else 4)  # version, flags, entry count
    for kind, start, box_end in _boxes(data, entries, end):
        if kind != b"infe" or data[start : start + 1] in (b"", b"\0", b"\1"):  # versions 0-1 have no item type
            continue
        wide = data[start] >= 3
        position = start + 4
        item = _number(data, position, 4 if wide else 2)
        position += (4 if wide else 2) + 2  # item_ID, protection index
        item_type = data[position : position + 4]
        if not all(0x20 <= byte < 0x7F for byte in item_type):
            raise _damaged(f"an item of type {item_type!r}")
        if item is not None:
            items.types[item] = item_type
        if item_type == b"mime":  # then its name and its content type, each ending in NUL
            name_end = data.find(b"\0", position + 4, box_end)
            if name_end != -1:
                content_end = data.find(b"\0", name_end + 1, box_end)
                content_type = data[name_end + 1 : content_end if content_end != -1 else box_end]
                try:
                    content_type.decode("utf-8")
                except UnicodeDecodeError:
                    raise _damaged(f"a metadata item of content type {content_type[:20]!r}") from None


def _read_pitm(data: bytes, payload: int, end: int, items: _Items) -> None:
    items.primary = _number(data, payload + 4, 2 if data[payload : payload + 1] == b"\0" else 4)


def _read_iref(data: bytes, payload: int, end: int, items: _Items) -> None:
    width = 2 if data[payload : payload + 1] == b"\0" else 4
    for kind, start, box_end in _boxes(data, payload + 4, end):
        if kind != b"dimg":
            continue
        source = _number(data, start, width)
        count = _number(data, start + width, 2) or 0
        first = start + width + 2
        targets = [
            _number(data, first + index * width, width) for index in range(min(count, (box_end - first) // width))
        ]
        if source is not None:
            items.derived_from.setdefault(source, []).extend(t for t in targets if t is not None)


def _read_iprp(data: bytes, payload: int, end: int, items: _Items) -> None:
    sizes: dict[int, tuple[int, int]] = {}  # ispe properties by their 1-based index in ipco
    associations = []
    properties_seen = False
    for kind, start, box_end in _boxes(data, payload, end):
        if kind == b"ipco":
            if properties_seen:
                raise _damaged("two ipco boxes")
            properties_seen = True
            for index, (property_kind, property_start, _) in enumerate(_boxes(data, start, box_end), start=1):
                if property_kind == b"ispe":
                    width, height = _number(data, property_start + 4, 4), _number(data, property_start + 8, 4)
                    if width is not None and height is not None:
                        sizes[index] = (width, height)
        elif kind == b"ipma":
            associations.append((start, box_end))
    for start, box_end in associations:  # libheif merges them all
        _read_ipma(data, start, box_end, sizes, items)


def _read_ipma(data: bytes, start: int, end: int, sizes: dict[int, tuple[int, int]], items: _Items) -> None:
    version, flags = _number(data, start, 1), _number(data, start, 4)
    if version is None or flags is None:
        return
    item_width, index_width = 2 if version < 1 else 4, 2 if flags & 1 else 1
    position = start + 8  # version, flags, entry count
    while position + item_width < end and (item := _number(data, position, item_width)) is not None:
        if item in items.associated:  # libheif takes the first list; no camera writes two
            raise _damaged("two lists of properties for one picture")
        items.associated.add(item)
        count = _number(data, position + item_width, 1) or 0
        position += item_width + 1
        for _ in range(count):
            if position + index_width > end:
                return
            index = (_number(data, position, index_width) or 0) & (0x7FFF if index_width == 2 else 0x7F)
            position += index_width
            if index in sizes and item not in items.sizes:  # libheif takes the first size
                items.sizes[item] = sizes[index]


_READERS = {b"iinf": _read_iinf, b"pitm": _read_pitm, b"iref": _read_iref, b"iprp": _read_iprp}


def _number(data: bytes, position: int, width: int) -> int | None:
    field_bytes = data[position : position + width]
    return int.from_bytes(field_bytes, "big") if len(field_bytes) == width else None


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
