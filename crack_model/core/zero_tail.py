"""HEIC and WebP cut short into a file of the right size: an interrupted copy leaves a tail of zeros.

A copy into a preallocated file (some sync tools and SD-card writers reserve the whole size first) that
stops early leaves the file its full size with zeros where the rest of the photo should be. A JPEG, a
PNG or a TIFF then fails to decode, but libheif and libwebp decode the zeros as picture without a word:
the bottom of the photo comes out smeared or flat, and a crack there was missed. The tail itself is the
evidence, measured against what intact files end with (tests/unit/core/test_zero_tail.py):

* HEIC: the HEVC stream never holds three zero bytes in a row (its emulation prevention bytes break
  every run), and the boxes after it end with a few (8 at most, a picture's item properties; 6 after
  EXIF).
* WebP: the lossless and animated ones end with at most 21, EXIF with 6; a lossy picture of one flat
  colour ends with 5.4 % of its file in zeros (its data of blocks that change nothing: 4,616 bytes of
  an 8000x6000 one, 85 KB), a photo with flat stretches less.

So a tail of zeros over 1 KB is refused, and in a WebP only when it is also over a tenth of the file.
A tail cut shorter than that still decodes unnoticed. Asked once the file opened: one whose header the
zeros took keeps the decoders' reason ("damaged HEIC file: its header cannot be read").
"""

from __future__ import annotations

from crack_model.core.errors import REUPLOAD, ImageDecodeError
from crack_model.core.file_signatures import accepted_format

# Per format (as file_signatures names it): the longest tail of zeros an intact file may end with, in
# bytes, and as a fraction of the file.
MOST_ZEROS_AT_THE_END = {"HEIC": (1024, 0.0), "HEIF": (1024, 0.0), "WebP": (1024, 0.1)}
SCAN_CHUNK = 64 * 1024


def zero_tail_refusal(data: bytes) -> ImageDecodeError | None:
    """The error for a HEIC or WebP whose end is a run of zeros no intact one ends with, else None."""
    most = MOST_ZEROS_AT_THE_END.get(accepted_format(data) or "")
    if most is None:
        return None
    zeros = trailing_zeros(data)
    most_bytes, most_fraction = most
    if zeros <= most_bytes or zeros <= most_fraction * len(data):
        return None
    return ImageDecodeError(
        f"corrupt or truncated image: its last {zeros:,} bytes ({zeros / len(data):.0%} of the file) are zeros, "
        f"as a copy interrupted into a file of the right size leaves them; {REUPLOAD}"
    )


def trailing_zeros(data: bytes) -> int:
    """How many zero bytes ``data`` ends with, counted from the end a chunk at a time: ``rstrip`` copied the
    whole photo (every HEIC and WebP, tens of MB, on every fetching thread) to measure a tail of a few bytes."""
    end = len(data)
    while end > 0:
        start = max(0, end - SCAN_CHUNK)
        if data.count(0, start, end) != end - start:  # counts in place: only the chunk the zeros end in is copied
            return len(data) - start - len(data[start:end].rstrip(b"\x00"))
        end = start
    return len(data)
