"""Turn image bytes into RGB pixels the same way everywhere (training, scoring, profiling).

Pillow does the decoding: it reads JPEG, PNG, TIFF, WebP, BMP and GIF, honours EXIF
orientation, and handles palette, grayscale, RGBA, CMYK and 16-bit images, which the
nightly uploads contain and ``tf.io.decode_image`` does not all handle.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crack_model.core.errors import ImageDecodeError

# A 4032x3024 phone photo is 12 MP; 80 MP leaves room for panoramas and stops
# decompression bombs (a tiny file that expands to gigabytes of pixels).
DEFAULT_MAX_PIXELS = 80_000_000


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode bytes into an upright RGB Pillow image.

    Raises:
        ImageDecodeError: with a reason a person can act on.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes): re-upload the photo")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below replaces Pillow's warning-based one.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                msg = (
                    f"image too large: {width}x{height} = {width * height:,} pixels exceeds "
                    f"the limit of {max_pixels:,}; downscale it before upload"
                )
                raise ImageDecodeError(msg)
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        msg = "not an image Pillow can read (unknown or unsupported format)"
        raise ImageDecodeError(msg) from None
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(f"image too large: {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageDecodeError(f"corrupt or truncated image: {error}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (drops alpha, scales 16-bit and float)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        scaled = np.clip(pixels / high * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


# Up to this much larger than the input, the centre is cropped instead of resampling: a
# 227x227 patch loses a pixel or two at the border, and the cut costs nothing, where a
# bilinear resize costs more than decoding the JPEG.
NEAR_SIZE_SLACK = 1.05


def fit_to_input(image: Image.Image, size: int) -> Image.Image:
    """A ``size`` x ``size`` view of the image: centre crop when nearly that size, else bilinear resize."""
    width, height = image.size
    if (width, height) == (size, size):
        return image
    if size <= width <= size * NEAR_SIZE_SLACK and size <= height <= size * NEAR_SIZE_SLACK:
        left, top = (width - size) // 2, (height - size) // 2
        return image.crop((left, top, left + size, top + size))
    return image.resize((size, size), Image.Resampling.BILINEAR)


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
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    value = int("".join("1" if bit else "0" for bit in bits), 2)
    return f"{value:0{hash_size * hash_size // 4}x}"
