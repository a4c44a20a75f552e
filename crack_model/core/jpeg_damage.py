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

import re
from typing import Any

import numpy as np
import simplejpeg

from crack_model.core.errors import ImageDecodeError

# The beginnings of libjpeg's warnings (jerror.h, JWRN_*) that mean picture data was lost: a marker met
# inside compressed data, a code no table has, a restart marker out of order, the end of the file.
# Not among them, though they can follow damage too: an unknown JFIF revision or Adobe transform, a bad
# ICC marker. A false refusal would refuse every photo of such a camera; a missed one leaves a damaged
# photo scored as before. "N extraneous bytes before marker" is both: see STRAY_BYTES_BEFORE_THE_END.
LOST_PICTURE = (
    "Corrupt JPEG data: premature end of data segment",
    "Corrupt JPEG data: bad Huffman code",
    "Corrupt JPEG data: bad arithmetic code",
    "Corrupt JPEG data: found marker",
    "Premature end of JPEG file",
)
EXTRANEOUS_BYTES = re.compile(r"Corrupt JPEG data: (\d+) extraneous bytes before marker 0x([0-9a-f]{2})")
END_OF_IMAGE = "d9"
# "N extraneous bytes before marker 0xd9": every block the frame asks for was decoded and N bytes of the file
# were left over. Cameras leave a few there in intact photos (32 or 60 bytes of zeros in our tests, 101 from
# a balloon camera), but a frame that misstates its size or
# data sent twice leaves compressed picture: a 1-bit flip of the height (1,500 -> 476 rows) left 362,906
# bytes (70 % of the file) undecoded, a block of 256, 1,024, 4,096 or 16,384 bytes sent twice left
# 264-504, 1,147-1,367, 4,276-5,215 and 16,128-19,758 (and shifted every row after it). So at most 1 % of
# the file is stray bytes, never less than 64 bytes (a small file's few) nor more than 1 KB (a large file's
# lost kilobytes). Before any other marker the count says nothing: webcams write 1-10 bytes before restart
# markers, scanners thousands (2,634, a Brother DSmobile), and damage there shows as a few dozen. Smaller
# damage passes, as a few changed bytes always did.
STRAY_BYTES_BEFORE_THE_END = (64, 1024)
STRAY_FRACTION_BEFORE_THE_END = 0.01


def lost_picture(error: Exception, file_size: int) -> ImageDecodeError | None:
    """The row's error when ``error`` (from a strict libjpeg decode of ``file_size`` bytes) says part of the
    picture is lost, else None."""
    warning = str(error).strip()
    if warning.startswith(LOST_PICTURE):
        # The words of imaging.decode_errors, which reports a file cut short where Pillow notices it.
        return ImageDecodeError(
            f'corrupt or truncated image: libjpeg reports "{warning}", so part of the picture may be lost '
            "(decoded grey or smeared); re-upload the original photo"
        )
    left_over = extraneous_bytes_at_the_end(warning)
    if left_over is None or left_over <= stray_bytes_tolerated(file_size):
        return None
    return ImageDecodeError(
        f'corrupt or truncated image: libjpeg reports "{warning}", {left_over / max(file_size, 1):.0%} of the '
        "file not decoded, so part of the picture may be lost (the file is damaged, e.g. a wrong size in its "
        "header or data sent twice); re-upload the original photo"
    )


def extraneous_bytes_at_the_end(warning: str) -> int | None:
    """N of libjpeg's "N extraneous bytes before marker 0xd9" (the end of the image), else None."""
    found = EXTRANEOUS_BYTES.match(warning)
    return int(found[1]) if found is not None and found[2] == END_OF_IMAGE else None


def stray_bytes_tolerated(file_size: int) -> int:
    """How many bytes a file of ``file_size`` may leave undecoded before its end marker and still be whole."""
    fewest, most = STRAY_BYTES_BEFORE_THE_END
    return min(most, max(fewest, int(file_size * STRAY_FRACTION_BEFORE_THE_END)))


def strict_decode(data: bytes, **options: Any) -> np.ndarray | None:
    """``simplejpeg.decode_jpeg(data, strict=True, **options)``, or None when libjpeg doubts the file.

    Raises:
        ImageDecodeError: libjpeg lost part of the picture. Any other doubt (a warning that loses
            nothing, a file it cannot read) is None: Pillow decides whether the file decodes, and says why not.
    """
    try:
        pixels: np.ndarray = simplejpeg.decode_jpeg(data, strict=True, **options)
    except Exception as error:  # simplejpeg raises ValueError or RuntimeError, with libjpeg's message
        lost = lost_picture(error, len(data))
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
