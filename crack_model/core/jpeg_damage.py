"""JPEGs damaged in the middle: libjpeg loses part of the picture, and Pillow decodes the rest without a word.

A JPEG whose compressed data is corrupted (bytes overwritten in transfer or on a card) often still
decodes: when libjpeg notices, it warns, paints the rest of the damaged stretch grey, and goes on.
Pillow ignores the warning, so such a photo was scored "ok" with a band of grey or smeared blocks
in it: a crack under it is missed, and the smear's edges can read as a crack. Only a file cut
short made Pillow fail. libjpeg's warning is the evidence; simplejpeg (its own copy of
libjpeg-turbo) raises it in strict mode. An upload whose picture libjpeg reports lost is refused,
in validation, scoring and training alike, with the warning and what to do. Not every corruption
shows: a few changed bytes can decode without a warning, into wrong pixels nobody can tell from
the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simplejpeg

from crack_model.core.errors import ImageDecodeError

# The beginnings of libjpeg's warnings (jerror.h, JWRN_*) that mean picture data was lost: a marker met
# inside compressed data, a code no table has, a restart marker out of order, the end of the file.
# Not among them, though they can follow damage too: "N extraneous bytes before marker" (cameras write
# stray bytes between segments and before markers in intact photos: Foscam, Logitech C270, scanners),
# an unknown JFIF revision or Adobe transform, a bad ICC marker. A false refusal would refuse every
# photo of such a camera; a missed one leaves a damaged photo scored as before.
LOST_PICTURE = (
    "Corrupt JPEG data: premature end of data segment",
    "Corrupt JPEG data: bad Huffman code",
    "Corrupt JPEG data: bad arithmetic code",
    "Corrupt JPEG data: found marker",
    "Premature end of JPEG file",
)


def lost_picture(error: Exception) -> ImageDecodeError | None:
    """The row's error when ``error`` (from a strict libjpeg decode) says part of the picture is lost, else None."""
    warning = str(error).strip()
    if not warning.startswith(LOST_PICTURE):
        return None
    # The words of imaging.decode_errors, which reports a file cut short where Pillow notices it.
    return ImageDecodeError(
        f'corrupt or truncated image: libjpeg reports "{warning}", so part of the picture may be lost '
        "(decoded grey or smeared); re-upload the original photo"
    )


def strict_decode(data: bytes, **options: Any) -> np.ndarray | None:
    """``simplejpeg.decode_jpeg(data, strict=True, **options)``, or None when libjpeg doubts the file.

    Raises:
        ImageDecodeError: libjpeg lost part of the picture. Any other doubt (a warning that loses
            nothing, a file it cannot read) is None: Pillow decides whether the file decodes, and says why not.
    """
    try:
        pixels: np.ndarray = simplejpeg.decode_jpeg(data, strict=True, **options)
    except Exception as error:  # simplejpeg raises ValueError or RuntimeError, with libjpeg's message
        lost = lost_picture(error)
        if lost is not None:
            raise lost from None
        return None
    return pixels


def check_intact(data: bytes) -> None:
    """Raise ImageDecodeError when libjpeg loses part of this JPEG's picture.

    Decodes at 1/8 scale: libjpeg still reads every compressed block (where the damage shows) but
    skips most of the rest.
    """
    strict_decode(data, colorspace="GRAY", min_height=1, min_width=1)
