"""HEIC (what iPhones save by default) decodes like any accepted photo: upright once, 8-bit RGB, bounded by
what libheif really decodes, and a damaged or hostile one is a row with a reason, never a crash. AVIF is
refused by name."""

from __future__ import annotations

import io
import itertools
import json
import random
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from pi_heif.as_plugin import HeifImageFile
from PIL import Image

from crack_model.core.errors import ImageDecodeError
from crack_model.core.file_signatures import FormatNotAcceptedError
from crack_model.core.imaging import open_image, read_header
from crack_model.quality.profile import profile_bytes
from tests import heif_grid, imagefiles

PROJECT = Path(__file__).resolve().parents[3]
ROTATIONS = {  # EXIF orientation: how the picture is stored so that turning it by the tag shows it upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def heic(image: Image.Image, orientation: int | None = None, **options: object) -> bytes:
    options.setdefault("quality", 95)
    return imagefiles.heic(image, orientation, **options)


def quadrants(width: int = 96, height: int = 64) -> Image.Image:
    """Red top left, blue bottom right, grey elsewhere: a turn or a flip moves the colours."""
    pixels = np.full((height, width, 3), 128, np.uint8)
    pixels[: height // 2, : width // 2] = (230, 20, 20)
    pixels[height // 2 :, width // 2 :] = (20, 20, 230)
    return Image.fromarray(pixels)


def mean_difference(image: Image.Image, expected: Image.Image) -> float:
    return float(np.abs(np.asarray(image, np.int16) - np.asarray(expected.convert("RGB"), np.int16)).mean())


def test_a_heic_decodes_to_its_pixels():
    picture = imagefiles.gradient_rgb(120, 90)
    data = heic(picture)
    header = read_header(data)
    assert (header.format, header.width, header.height, header.orientation) == ("HEIF", 120, 90, None)
    image = open_image(data)
    assert image.mode == "RGB" and image.size == (120, 90)
    assert mean_difference(image, picture) < 4


@pytest.mark.parametrize("orientation", ROTATIONS)
def test_a_turned_heic_is_decoded_upright_and_turned_once(orientation):
    """libheif turns it by its irot/imir boxes (written from the EXIF tag, as a camera does): once."""
    upright = quadrants()
    data = heic(upright.transpose(ROTATIONS[orientation]), orientation)
    header = read_header(data)
    assert (header.width, header.height) == upright.size
    assert mean_difference(open_image(data), upright) < 6
    assert mean_difference(open_image(data, size=(48, 32)), upright.resize((48, 32))) < 12


def test_an_xmp_orientation_does_not_turn_a_heic_a_second_time():
    """The HEIF standard: only irot/imir turn a HEIF. The encoder writes irot from the XMP tiff:Orientation, and
    libheif turns the photo by it; Pillow would read that XMP value (pi-heif misses it with a space after the
    digit) as an EXIF orientation, and turn the photo a second time."""
    upright = quadrants()
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"><tiff:Orientation>6 </tiff:Orientation>'
           b"</rdf:Description></rdf:RDF></x:xmpmeta>")  # fmt: skip
    data = heic(upright.transpose(Image.Transpose.ROTATE_90), xmp=xmp)
    assert b"irot" in data and Image.open(io.BytesIO(data)).getexif().get(0x0112) == 6  # Pillow alone: turned twice
    assert read_header(data).orientation is None
    assert mean_difference(open_image(data), upright) < 6


@pytest.mark.parametrize(
    "picture",
    [
        imagefiles.gradient_rgb(64, 48).convert("L"),
        imagefiles.gradient_rgb(64, 48).convert("RGBA"),
        Image.fromarray(np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)),
    ],
    ids=["grey", "alpha", "sixteen-bit-grey"],
)
def test_grey_alpha_and_deep_heics_decode_to_8bit_rgb(picture):
    image = open_image(heic(picture))
    assert image.mode == "RGB" and image.size == (64, 48)
    expected = picture if picture.mode != "I;16" else Image.fromarray((np.asarray(picture) >> 8).astype(np.uint8))
    assert mean_difference(image, expected) < 4


def test_a_heic_cut_short_is_a_damaged_photo_with_a_reason():
    data = heic(imagefiles.gradient_rgb(200, 150))
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: its header cannot be read"):
        open_image(data[:200])
    with pytest.raises(ImageDecodeError, match=r"^corrupt or truncated image: .+\S$"):
        open_image(data[: len(data) // 2])


def test_damaged_pictures_inside_a_heic_are_decode_errors():
    """libheif's errors come as RuntimeError (a frame larger than its header says) and ValueError (a damaged
    slice): both are reasons, not faults of ours."""
    data = heic(imagefiles.gradient_rgb(300, 200), quality=60)
    lying = bytearray(data)
    at = data.find(b"ispe")
    lying[at + 8 : at + 16] = struct.pack(">II", 100, 100)
    with pytest.raises(ImageDecodeError, match=r"^corrupt or truncated image: .*Security limit exceeded"):
        open_image(bytes(lying))
    row = profile_bytes("lying.heic", bytes(lying))  # validation decodes it its own way: the same reason
    assert row["decode_error"].startswith("corrupt or truncated image: ") and "Security limit" in row["decode_error"]
    start = data.find(b"mdat") + 8
    refused = 0
    for seed in range(40):  # three bytes of the first slice's header changed
        damaged = bytearray(data)
        rng = random.Random(seed)
        for _ in range(3):
            damaged[rng.randrange(start, start + 52)] = rng.randrange(256)
        try:
            open_image(bytes(damaged))
        except ImageDecodeError:
            refused += 1
    assert refused  # any exception but ImageDecodeError would have failed the test


CRASHES_PI_HEIF_1_4 = """
import sys
from crack_model.core.errors import ImageDecodeError
from crack_model.core.imaging import read_header
try:
    read_header(open(sys.argv[1], "rb").read())
except ImageDecodeError as error:
    print(error)
"""


@pytest.mark.parametrize("field", ["item type", "content type"])
def test_a_heic_whose_metadata_items_are_not_text_is_refused_without_crashing(field, tmp_path):
    """pi-heif 1.4 dies of a segmentation fault on a metadata item whose type or content type is not UTF-8; the
    boxes are checked before it reads them. In a child process, so that a crash fails this test, not the run."""
    data = bytearray(heic(imagefiles.gradient_rgb(64, 48), 6, xmp=b"<x:xmpmeta/>"))
    items = data.find(b"iinf")
    if field == "item type":
        data[data.find(b"Exif", items)] = 0x80
    else:
        content_type = data.find(b"application/rdf+xml", items)
        data[content_type] = 0xC3  # the start of a two-byte character, followed by a plain one
    path = tmp_path / "hostile.heic"
    path.write_bytes(bytes(data))
    result = subprocess.run(
        [sys.executable, "-c", CRASHES_PI_HEIF_1_4, str(path)], capture_output=True, text=True, cwd=PROJECT, timeout=60
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-500:]}"
    assert result.stdout.startswith("damaged HEIC file: it holds"), result.stdout


def test_a_heif_whose_boxes_end_early_is_a_damaged_photo():
    """An empty item list at the very end of the file: the box walk must not fail with an error of its own."""
    ftyp = heif_grid.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic")
    data = ftyp + heif_grid.box(b"meta", bytes(4) + heif_grid.box(b"iinf", b""))
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file"):
        read_header(data)


def test_an_iphone_style_grid_decodes_to_its_picture():
    """iPhones store a photo as a grid of 512-px tiles, each its own HEVC picture, cropped at the edges."""
    picture = imagefiles.gradient_rgb(500, 400)
    tiles, rows, columns = heif_grid.split(picture, 256)
    data = heif_grid.grid_heic(tiles, rows, columns, picture.size)
    assert (read_header(data).width, read_header(data).height) == (500, 400)
    assert mean_difference(open_image(data), picture) < 4


def test_a_grid_of_tiles_bigger_than_its_picture_counts_the_tiles():
    """A 15 KB file can declare a small picture made of one huge tile, or of one tile repeated 64 times: libheif
    decodes every tile whole. The pixel limit and the memory estimate count the tiles, not the picture."""
    huge_tile = heif_grid.grid_heic(Image.new("RGB", (2000, 1500), (90, 100, 110)), 1, 1, (200, 150))
    header = read_header(huge_tile)
    assert (header.width, header.height) == (200, 150)
    assert header.peak_bytes() > 2 * 1.5 * 2000 * 1500  # libheif's planes of the tile
    with pytest.raises(ImageDecodeError, match=r"^image too large: its tiles hold 3,000,000 pixels"):
        open_image(huge_tile, max_pixels=1_000_000)
    repeated = heif_grid.grid_heic(Image.new("RGB", (500, 400), (90, 100, 110)), 8, 8, (500, 400))
    with pytest.raises(ImageDecodeError, match=r"^image too large: its tiles hold 12,800,000 pixels"):
        read_header(repeated, max_pixels=5_000_000)


def test_a_heic_over_the_pixel_limit_is_refused_before_it_is_decoded(monkeypatch):
    data = heic(Image.new("RGB", (400, 300), (90, 90, 90)))

    def explode(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(HeifImageFile, "load", explode)
    with pytest.raises(ImageDecodeError, match="image too large: 400x300"):
        open_image(data, max_pixels=100_000)


def test_avif_is_refused_by_name_and_never_decoded():
    """libavif decodes the whole AV1 frame whatever size the header gives: AVIF is not accepted, and one
    inside a generic HEIF ("mif1") is refused as a codec libheif has no decoder for here."""
    avif = imagefiles.encode(imagefiles.gradient_rgb(80, 60), "AVIF", quality=60)
    with pytest.raises(FormatNotAcceptedError, match=r"^format AVIF is not accepted: upload JPEG, HEIC, PNG"):
        open_image(avif)
    with pytest.raises(FormatNotAcceptedError, match=r"^format HEIF of a codec other than HEVC is not accepted"):
        open_image(avif[:8] + b"mif1" + avif[12:])
    generic = heic(imagefiles.gradient_rgb(80, 60))
    assert read_header(generic[:8] + b"mif1" + generic[12:]).format == "HEIF"  # HEVC inside: decoded


def test_a_grid_made_of_itself_is_a_damaged_photo():
    """A grid whose tiles are the grid: refused before libheif follows the loop."""
    data = bytearray(heif_grid.grid_heic(Image.new("RGB", (64, 64), (90, 100, 110)), 2, 2, (128, 128)))
    references = data.find(b"dimg") + 4 + 4  # after the grid's own item_ID and the count
    data[references : references + 8] = struct.pack(">HHHH", 1, 1, 1, 1)
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: it holds pictures that reference themselves"):
        read_header(bytes(data))


def _meta_only(*children: bytes, metas: int = 1) -> bytes:
    meta = heif_grid.box(b"meta", bytes(4) + b"".join(children))
    return heif_grid.box(b"ftyp", b"heic" + bytes(4) + b"mif1heic") + meta * metas


def _items(count: int, kind: bytes = b"hvc1") -> bytes:
    entries = [
        heif_grid.full_box(b"infe", 2, 0, struct.pack(">HH", item, 0) + kind + b"\0") for item in range(1, count + 1)
    ]
    return heif_grid.full_box(b"iinf", 0, 0, struct.pack(">H", count) + b"".join(entries))


def test_references_that_fan_out_are_refused_before_libheif_follows_them():
    """libheif follows every path of references from the primary item when it opens a file, whatever the items'
    types: 4 levels of 60 items each referencing all 60 below are 216,061 paths from 9 KB (18 items on 6
    levels took 3 s; on 8, about 40 minutes)."""
    width, levels = 60, 4
    level = [[1]] + [list(range(2 + width * index, 2 + width * (index + 1))) for index in range(levels - 1)]
    references = b"".join(
        heif_grid.box(b"dimg", struct.pack(">HH", source, len(below)) + b"".join(struct.pack(">H", t) for t in below))
        for above, below in itertools.pairwise(level)
        for source in above
    )
    data = _meta_only(
        heif_grid.full_box(b"pitm", 0, 0, struct.pack(">H", 1)),
        _items(1 + width * (levels - 1)),
        heif_grid.full_box(b"iref", 0, 0, references),
    )
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: it holds more than 100,000 paths of references"):
        read_header(data)


@pytest.mark.parametrize("twice", ["meta", "pitm", "iinf"])
def test_a_heif_with_two_item_lists_is_refused_not_read_two_ways(twice):
    """libheif reads the last meta box and the first pitm and iinf in it; a check that read others could be
    fooled (a second pitm naming a small tile passed a grid of big ones), so no camera's file has two."""
    pitm, iinf = heif_grid.full_box(b"pitm", 0, 0, struct.pack(">H", 1)), _items(1)
    children = [pitm, pitm, iinf] if twice == "pitm" else [pitm, iinf, iinf] if twice == "iinf" else [pitm, iinf]
    data = _meta_only(*children, metas=2 if twice == "meta" else 1)
    with pytest.raises(ImageDecodeError, match=rf"^damaged HEIC file: it holds (2 meta boxes|two {twice} boxes)"):
        read_header(data)


def _grid_of_one_tile(associations: list[bytes], *, chain: int = 0) -> bytes:
    """A grid (item 1) of one tile (item 2) whose properties are ispe 8192x8192 (1), ispe 64x64 (2) and
    ispe 128x128 (3); ``chain``: grids 3, 4, ... each referencing the next, all referenced by item 1 too."""
    pitm = heif_grid.full_box(b"pitm", 0, 0, struct.pack(">H", 1))
    grids = list(range(3, 3 + chain))
    kinds = {1: b"grid", 2: b"hvc1", **dict.fromkeys(grids, b"grid")}
    entries = [
        heif_grid.full_box(b"infe", 2, 0, struct.pack(">HH", item, 0) + kind + b"\0") for item, kind in kinds.items()
    ]
    iinf = heif_grid.full_box(b"iinf", 0, 0, struct.pack(">H", len(entries)) + b"".join(entries))

    def dimg(source: int, targets: list[int]) -> bytes:
        return heif_grid.box(
            b"dimg", struct.pack(">HH", source, len(targets)) + b"".join(struct.pack(">H", t) for t in targets)
        )

    links = [dimg(1, [*reversed(grids), 2])] + [dimg(a, [b]) for a, b in itertools.pairwise([*grids, 2])]
    iref = heif_grid.full_box(b"iref", 0, 0, b"".join(links))
    sizes = ((8192, 8192), (64, 64), (128, 128))
    ipco = heif_grid.box(
        b"ipco", b"".join(heif_grid.full_box(b"ispe", 0, 0, struct.pack(">II", *size)) for size in sizes)
    )
    ipma = b"".join(heif_grid.full_box(b"ipma", 0, 0, struct.pack(">I", 1) + entry) for entry in associations)
    return _meta_only(pitm, iinf, iref, heif_grid.box(b"iprp", ipco + ipma))


def test_a_tile_is_counted_at_its_first_size_as_libheif_reads_it():
    """libheif takes a picture's first size and its first list of properties: a second, smaller one must not
    lower the count (a 64x64 size after an 8192x8192 one let a grid of a 67 MP tile pass a 1 MP limit)."""
    grid = struct.pack(">HB", 1, 1) + bytes([3])
    data = _grid_of_one_tile([grid + struct.pack(">HB", 2, 2) + bytes([1, 2])])
    with pytest.raises(ImageDecodeError, match=r"^image too large: its tiles hold 67,108,864 pixels"):
        read_header(data, max_pixels=1_000_000)
    two_lists = _grid_of_one_tile([grid + struct.pack(">HB", 2, 1) + bytes([1]), struct.pack(">HB", 2, 1) + bytes([2])])
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: it holds two lists of properties"):
        read_header(two_lists)


def test_a_chain_of_grids_is_refused_however_it_is_reached():
    """Grids 3..12 each referencing the next, and all referenced by the primary from the deepest up: the depth
    is checked on every way into a picture, not only the first."""
    associations = [struct.pack(">HB", 1, 1) + bytes([3]) + struct.pack(">HB", 2, 1) + bytes([2])]
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: it holds pictures derived from pictures more"):
        read_header(_grid_of_one_tile(associations, chain=10))


def test_a_grid_tile_without_a_size_is_refused():
    """Its pixels could not be counted, and libheif would fail on it only once decoding reached it."""
    data = bytearray(heif_grid.grid_heic(Image.new("RGB", (64, 64), (90, 100, 110)), 2, 2, (128, 128)))
    associations = data.find(b"ipma") + 4 + 8  # the grid's entry: item 1, one property, index 3
    tile_entry = associations + 4
    data[tile_entry + 3 : tile_entry + 5] = bytes([0x81, 0x81])  # the tile: hvcC twice, no ispe
    with pytest.raises(ImageDecodeError, match=r"^damaged HEIC file: it holds a tile without a size"):
        read_header(bytes(data))


DECODE_IN_A_FRESH_PROCESS = """
import json, sys
from crack_model.core.imaging import open_image, read_header
from crack_model.quality.profile import profile_bytes

def status(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))

data = open(sys.argv[1], "rb").read()
header = read_header(data)
open("/proc/self/clear_refs", "w").write("5")  # VmHWM starts again from what the process holds now
before = status("VmRSS")
image = open_image(data)
print(json.dumps({"growth": status("VmHWM") - before, "estimate": header.peak_bytes(),
                  "pillow_only": header.decoded_bytes(), "size": image.size}))
"""


def _photo(width: int, height: int, alpha: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    texture = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    pixels = np.asarray(texture.resize((width, height), Image.Resampling.BICUBIC))
    return np.dstack([pixels, np.full((height, width), 200, np.uint8)]) if alpha else pixels


def _encoded(variant: str, width: int, height: int) -> bytes:
    """HEICs as cameras write them: 8-bit 4:2:0 (iPhone), 10-bit 4:2:2 (Canon and Sony .hif), with alpha, turned."""
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = {"exif": exif.tobytes()} if "turned" in variant else {}
    alpha = "alpha" in variant
    pixels = _photo(width, height, alpha)
    if variant.endswith("grid"):
        tiles, rows, columns = heif_grid.split(Image.fromarray(pixels), 512)
        return heif_grid.grid_heic(tiles, rows, columns, (width, height))
    if variant.startswith("10bit"):
        mode = "RGBA;16" if alpha else "RGB;16"
        picture = pillow_heif.from_bytes(mode, (width, height), (pixels.astype(np.uint16) << 8).tobytes())
    else:
        picture = pillow_heif.from_pillow(Image.fromarray(pixels, "RGBA" if alpha else "RGB"))
    chroma = 444 if "444" in variant else 422 if "422" in variant else 420
    buffer = io.BytesIO()
    picture.save(buffer, format="HEIF", quality=50, chroma=chroma, enc_params={"preset": "ultrafast"}, **turned)
    return buffer.getvalue()


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak memory is read from Linux's /proc")
@pytest.mark.parametrize(
    "variant", ["8bit-420", "8bit-420-turned", "10bit-422", "10bit-444-alpha-turned", "8bit-420-grid"]
)
def test_the_header_bounds_what_decoding_a_heic_holds(variant, tmp_path):
    """libheif keeps its planes (2 bytes a sample above 8 bits, a turned copy) and an interleaved picture while
    Pillow copies it: the estimate counts them (counting Pillow's image alone, it was exceeded 2.3-3 times)."""
    path = tmp_path / f"{variant}.heic"
    path.write_bytes(_encoded(variant, 2000, 1500))
    result = subprocess.run(
        [sys.executable, "-c", DECODE_IN_A_FRESH_PROCESS, str(path)],
        capture_output=True, text=True, check=True, cwd=PROJECT, timeout=120,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(report["size"]) == [1500, 2000]
    assert report["pillow_only"] < report["growth"] <= report["estimate"], report
