"""A JPEG corrupted in the middle decodes in Pillow without a word; validation and scoring both refuse it."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from crack_model.core import jpeg_damage
from crack_model.core.errors import ImageDecodeError
from crack_model.core.file_signatures import FormatNotAcceptedError, jpeg_frame
from crack_model.core.imaging import DEFAULT_MAX_PIXELS, open_image, read_header
from crack_model.core.jpeg_damage import check_intact, lost_picture
from crack_model.core.jpeg_fast import decode_clean_jpeg
from crack_model.core.tiling import TileConfig, fit_to_tile_budget
from crack_model.quality import grey_image
from crack_model.quality.profile import ProfileConfig, profile_bytes
from crack_model.serving import inference
from tests import imagefiles
from tests.unit.core.test_jpeg_fast import photo

METU_CRACKS = Path(__file__).resolve().parents[4] / "shared" / "data" / "metu-sample" / "Positive"
LOST = "so part of the picture may be lost"


def pillow_decodes(data: bytes) -> bool:
    try:
        Image.open(io.BytesIO(data)).load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def corrupted_in_the_middle(data: bytes) -> bytes:
    """``data`` with 20 bytes of its picture overwritten: Pillow still decodes it, libjpeg reports data lost."""
    for seed in range(100):
        start = random.Random(seed).randrange(len(data) // 3, 2 * len(data) // 3)
        corrupt = bytearray(data)
        corrupt[start : start + 20] = random.Random(seed + 100).randbytes(20)
        if pillow_decodes(bytes(corrupt)) and lost_warning(bytes(corrupt)):
            return bytes(corrupt)
    raise AssertionError("no corruption of the picture that Pillow decodes and libjpeg notices")


def lost_warning(data: bytes) -> bool:
    try:
        simplejpeg.decode_jpeg(data, strict=True)
    except ValueError as error:
        return lost_picture(error, len(data)) is not None
    return False


def originals() -> dict[str, bytes]:
    """A real crack patch (when the shared data is here) and a multi-tile photo."""
    patches = sorted(METU_CRACKS.glob("*.jpg"))[:1]
    return {**{patch.name: patch.read_bytes() for patch in patches}, "photo-700x500": photo(700, 500)}


def scored(data: bytes, monkeypatch: pytest.MonkeyPatch, *, fast: bool, tiles: TileConfig) -> inference.ImageScore:
    """The row scoring makes of one upload, on the fast JPEG path or on Pillow's."""
    if not fast:
        monkeypatch.setattr(inference, "decodes_fast", lambda _: False)
    fetched = inference.fetch_object("upload.jpg", lambda _: data, 224, tiles, DEFAULT_MAX_PIXELS)
    prepared = inference.prepare(fetched, 224, tiles, DEFAULT_MAX_PIXELS)
    monkeypatch.undo()
    return prepared.score


@pytest.mark.parametrize("original", list(originals().values()), ids=list(originals()))
def test_a_jpeg_corrupted_in_the_middle_is_refused_by_validation_and_scoring(original, monkeypatch):
    damaged = corrupted_in_the_middle(original)
    assert pillow_decodes(damaged)  # what let it through as "ok" before

    with pytest.raises(ImageDecodeError, match=LOST):
        open_image(damaged)
    with pytest.raises(ImageDecodeError, match=LOST):
        decode_clean_jpeg(damaged, read_header(damaged))
    row = profile_bytes("upload.jpg", damaged, ProfileConfig())
    assert not row["decodable"] and LOST in row["decode_error"], row["decode_error"]
    # Whole on the fast path; shrunk on Pillow's (a tile budget of 1 makes the photo be scored smaller).
    for fast, tiles in ((True, TileConfig()), (False, TileConfig()), (False, TileConfig(max_tiles=1))):
        score = scored(damaged, monkeypatch, fast=fast, tiles=tiles)
        assert score.status == "error" and LOST in score.error and "re-upload" in score.error, (fast, tiles, score)
    # The same photo intact is scored.
    assert scored(original, monkeypatch, fast=True, tiles=TileConfig()).status == "ok"


def with_stray_bytes(data: bytes, marker: bytes, stray: bytes) -> bytes:
    """``stray`` inserted before every ``marker`` (a regular expression over the marker's two bytes)."""
    return re.sub(marker, lambda found: stray + found.group(0), data)


