"""A batch of hostile uploads, built in memory: odd names, odd and broken content, each a name and its bytes.

What a real night can bring and the workflow must turn into one row each: every mode and container
Pillow and libjpeg know, files cut short or corrupted in the middle, headers that lie about their
size, strips a pixel thin, compression bombs hidden in metadata, formats we refuse, and names with
line breaks, quotes, commas, tabs, accents, emoji, or no extension. Kept deterministic (seeded).
"""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
from PIL import Image

from tests.imagefiles import encode, gradient_rgb, heic


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _with_text_bomb(png: bytes) -> bytes:
    """A PNG with a zTXt chunk that inflates to 30 MB (Pillow refuses text chunks that large)."""
    return png[:33] + _png_chunk(b"zTXt", b"k\0\0" + zlib.compress(bytes(30_000_000), 9)) + png[33:]


def _orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _item_type_not_text(data: bytes) -> bytes:
    """A HEIC whose Exif item's type has a byte that is not text: pi-heif 1.4 crashed the process on it."""
    damaged = bytearray(data)
    damaged[data.find(b"Exif", data.find(b"iinf"))] = 0x80
    return bytes(damaged)


def _content() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    base = gradient_rgb(300, 220)
    noise = Image.fromarray(rng.integers(0, 255, (230, 300, 3), dtype=np.uint8))
    good = encode(base, "JPEG", quality=90)
    files = {
        "progressive.jpg": encode(base, "JPEG", progressive=True),
        **{f"subsampling{mode}.jpg": encode(noise, "JPEG", subsampling=mode) for mode in (0, 1, 2)},
        "restart-markers.jpg": encode(base, "JPEG", restart_marker_blocks=1),
        "icc.jpg": encode(base, "JPEG", icc_profile=b"\0" * 1000),
        "one-pixel.jpg": encode(Image.new("RGB", (1, 1)), "JPEG"),
        "strip-1x3000.jpg": encode(Image.new("RGB", (1, 3000), (90, 90, 90)), "JPEG"),
        "strip-40000x2.jpg": encode(Image.new("RGB", (40000, 2), (90, 90, 90)), "JPEG"),
        "trailing-garbage.jpg": good + bytes(rng.integers(0, 255, 3000, dtype=np.uint8)),
        "two-jpegs.jpg": good + good,
        "1bit.png": encode(base.convert("1"), "PNG"),
        "palette-transparent.png": encode(base.convert("P"), "PNG", transparency=0),
        "grey-alpha.png": encode(base.convert("LA"), "PNG"),
        "animated.png": encode(base, "PNG", save_all=True, append_images=[base.rotate(90)]),
        "animated.gif": encode(base.convert("P"), "GIF", save_all=True, append_images=[base.rotate(45).convert("P")]),
        "lossless.webp": encode(base, "WEBP", lossless=True),
        "pages.tif": encode(base, "TIFF", save_all=True, append_images=[base.rotate(90)]),
        "float.tif": encode(Image.fromarray(rng.random((100, 100), dtype=np.float32) * 1e6), "TIFF"),
        "nan.tif": encode(Image.fromarray(np.full((50, 50), np.nan, np.float32)), "TIFF"),
        "int32.tif": encode(Image.fromarray(rng.integers(-(2**31), 2**31 - 1, (60, 60), dtype=np.int32)), "TIFF"),
        "lab.tif": encode(base.convert("LAB"), "TIFF"),
        "ycbcr-jpeg.tif": encode(base, "TIFF", compression="jpeg"),
        "1bit.bmp": encode(base.convert("1"), "BMP"),
        # what print and scientific tools save: CMYK (Adobe's inverted form) and 16-bit grey
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
        "sixteen-bit.png": encode(Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257), "PNG"),
        # what phones save: an iPhone's HEIC turned by irot, and a grey HEIC of 10 bits
        "iphone-turned.heic": heic(base.transpose(Image.Transpose.ROTATE_90), exif=_orientation(6), quality=60),
        "ten-bit-grey.heif": heic(Image.fromarray(np.asarray(base.convert("L"), np.uint16) << 8), quality=60),
        # refused, broken or not images
        "image.tga": encode(base, "TGA"),
        "image.ico": encode(base, "ICO"),
        "header-only.heic": b"\0\0\0\x18ftypheic" + bytes(2000),
        "cut-in-half.heic": heic(base, quality=60)[:600],
        "item-type-not-text.heic": _item_type_not_text(heic(base, exif=_orientation(1), quality=60)),
        "boxes-end-early.heic": b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x14meta\0\0\0\0\0\0\0\x08iinf",
        "photo.avif": encode(base, "AVIF", quality=60),
        "camera.dng": encode(base, "TIFF", tiffinfo={50706: b"\x01\x04\x00\x00"}),
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"/>',
        "page.html.jpg": b"<html><body>not a photo</body></html>",
        "empty.jpg": b"",
        "one-byte.jpg": b"\xff",
        "soi-eoi-only.jpg": b"\xff\xd8\xff\xd9",
        "png-signature-only.png": b"\x89PNG\r\n\x1a\n",
        "gzipped.jpg": zlib.compress(good),
        "ztxt-bomb.png": _with_text_bomb(encode(base, "PNG")),
    }
    for cut in (20, 300, len(good) // 2, len(good) - 2):
        files[f"cut-at-{cut}.jpg"] = good[:cut]
    sof = good.find(b"\xff\xc0")
    for name, (width, height) in {"header-says-65000x65000": (65000, 65000), "header-says-0x0": (0, 0)}.items():
        files[f"{name}.jpg"] = good[: sof + 5] + struct.pack(">HH", height, width) + good[sof + 9 :]
    for seed in range(4):
        corrupt = bytearray(good)
        start = random.Random(seed).randrange(200, len(corrupt) - 20)
        corrupt[start : start + 20] = random.Random(seed + 100).randbytes(20)
        files[f"corrupt-{seed}.jpg"] = bytes(corrupt)
    for orientation in (0, 2, 5, 7, 9, 255):
        files[f"orientation-{orientation}.jpg"] = encode(noise, "JPEG", exif=_orientation(orientation))
    return files


# The last two are named like the local store's own temporary and side files: uploads all the same.
NAMES = ("carriage\rreturn.jpg", "line\nfeed.jpg", 'quote"comma,semi;colon.jpg', "tab\tname.jpg", "space name.jpg",
         "ünïcödé.jpg", "emoji😀.jpg", "-leading-dash.jpg", "percent%2Fhash#query?.jpg", "UPPER.JPEG", "no-extension",
         ".hidden.jpg", "deep/er/folder/x.jpg", "n" * 200 + ".jpg",
         ".tmp-scan.jpg", ".longname-photo.jpg",
         # terminal escapes and DEL, a right-to-left override, a zero-width space, what Windows cannot
         # hold (a trailing dot or space), and twins that differ only in case
         "escape\x1b[31mred.jpg", "delete\x7f.jpg", "rtl\u202egpj.exe.jpg", "zero\u200bwidth.jpg",
         "trailing-dot.jpg.", "trailing-space.jpg ", "Twin.jpg", "twin.jpg")  # fmt: skip


def hostile_batch() -> dict[str, bytes]:
    """Name (relative to the batch folder) to bytes: the odd contents, then a valid JPEG under each odd name.

    The names are distinct images (a duplicate is its own validation finding, not what this is about).
    """
    files = _content()
    for index, name in enumerate(NAMES):
        files[name] = encode(gradient_rgb(64 + index, 48), "JPEG")
    return files
