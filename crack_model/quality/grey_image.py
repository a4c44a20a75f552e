"""The grey image validation measures, and the photographic statistics measured on it.

Contrast and blur are measured where the model looks: on tile-size windows (up to
``SHARPNESS_WINDOWS`` of the tiles scoring cuts, spread over the image) at the scale scoring cuts
them at, and the median over the windows is the image's. Their bounds come from 227-px patches
at full resolution, and both measures change with scale: the same concrete texture measured on
a whole 4032x3024 photo shrunk to 512 px reads 2.5 to 20 times sharper, enough to quarantine
full-size photos of cracks as "noisy". Brightness and the clipped shares barely depend on scale
and are measured on the whole image at most ``analysis_side`` a side (``shrunk_within``).

JPEGs are decoded straight to greyscale (``Image.draft``), at a reduced scale when scoring shrinks
them to stay within its tile budget, and 16-bit images go straight to 8 bits.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from crack_model.core.frames import Frame, find_frame
from crack_model.core.imaging import DRAFT_FORMATS, check_pixels, decode_errors, load, open_lazy
from crack_model.core.jpeg_damage import check_intact
from crack_model.core.jpeg_fast import decode_grey_jpeg
from crack_model.core.pixel_modes import to_8bit, to_rgb, transparency
from crack_model.core.tiling import TileConfig, fit_to_tile_budget, tile_boxes

SATURATED_LEVEL = 250
DARK_LEVEL = 5
# Tile-size windows contrast and blur are measured on (their median is the image's).
SHARPNESS_WINDOWS = 32


def image_statistics(gray: np.ndarray) -> dict[str, float]:
    """Brightness, contrast, blur and clipping of a 2-D uint8 grey image, measured on the whole of it."""
    pixels = gray.astype(np.float32)
    return {**exposure_statistics(gray), "contrast": float(pixels.std()), "blur": laplacian_variance(pixels)}


def exposure_statistics(gray: np.ndarray) -> dict[str, float]:
    """Brightness (mean grey) and the shares of blown-out and crushed-black pixels of uint8 grey pixels."""
    count = gray.size
    return {
        "brightness": float(gray.mean(dtype=np.float64)),
        "saturated_fraction": float(np.count_nonzero(gray >= SATURATED_LEVEL) / count),
        "dark_fraction": float(np.count_nonzero(gray <= DARK_LEVEL) / count),
    }


def laplacian_variance(pixels: np.ndarray) -> float:
    """The usual focus measure: the variance of the 4-neighbour Laplacian on the interior (0 when there is none)."""
    laplacian = pixels[:-2, 1:-1] + pixels[2:, 1:-1] + pixels[1:-1, :-2] + pixels[1:-1, 2:] - 4.0 * pixels[1:-1, 1:-1]
    return float(laplacian.var()) if laplacian.size else 0.0


def window_statistics(gray: np.ndarray, tiles: TileConfig, frame: Frame | None = None) -> dict[str, float]:
    """Contrast and blur as the median over tile-size windows of ``gray``, which is at the scale tiles are cut at.

    A patch the size of a tile is its own window, so its figures are those of the whole image. With ``frame``
    (frames.py), only windows centred in the picture count: the frame's are flat.
    """
    height, width = gray.shape
    boxes = tile_boxes(width, height, tiles)
    if frame is not None:
        boxes = [box for box in boxes if not _in_frame(frame, box)] or boxes
    count = min(SHARPNESS_WINDOWS, len(boxes))
    contrasts, blurs = [], []
    for left, top, right, bottom in (boxes[index * len(boxes) // count] for index in range(count)):
        window = gray[top:bottom, left:right].astype(np.float32)  # one at a time: ~0.2 MB, not 32 of them
        contrasts.append(float(window.std()))
        blurs.append(laplacian_variance(window))
    return {"contrast": float(np.median(contrasts)), "blur": float(np.median(blurs))}


def _in_frame(frame: Frame, box: tuple[int, int, int, int]) -> bool:
    rows, columns = frame.mask.shape
    row = min(rows - 1, (box[1] + box[3]) // 2 // frame.factor)
    return bool(frame.mask[row, min(columns - 1, (box[0] + box[2]) // 2 // frame.factor)])


def picture_statistics(gray: np.ndarray, tiles: TileConfig, analysis_side: int) -> dict[str, float]:
    """The statistics of a grey image at the scale tiles are cut at, measured on its picture: a round picture's
    black frame (frames.py) is no picture, as scoring sees it. Brightness and the clipped shares on the image
    shrunk to at most ``analysis_side`` a side (``shrunk_within``), contrast and blur on tile-size windows.

    A frame is never most of an image, nor found on a dark one (frames.MAX_SHARE, PICTURE_MARGIN): an image
    black all over, or a small picture in much black, is measured whole and fails as underexposed as before.
    """
    frame = find_frame(gray)
    shrunk = shrunk_within(gray, analysis_side)
    if frame is None:
        return {**exposure_statistics(shrunk), **window_statistics(gray, tiles)}
    height, width = shrunk.shape
    outside = np.asarray(Image.fromarray(frame.mask).resize((width, height), Image.Resampling.NEAREST))
    picture = shrunk[~outside] if not outside.all() else shrunk
    return {**exposure_statistics(picture), **window_statistics(gray, tiles, frame)}


def decode_grey(data: bytes, tiles: TileConfig, max_pixels: int) -> np.ndarray:
    """Decode to a grey uint8 array at the size scoring tiles the image at (``tiling.fit_to_tile_budget``).

    Fails on the same inputs as ``imaging.open_image`` (what scoring uses), with the same reasons."""
    image = open_lazy(data, max_pixels=max_pixels)
    with decode_errors():
        stored = image.size
        scaled = fit_to_tile_budget(*stored, tiles, max_pixels).scaled  # the stored size: the fit is symmetric
        if image.format in DRAFT_FORMATS:
            # Straight to grey (libjpeg skips the colour planes), at 1/2, 1/4 or 1/8 scale when scoring shrinks it.
            image.draft("L", scaled)
            check_pixels(*stored, max_pixels, decoded=image.size)  # as open_image: checked, not assumed
            # Pillow's pixels, through strict libjpeg: a damaged picture refused as in open_image (jpeg_damage.py).
            if image.mode != "L":
                check_intact(data)  # CMYK: Pillow decodes it, so libjpeg is asked first
            elif (grey := decode_grey_jpeg(data, image.size)) is not None:
                image = Image.fromarray(grey)
        gray = to_grey(load(image, data))
        if gray.size != scaled:
            gray = gray.resize(scaled, Image.Resampling.BILINEAR)
        return np.asarray(gray, dtype=np.uint8)


def shrunk_within(gray: np.ndarray, side: int) -> np.ndarray:
    """``gray`` shrunk to at most ``side`` pixels a side (as it is when it fits)."""
    height, width = gray.shape
    if max(width, height) <= side:
        return gray
    # Not ImageOps.contain: it makes a 2x65000 strip 0 pixels wide, and its statistics NaN.
    scale = side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)


def to_grey(image: Image.Image) -> Image.Image:
    """8-bit grey as ``to_rgb(image).convert("L")`` gives it, without a full-size RGB copy where Pillow can skip it."""
    image = to_8bit(image)
    if image.mode == "L":
        return image
    if image.mode in ("RGB", "RGBX") or (image.mode == "RGBA" and transparency(image) is None):  # opaque: the same luma
        return image.convert("L")
    return to_rgb(image).convert("L")  # transparent pixels measured as scored: on the opaque ones' mean colour