@pytest.mark.parametrize(
    ("where", "marker", "stray"),
    [
        ("before the end marker", rb"\xff\xd9", b"\x00" * 32),
        ("between header segments", rb"\xff\xdb", b"\x00"),
        ("before every restart marker", rb"\xff[\xd0-\xd7]", b"\x00\x00"),
    ],
)
def test_stray_bytes_of_an_intact_jpeg_are_not_damage(where, marker, stray, monkeypatch):
    """Cameras write stray bytes where nothing is lost (libjpeg: "N extraneous bytes before marker"): scored."""
    intact = imagefiles.encode(Image.open(io.BytesIO(photo(300, 240))), "JPEG", quality=90, restart_marker_blocks=1)
    padded = with_stray_bytes(intact, marker, stray)
    assert padded != intact
    with pytest.raises(ValueError, match="extraneous bytes before marker"):
        simplejpeg.decode_jpeg(padded, strict=True)
    check_intact(padded)
    assert decode_clean_jpeg(padded, read_header(padded)) is None  # strict libjpeg doubts it: Pillow decides
    assert np.array_equal(np.asarray(open_image(padded)), np.asarray(open_image(intact)))
    assert profile_bytes("upload.jpg", padded, ProfileConfig())["decodable"]
    assert scored(padded, monkeypatch, fast=True, tiles=TileConfig()).status == "ok"


@pytest.mark.parametrize("before_the_frame", [b"", b"\xff\xd0", b"\x00\xff\xff"])  # a restart marker, stray bytes
def test_an_arithmetic_coded_jpeg_is_refused_by_validation_and_scoring(before_the_frame, monkeypatch):
    """Pillow cannot decode arithmetic coding and simplejpeg can: refused from its header, the same everywhere."""
    data = photo(700, 500)
    frame = data.index(b"\xff\xc0")
    arithmetic = data[:frame] + before_the_frame + b"\xff\xc9" + data[frame + 2 :]  # arithmetic coding's frame
    with pytest.raises(ImageDecodeError, match="arithmetic-coded JPEG is not accepted"):
        open_image(arithmetic)
    row = profile_bytes("upload.jpg", arithmetic, ProfileConfig())
    assert not row["decodable"] and row["format"] == "arithmetic-coded JPEG"
    for fast, tiles in ((True, TileConfig()), (False, TileConfig(max_tiles=1))):
        score = scored(arithmetic, monkeypatch, fast=fast, tiles=tiles)
        assert score.status == "error" and "arithmetic-coded JPEG" in score.error


