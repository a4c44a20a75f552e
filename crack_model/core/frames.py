"""The "no picture" frame of a round or cut-cornered photo: found, and laid on the picture's mean colour.

A borescope or fisheye image is a round picture on a black square (a rounded rectangle, an octagon and bars are
the same idea). The model read the curved edge between the black and the concrete as a crack (5 of 8 clean
mosaics framed by a disc, an earlier demo model; with a ring of noise outside the disc, 8 of 8 for today's:
``bench/framed_photos.py``). Like a transparent area (``pixel_modes.transparency``), the frame holds no picture:
scoring lays it on the mean colour of the picture before cutting tiles, and validation measures the picture
without it. The colour fades in over the band the mask grew by: a hard edge between concrete and a flat colour
was read as a crack as well (6 of 8 clean mosaics of a disc laid without the fade).

A frame is near-black (every channel at most ``FRAME_LEVEL``, its median at most ``FRAME_MEDIAN``), reaches the
photo's border, and is wide everywhere it is masked: a disc ``WIDTH`` of the short side across fits in it (a
morphological opening). A crack is thin: the opening drops it, also where it runs into the frame. The picture
left must be a quarter of the photo or more, clearly brighter than the frame: an underexposed photo, a dark
slab, is never masked; a shadow keeps the concrete's grey (a twentieth of the light leaves it at 8-10, above
``FRAME_MEDIAN``). Thin bright marks in the frame (a caption burnt in, the lens's rim) are bridged first (a
closing), and the mask grows by ``GROWTH`` over the frame's soft or JPEG-rung edge.

Cheap when there is no frame: only two rings of border pixels are read, and the search stops unless a share
``MIN_BORDER_SHARE`` of one is near-black. The search runs on a thumbnail (Pillow's box ``reduce``) at most
``THUMBNAIL_SIDE`` a side, whose mask and fade are scaled up smoothly; arrays are laid a band of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from crack_model.core.pixel_modes import CHUNK_PIXELS

Box = tuple[int, int, int, int]

# Every channel at or below this is near-black: a frame's black, JPEG's ringing near its edge included.
FRAME_LEVEL = 24
# A frame's median grey is at most this (digital black: 0-3); shadowed concrete's stays above it.
FRAME_MEDIAN = 8
# The picture's median grey must be this much above ``FRAME_LEVEL``, else the photo is dark, not framed.
PICTURE_MARGIN = 24
# Below this share of near-black pixels in both border rings there is no frame to look for.
MIN_BORDER_SHARE = 0.02
# A frame is at least this wide (of the photo's short side) wherever it is masked; a crack is thinner.
WIDTH = 0.04
# Bright marks in a frame up to this wide (of the short side) are bridged: a caption, a lens rim.
BRIDGE = 0.02
# The mask grows by this much (of the short side) over the frame's soft or JPEG-rung edge.
GROWTH = 0.012
# A "frame" of more than this share of the photo leaves too little picture to be one.
MAX_SHARE = 0.75
THUMBNAIL_SIDE = 384
# Smaller images are never searched: a 227-px patch (scored whole up to 284 px) is scored as it was trained.
MIN_SIDE = 300


@dataclass(frozen=True)
class Frame:
    """A photo's frame on its thumbnail: ``mask`` (True: no picture), how much of each pixel is laid on the
    picture's mean ``colour`` (``cover``), and the thumbnail's scale."""

    mask: np.ndarray  # bool (height, width), each pixel a ``factor`` x ``factor`` block of the photo
    cover: np.ndarray  # uint8 (height, width): 255 in the frame, falling to 0 over its edge
    colour: tuple[int, int, int]
    factor: int = 1

    @property
    def share(self) -> float:
        return float(self.mask.mean())

    @property
    def grey(self) -> int:
        """The colour's grey, as Pillow's "L" conversion weighs it (a grey photo's: its one value)."""
        red, green, blue = self.colour
        return round((299 * red + 587 * green + 114 * blue) / 1000)

    def alpha(self, size: tuple[int, int], rows: tuple[int, int] | None = None) -> Image.Image:
        """``cover`` at the photo's ``size`` (width, height), an "L" image, smoothly scaled up; only the band
        ``rows`` (top, bottom) of it when given (the same pixels as in the whole)."""
        width, height = size
        top, bottom = rows or (0, height)
        box = (0.0, top / self.factor, width / self.factor, bottom / self.factor)  # the last block may be partial
        return Image.fromarray(self.cover).resize((width, bottom - top), Image.Resampling.BILINEAR, box=box)


def without_frame(pixels: np.ndarray) -> tuple[np.ndarray, Frame | None]:
    """(height, width, 3) RGB or (height, width) grey uint8 pixels with their frame, if any, laid on the picture's
    mean colour (in place when they are writable), and the frame."""
    frame = find_frame(pixels)
    if frame is None:
        return pixels, None
    pixels = pixels if pixels.flags.writeable else pixels.copy()
    height, width = pixels.shape[:2]
    rows = max(1, CHUNK_PIXELS // 4 // width)
    for top in range(0, height, rows):  # a band at a time: no full-size copy, nor a full-size alpha
        band = frame.alpha((width, height), (top, min(height, top + rows)))
        if band.getbbox() is not None:
            picture = Image.fromarray(pixels[top : top + rows])
            picture.paste(frame.colour if pixels.ndim == 3 else frame.grey, (0, 0, *picture.size), band)
            pixels[top : top + rows] = np.asarray(picture)
    return pixels, frame


def find_frame(pixels: np.ndarray) -> Frame | None:
    """The frame of (height, width, 3) RGB or (height, width) grey uint8 pixels; None at a glance for most."""
    height, width = pixels.shape[:2]
    if min(width, height) < MIN_SIDE or border_share(pixels) < MIN_BORDER_SHARE:
        return None
    factor = _factor(width, height)
    rows = max(1, CHUNK_PIXELS // width // factor) * factor
    small = Image.new("RGB" if pixels.ndim == 3 else "L", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        small.paste(Image.fromarray(pixels[top : top + rows]).reduce(factor), (0, top // factor))
    return frame_of_thumbnail(np.asarray(small), factor)


def image_without_frame(image: Image.Image) -> tuple[Image.Image, Frame | None]:
    """A Pillow RGB or "L" image with its frame, if any, laid on the picture's mean colour (in place), and the
    frame."""
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        return image, None
    rings = [np.asarray(image.crop(box)) for box in _ring_boxes(width, height)]
    if max(_share(rings[:4]), _share(rings[4:])) < MIN_BORDER_SHARE:
        return image, None
    factor = _factor(width, height)
    frame = frame_of_thumbnail(np.asarray(image.reduce(factor) if factor > 1 else image), factor)
    if frame is None:
        return image, None
    image.paste(frame.colour if image.mode == "RGB" else frame.grey, (0, 0, width, height), frame.alpha(image.size))
    return image, frame


def border_share(pixels: np.ndarray) -> float:
    """The share of near-black pixels in the outermost ring of (height, width[, 3]) pixels, or in the ring a
    hundredth of the short side inside it (a lens rim or sensor noise may line the very edge), the larger."""
    height, width = pixels.shape[:2]
    rings = [pixels[top:bottom, left:right] for left, top, right, bottom in _ring_boxes(width, height)]
    return max(_share(rings[:4]), _share(rings[4:]))


def _ring_boxes(width: int, height: int) -> list[Box]:
    """The four sides of the outermost ring of pixels, then of the ring a hundredth of the short side inside."""
    boxes = []
    for step in (0, min(width, height) // 100):
        right, bottom = width - step, height - step
        boxes += [(step, step, right, step + 1), (step, bottom - 1, right, bottom),
                  (step, step + 1, step + 1, bottom - 1), (right - 1, step + 1, right, bottom - 1)]  # fmt: skip
    return boxes


def _share(sides: list[np.ndarray]) -> float:
    dark = sum(int(np.count_nonzero(_dark(side))) for side in sides)
    return dark / max(1, sum(int(side.shape[0]) * int(side.shape[1]) for side in sides))


def _dark(pixels: np.ndarray) -> np.ndarray:
    """Near-black pixels of a (height, width[, 3]) array: every channel at most ``FRAME_LEVEL``."""
    dark = pixels <= FRAME_LEVEL
    return np.asarray(dark.all(axis=-1)) if pixels.ndim == 3 else np.asarray(dark)


def _factor(width: int, height: int) -> int:
    return max(1, -(-max(width, height) // THUMBNAIL_SIDE))


def frame_of_thumbnail(small: np.ndarray, factor: int = 1) -> Frame | None:
    """The frame found on a thumbnail (RGB or grey, ``factor`` times smaller than the photo), or None."""
    from scipy import ndimage  # only for photos with a dark border: scipy is slow to import

    grey = small if small.ndim == 2 else np.asarray(Image.fromarray(small).convert("L"))
    short = min(grey.shape)
    dark = _closed(_dark(small), max(1, round(BRIDGE * short / 2)))
    labels, _ = ndimage.label(dark)
    border = np.unique(np.concatenate((labels[0], labels[-1], labels[:, 0], labels[:, -1])))
    radius = max(1, round(WIDTH * short / 2))
    wide = _opened(np.isin(labels, border[border > 0]), radius)
    if not wide.any() or float(np.median(grey[wide])) > FRAME_MEDIAN:
        return None  # no wide dark area at the border, or a shadow's
    # Where a disc nears the photo's edge its frame thins to nothing: the opening leaves a sliver along the edge,
    # which is frame too (a crack only touches the edge across its width).
    framed = np.isin(labels, np.unique(labels[wide]))
    band = np.zeros_like(framed)
    band[:radius], band[-radius:], band[:, :radius], band[:, -radius:] = True, True, True, True
    growth = max(1, round(GROWTH * short))
    mask = _dilated(wide | (framed & band), growth)
    picture = ~mask
    if mask.mean() > MAX_SHARE or float(np.median(grey[picture])) < FRAME_LEVEL + PICTURE_MARGIN:
        return None  # a dark photo: what would be left is hardly brighter than the "frame"
    colour = small[picture].mean(axis=0) if small.ndim == 3 else np.repeat(grey[picture].mean(), 3)
    red, green, blue = (round(float(value)) for value in colour)
    # Laid fully where the frame was, fading over the band the mask grew by: a hard edge between the picture and a
    # flat colour was read as a crack too (6 of 8 clean mosaics of a disc; 0 of 8 faded).
    inside = np.asarray(ndimage.distance_transform_edt(mask))
    cover = np.clip(inside * (255 / growth), 0, 255).astype(np.uint8)
    return Frame(mask, cover, (red, green, blue), factor)


# Morphology by Euclidean distance (exact discs, in linear time; the photo's edge does not erode a region at it).
def _dilated(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage  # see frame_of_thumbnail

    if not mask.any():
        return mask
    return np.asarray(ndimage.distance_transform_edt(~mask)) <= radius


def _eroded(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage  # see frame_of_thumbnail

    if mask.all():
        return mask
    return np.asarray(ndimage.distance_transform_edt(mask)) > radius


def _opened(mask: np.ndarray, radius: int) -> np.ndarray:
    return _dilated(_eroded(mask, radius), radius)


def _closed(mask: np.ndarray, radius: int) -> np.ndarray:
    return _eroded(_dilated(mask, radius), radius)


def frame_note(frame: Frame | None) -> str:
    """What a result row says of a photo scored without its frame ("" without one)."""
    if frame is None:
        return ""
    return f"a dark frame around the picture ({frame.share:.0%} of the photo) was scored as the picture's mean colour"
