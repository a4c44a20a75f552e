"""HEIC grids built box by box, as an iPhone stores a photo (tiles of one HEVC stream each, a grid item
that lays them out): honest ones, and ones whose tiles are far bigger than the picture they declare."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator

import numpy as np
import pillow_heif
from PIL import Image


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload) + 8) + kind + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    position = start
    while position + 8 <= end:
        size = int.from_bytes(data[position : position + 4], "big")
        yield data[position + 4 : position + 8], position + 8, position + size
        position += size


def tile_stream(picture: Image.Image) -> tuple[bytes, bytes]:
    """The hvcC box and the coded picture of a one-image HEIC of ``picture``."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buffer, format="HEIF", quality=50, enc_params={"preset": "ultrafast"})
    data = buffer.getvalue()
    config = stream = b""
    for kind, start, end in _children(data, 0, len(data)):
        for child, child_start, child_end in _children(data, start + 4, end) if kind == b"meta" else ():
            if child == b"iloc":  # version 0, 4-byte base offset, one item of one extent
                base, offset, length = struct.unpack(">I2xII", data[child_start + 12 : child_start + 26])
                stream = data[base + offset : base + offset + length]
            for prop, prop_start, prop_end in _children(data, child_start, child_end) if child == b"iprp" else ():
                for entry, entry_start, entry_end in _children(data, prop_start, prop_end) if prop == b"ipco" else ():
                    if entry == b"hvcC":
                        config = data[entry_start - 8 : entry_end]
    return config, stream


def grid_heic(tiles: list[Image.Image] | Image.Image, rows: int, columns: int, size: tuple[int, int]) -> bytes:
    """A grid of ``rows`` x ``columns`` tiles declaring a picture of ``size``; one tile image stands for all
    (each grid cell then references the same coded stream, as a hostile file may)."""
    pictures = tiles if isinstance(tiles, list) else [tiles]
    streams = [tile_stream(picture) for picture in pictures]
    tile_width, tile_height = pictures[0].size
    cells = rows * columns
    tile_ids = [2 + (index % len(streams)) for index in range(cells)]
    hdlr = full_box(b"hdlr", 0, 0, bytes(4) + b"pict" + bytes(12) + b"\0")
    pitm = full_box(b"pitm", 0, 0, struct.pack(">H", 1))
    entries = [full_box(b"infe", 2, 0, struct.pack(">HH", 1, 0) + b"grid\0")]
    entries += [full_box(b"infe", 2, 1, struct.pack(">HH", 2 + i, 0) + b"hvc1\0") for i in range(len(streams))]
    iinf = full_box(b"iinf", 0, 0, struct.pack(">H", len(entries)) + b"".join(entries))
    refs = struct.pack(">HH", 1, cells) + b"".join(struct.pack(">H", tile) for tile in tile_ids)
    iref = full_box(b"iref", 0, 0, box(b"dimg", refs))
    ipco = box(
        b"ipco",
        streams[0][0]
        + full_box(b"ispe", 0, 0, struct.pack(">II", tile_width, tile_height))
        + full_box(b"ispe", 0, 0, struct.pack(">II", *size)),
    )
    associations = [struct.pack(">HB", 1, 1) + bytes([3])]
    associations += [struct.pack(">HB", 2 + i, 2) + bytes([0x81, 2]) for i in range(len(streams))]
    ipma = full_box(b"ipma", 0, 0, struct.pack(">I", len(associations)) + b"".join(associations))
    layout = bytes([0, 0, rows - 1, columns - 1]) + struct.pack(">HH", *size)
    ftyp = box(b"ftyp", b"heic" + bytes(4) + b"mif1heic")

    def meta(data_start: int) -> bytes:
        located = [struct.pack(">HHHH", 1, 1, 0, 1) + struct.pack(">II", 0, len(layout))]  # in idat
        offset = data_start
        for index, (_, stream) in enumerate(streams):
            located.append(struct.pack(">HHHH", 2 + index, 0, 0, 1) + struct.pack(">II", offset, len(stream)))
            offset += len(stream)
        iloc = full_box(b"iloc", 1, 0, bytes([0x44, 0]) + struct.pack(">H", len(located)) + b"".join(located))
        return box(
            b"meta", bytes(4) + hdlr + pitm + iloc + iinf + iref + box(b"iprp", ipco + ipma) + box(b"idat", layout)
        )

    start = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(start) + box(b"mdat", b"".join(stream for _, stream in streams))


def split(picture: Image.Image, tile: int) -> tuple[list[Image.Image], int, int]:
    """``picture`` cut into ``tile``-px tiles (padded at the right and bottom), row by row."""
    width, height = picture.size
    columns, rows = -(-width // tile), -(-height // tile)
    padded = np.zeros((rows * tile, columns * tile, 3), np.uint8)
    padded[:height, :width] = np.asarray(picture.convert("RGB"))
    tiles = [
        Image.fromarray(padded[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile])
        for row in range(rows)
        for column in range(columns)
    ]
    return tiles, rows, columns
