"""Build image files of every awkward kind the workflow must handle (in memory, as bytes)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pillow_heif  # writes HEIC for the tests; the product's pi-heif only decodes
from PIL import Image


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient_rgb(width: int = 64, height: int = 48) -> Image.Image:
    """An image whose orientation is visible: red grows left to right, green top to bottom."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    pixels = np.stack([x, y, np.full_like(x, 80)], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


def jpeg(width: int = 64, height: int = 48) -> bytes:
    return encode(gradient_rgb(width, height), "JPEG", quality=95)


def grayscale_png() -> bytes:
    return encode(gradient_rgb().convert("L"), "PNG")


def rgba_png() -> bytes:
    image = gradient_rgb().convert("RGBA")
    image.putalpha(128)
    return encode(image, "PNG")


def palette_png() -> bytes:
    return encode(gradient_rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(gradient_rgb().convert("CMYK"), "JPEG")


def sixteen_bit_png() -> bytes:
    pixels = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    return encode(Image.fromarray(pixels), "PNG")


def sixteen_bit_colour_png(samples: np.ndarray) -> bytes:
    """(H, W, 3) uint16 samples as a 16-bit RGB PNG ((H, W, 2): grey+alpha), each row with the Sub filter (Pillow
    writes no such PNG)."""
    height, width, bands = samples.shape
    step = 2 * bands  # bytes per pixel: the Sub filter subtracts the byte one pixel back
    rows = []
    for row in samples.astype(">u2"):
        raw = np.frombuffer(row.tobytes(), dtype=np.uint8).astype(np.int16)
        rows.append(b"\x01" + ((raw - np.r_[np.zeros(step, np.int16), raw[:-step]]) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, {2: 4, 3: 2}[bands], 0, 0, 0)  # PNG colour types
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def sixteen_bit_colour_tiff(samples: np.ndarray, deflate: bool = False) -> bytes:
    """(H, W, 3) uint16 samples as a little-endian 16-bit RGB TIFF in one strip (with ``deflate``, compressed: Pillow
    reads it through libtiff)."""
    height, width, _ = samples.shape
    pixels = samples.astype("<u2").tobytes()
    pixels = zlib.compress(pixels) if deflate else pixels
    compression = 8 if deflate else 1
    entries = [(256, 4, width), (257, 4, height), (258, 3, None), (259, 3, compression), (262, 3, 2), (273, 4, None),
               (277, 3, 3), (278, 4, height), (279, 4, len(pixels)), (284, 3, 1)]  # fmt: skip
    depths = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, value in entries:
        count = 3 if tag == 258 else 1
        value = depths if tag == 258 else depths + 6 if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    return out + struct.pack("<I", 0) + struct.pack("<HHH", 16, 16, 16) + pixels


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 64x48 JPEG whose EXIF says 'rotate 90 degrees clockwise to display' (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(gradient_rgb(64, 48), "JPEG", quality=95, exif=exif.tobytes())


def truncated_jpeg() -> bytes:
    data = jpeg(128, 128)
    return data[: len(data) // 2]


def not_an_image() -> bytes:
    return b"%PDF-1.4\nthis is a PDF, not a photo\n" * 10


def decompression_bomb_png(side: int = 20_000) -> bytes:
    """A tiny PNG that claims side x side pixels (grey, compressed to almost nothing)."""
    raw_row = b"\x00" + b"\x00" * side
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(raw_row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def heic(image: Image.Image, orientation: int | None = None, **options: object) -> bytes:
    """A HEIC file of ``image`` as stored; ``orientation``: the EXIF value, which libheif writes as irot/imir boxes."""
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    options.setdefault("enc_params", {"preset": "ultrafast"})  # x265's default takes seconds a megapixel
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, format="HEIF", **options)
    return buffer.getvalue()


METU = Path(__file__).resolve().parents[2] / "shared" / "data" / "metu-sample"


def concrete(width: int = 908, height: int = 908, folder: str = "Negative", first: int = 0) -> np.ndarray:
    """Clean concrete: real METU patches side by side when the shared data is here, else synthetic concrete."""
    patches = sorted((METU / folder).glob("*.jpg"))[first:]
    photo = Image.new("RGB", (width, height))
    if len(patches) < 16:
        from crack_model.data.synth import concrete_texture

        return np.asarray(concrete_texture(np.random.default_rng(first), max(width, height)).convert("RGB"))[
            :height, :width
        ].copy()
    for index, (top, left) in enumerate((top, left) for top in range(0, height, 227) for left in range(0, width, 227)):
        with Image.open(patches[index % len(patches)]) as patch:
            photo.paste(patch.convert("RGB"), (left, top))
    return np.asarray(photo).copy()


def disc_mask(width: int, height: int, radius: float, centre: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """True inside a disc of ``radius`` (of the short side) around ``centre`` (shares of width and height)."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.hypot(columns - centre[0] * width, rows - centre[1] * height) <= radius * min(width, height)


def framed(pixels: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """``pixels`` black outside ``picture`` (a round picture on a black square, as a borescope saves it)."""
    out = pixels.copy()
    out[~picture] = 0
    return out