def test_a_jpeg_with_stray_bytes_is_read_strictly_once(monkeypatch):
    """libjpeg stops at the stray bytes' warning: asking it again about damage would only repeat the decode."""
    padded = with_stray_bytes(photo(700, 500), rb"\xff\xd9", b"\x00" * 60)
    calls = []
    real_decode = jpeg_damage.simplejpeg.decode_jpeg
    monkeypatch.setattr(jpeg_damage.simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    assert profile_bytes("upload.jpg", padded, ProfileConfig())["decodable"]
    assert len(calls) == 1
    fetched = inference.fetch_object("upload.jpg", lambda _: padded, 224, TileConfig(), DEFAULT_MAX_PIXELS)
    assert inference.prepare(fetched, 224, TileConfig(), DEFAULT_MAX_PIXELS).score.status == "ok"
    assert len(calls) == 2


def test_a_cmyk_jpeg_intact_passes_and_damaged_is_refused():
    cmyk = imagefiles.encode(Image.open(io.BytesIO(photo(400, 300))).convert("CMYK"), "JPEG", quality=90)
    check_intact(cmyk)
    assert open_image(cmyk).mode == "RGB"
    with pytest.raises(ImageDecodeError, match=LOST):
        open_image(corrupted_in_the_middle(cmyk))


def test_a_jpeg_missing_only_its_end_marker_is_refused_as_cut_short():
    """Pillow decoded some of these (its picture was whole); libjpeg says the file ended early, as a cut upload does."""
    data = imagefiles.jpeg(64, 48)
    with pytest.raises(ImageDecodeError, match='"Premature end of JPEG file"'):
        open_image(data[:-2])


@pytest.mark.parametrize(
    ("warning", "lost"),
    [
        ("Corrupt JPEG data: premature end of data segment", True),
        ("Corrupt JPEG data: bad Huffman code", True),
        ("Corrupt JPEG data: found marker 0xd9 instead of RST3", True),
        ("Premature end of JPEG file", True),
        ("Corrupt JPEG data: 60 extraneous bytes before marker 0xd9", False),  # stray bytes: cameras write them
        ("Corrupt JPEG data: 1 extraneous bytes before marker 0xdb", False),
        ("Corrupt JPEG data: 2634 extraneous bytes before marker 0xd2", False),  # a scanner's, before a restart
        ("Corrupt JPEG data: 1025 extraneous bytes before marker 0xd9", True),  # a kilobyte of picture left over
        ("Corrupt JPEG data: 362906 extraneous bytes before marker 0xd9", True),
        ("Corrupt JPEG data: bad ICC marker", False),
        ("Unsupported marker type 0x43", False),  # an error, not a warning: Pillow decides (and fails)
        ("tjDecompressHeader3(): Could not determine subsampling level of JPEG image", False),
    ],
)
def test_which_libjpeg_warnings_mean_a_lost_picture(warning, lost):
    """Of a 500 KB photo: the warnings of lost data, and more than a kilobyte left over before the end."""
    assert (lost_picture(ValueError(warning), 500_000) is not None) == lost


@pytest.mark.parametrize(
    ("left_over", "file_size", "lost"),
    [(64, 2_000, False), (65, 2_000, True), (150, 15_000, False), (151, 15_000, True), (1024, 5_000_000, False)],
)
def test_how_many_bytes_left_before_the_end_are_stray(left_over, file_size, lost):
    """A few stray bytes pass: 1 % of the file, at least 64 bytes, at most 1 KB."""
    warning = ValueError(f"Corrupt JPEG data: {left_over} extraneous bytes before marker 0xd9")
    assert (lost_picture(warning, file_size) is not None) == lost


def with_height(data: bytes, height: int) -> bytes:
    """``data`` whose frame header says ``height`` rows."""
    frame = data.index(b"\xff\xc0")
    return data[: frame + 5] + height.to_bytes(2, "big") + data[frame + 7 :]


def sent_twice(data: bytes, block: int) -> bytes:
    """``data`` with the ``block`` bytes before its middle repeated in place (a resumed transfer)."""
    middle = len(data) // 2
    return data[:middle] + data[middle - block : middle] + data[middle:]


@pytest.mark.parametrize(
    "damage",
    [lambda data: with_height(data, 476), lambda data: sent_twice(data, 16_384), lambda data: sent_twice(data, 4096)],
    ids=["height-bit-flipped", "16-KB-sent-twice", "4-KB-sent-twice"],
)
def test_a_jpeg_leaving_its_picture_undecoded_is_refused_by_validation_and_scoring(damage, monkeypatch):
    """libjpeg only says "N extraneous bytes before marker 0xd9"; a kilobyte or more of them is a lost picture."""
    damaged = damage(photo(1000, 750))
    with pytest.raises(ValueError, match="extraneous bytes before marker 0xd9"):
        simplejpeg.decode_jpeg(damaged, strict=True)
    assert pillow_decodes(damaged)  # what let it through as "ok" before

    with pytest.raises(ImageDecodeError, match=r"of the file not decoded.*re-upload"):
        open_image(damaged)
    row = profile_bytes("upload.jpg", damaged, ProfileConfig())
    assert not row["decodable"] and "not decoded" in row["decode_error"], row["decode_error"]
    for fast, tiles in ((True, TileConfig()), (False, TileConfig(max_tiles=1))):
        score = scored(damaged, monkeypatch, fast=fast, tiles=tiles)
        assert score.status == "error" and "not decoded" in score.error, (fast, tiles, score)


@pytest.mark.parametrize("max_tiles", [512, 120, 30, 12, 1])  # full size; resized after a full, 1/2, 1/4, 1/8 decode
def test_the_profiles_grey_decode_of_a_jpeg_is_pillows(max_tiles):
    """Validation decodes JPEGs to grey with libjpeg strict (to see damage): the pixels Pillow gave, at every scale."""
    data = photo(3001, 1999)
    config = ProfileConfig(tiles=TileConfig(max_tiles=max_tiles))
    scaled = fit_to_tile_budget(3001, 1999, config.tiles).scaled
    image = Image.open(io.BytesIO(data))
    image.draft("L", scaled)
    expected = image.convert("L")
    if expected.size != scaled:
        expected = expected.resize(scaled, Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(grey_image.decode_grey(data, config.tiles, config.max_pixels), np.asarray(expected))


def test_the_frame_walk_reads_markers_as_libjpeg_does():
    """Bytes inside a segment are not markers; a broken walk gives no refusal (the decoders decide), never a hang."""
    exif_full_of_frames = b"\xff\xe1" + (2 + 8).to_bytes(2, "big") + b"\xff\xc9" * 4
    intact = photo(64, 48)
    frame = jpeg_frame(intact[:2] + exif_full_of_frames + intact[2:])
    assert frame is not None and (frame.precision, frame.components, frame.progressive) == (8, 3, False)
    with pytest.raises(FormatNotAcceptedError, match="arithmetic"):
        jpeg_frame(b"\xff\xd8\xff\xe0\x00\x00\xff\xc9")  # libjpeg reads past an empty APP0
    assert jpeg_frame(b"\xff\xd8\xff\xdb\x00\x01\xff\xc9") is None  # ...not past a short DQT
    assert jpeg_frame(b"\xff\xd8\xff\xe0\xff\xf0") is None  # a length past the end
    assert jpeg_frame(b"\xff\xd8" + bytes(1_000_000)) is None  # no marker at all
    with pytest.raises(FormatNotAcceptedError, match="arithmetic"):
        jpeg_frame(b"\xff\xd8\xff\xd7\xff\xff\xff\xc9\x00\x11")
    assert jpeg_frame(b"\xff\xd8\xff\xc0\x00\x11\x08") is None  # a frame header cut short: the decoders say why
