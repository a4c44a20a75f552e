"""Transparent pixels hold no picture: they are decoded as the opaque pixels' mean colour, not as whatever colour
the saving program kept under them (most keep black, and a cut-out's outline became a dark edge read as a crack)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from crack_model.core import pixel_modes
from crack_model.core.imaging import open_image
from crack_model.quality.grey_image import to_grey
from tests import imagefiles

METU_CLEAN = Path(__file__).resolve().parents[4] / "shared" / "data" / "metu-sample" / "Negative"


def concrete(width: int = 454, height: int = 454) -> Image.Image:
    """Clean concrete: four real METU patches side by side when the shared data is here, else a gradient."""
    patches = sorted(METU_CLEAN.glob("*.jpg"))[:4]
    if len(patches) < 4:
        return imagefiles.gradient_rgb(width, height)
    photo = Image.new("RGB", (454, 454))
    for index, path in enumerate(patches):
        with Image.open(path) as patch:
            photo.paste(patch.convert("RGB"), (227 * (index % 2), 227 * (index // 2)))
    return photo.resize((width, height)) if (width, height) != photo.size else photo


def cut_out(photo: Image.Image, under: tuple[int, int, int]) -> tuple[Image.Image, np.ndarray]:
    """``photo`` with a transparent oval, the colour ``under`` kept beneath it (as an editor saves it)."""
    alpha = Image.new("L", photo.size, 255)
    width, height = photo.size
    ImageDraw.Draw(alpha).ellipse((width * 0.3, height * 0.3, width * 0.8, height * 0.9), fill=0)
    rgba = Image.composite(photo, Image.new("RGB", photo.size, under), alpha).convert("RGBA")
    rgba.putalpha(alpha)
    return rgba, np.asarray(alpha) == 255


def test_a_cut_out_is_laid_on_the_mean_colour_of_the_photo_not_on_black():
    """A transparent oval saved with black beneath it decodes to the opaque pixels' mean colour: no dark outline
    (before: black, and 12 of 12 clean mosaics with such an oval were labeled crack by the demo model)."""
    rgba, opaque = cut_out(concrete(), under=(0, 0, 0))
    decoded = np.asarray(open_image(imagefiles.encode(rgba, "PNG")), dtype=np.int16)
    photo = np.asarray(rgba.convert("RGB"), dtype=np.int16)
    mean = photo[opaque].mean(axis=0)
    inside = decoded[~opaque]
    assert np.abs(inside - mean).max() <= 1, "the transparent pixels are not the opaque pixels' mean colour"
    assert np.array_equal(decoded[opaque], photo[opaque]), "the opaque pixels must stay as they are"
    # Whatever colour was kept beneath the transparent pixels, the same picture is scored.
    white, _ = cut_out(concrete(), under=(255, 255, 255))
    assert np.array_equal(np.asarray(open_image(imagefiles.encode(white, "PNG")), dtype=np.int16), decoded)


@pytest.mark.parametrize("mode", ["LA", "PA", "P", "RGBa"])
def test_every_mode_with_transparency_is_laid_on_the_same_colour(mode):
    """Grey+alpha, palette+alpha, a palette's transparent index and premultiplied RGBa come out as RGBA does."""
    photo = concrete(120, 90).convert("L").convert("RGB")  # grey, so an LA or palette copy keeps its colours
    rgba, opaque = cut_out(photo, under=(0, 0, 0))
    if mode == "P":
        image = photo.quantize(255)
        pixels = np.asarray(image).copy()
        pixels[~opaque] = 255  # the palette's unused last index, transparent
        image = Image.fromarray(pixels, "P")
        image.putpalette(photo.quantize(255).getpalette())
        image.info["transparency"] = 255
        expected = pixel_modes.to_rgb(image.convert("RGBA"))
    else:
        image = rgba.convert(mode)
        expected = pixel_modes.to_rgb(image.convert("RGBA"))
    decoded = np.asarray(pixel_modes.to_rgb(image), dtype=np.int16)
    assert np.abs(decoded - np.asarray(expected, dtype=np.int16)).max() <= 1
    grey = decoded[..., 0]
    assert grey[~opaque].min() >= grey[opaque].mean() - 2, "transparent pixels came out dark"


@pytest.mark.parametrize("opacity", [255, 128, 0])
def test_one_opacity_for_the_whole_picture_changes_nothing(opacity):
    """Most RGBA exports are opaque everywhere, and a layer's opacity is the same everywhere: such a picture decodes
    exactly as its colour bands, at full contrast."""
    photo = concrete()
    rgba = photo.convert("RGBA")
    rgba.putalpha(opacity)
    assert pixel_modes.transparency(rgba) is None
    assert np.array_equal(np.asarray(open_image(imagefiles.encode(rgba, "PNG"))), np.asarray(photo))


def test_the_most_opaque_pixel_counts_as_opaque():
    """A 16-bit grey+alpha PNG of a camera's 12-bit data with a 12-bit alpha (4095: 15 in its high byte) keeps its
    opaque pixels as they are, and lays only the transparent ones on the mean, as an 8-bit cut-out."""
    grey = np.asarray(concrete(120, 90).convert("L"), dtype=np.uint16)
    alpha = np.full(grey.shape, 4095, dtype=np.uint16)
    alpha[30:60, 40:80] = 0
    decoded = np.asarray(open_image(imagefiles.sixteen_bit_colour_png(np.dstack([grey << 4, alpha]))), np.int16)
    opaque = alpha > 0
    assert np.array_equal(decoded[opaque][:, 0], grey[opaque])
    assert np.abs(decoded[~opaque][:, 0] - grey[opaque].mean()).max() <= 1


def test_a_shrunk_cut_out_uses_the_whole_photo_s_colour_in_every_band(monkeypatch):
    """Shrunk a band of rows at a time (a large RGBA upload), the fill is the whole photo's mean, not each band's:
    bands of another colour would draw straight edges across the transparent area."""
    monkeypatch.setattr(pixel_modes, "CHUNK_PIXELS", 5000)  # many bands
    rgba, _ = cut_out(concrete(), under=(0, 0, 0))
    banded = np.asarray(pixel_modes.rgb_reduced(rgba, 2))
    whole = np.asarray(pixel_modes.to_rgb(rgba).reduce(2))
    assert np.array_equal(banded, whole)
    shrunk = np.asarray(open_image(imagefiles.encode(rgba, "PNG"), size=(227, 227)), dtype=np.int16)
    assert np.abs(shrunk - np.asarray(Image.fromarray(whole).resize((227, 227)), dtype=np.int16)).mean() < 2


def test_validation_measures_a_cut_out_as_scoring_sees_it():
    """The grey image validation profiles (brightness, dark share) is the one scored: no black oval in it."""
    rgba, opaque = cut_out(concrete(), under=(0, 0, 0))
    grey = np.asarray(to_grey(rgba), dtype=np.int16)
    assert np.array_equal(grey, np.asarray(pixel_modes.to_rgb(rgba).convert("L"), dtype=np.int16))
    assert grey[~opaque].min() > 5


def feathered_cut_out(photo: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(colours, alpha) of ``photo`` with a transparent oval whose edge fades over a few pixels (anti-aliased)."""
    alpha = Image.new("L", photo.size, 255)
    width, height = photo.size
    ImageDraw.Draw(alpha).ellipse((width * 0.3, height * 0.3, width * 0.8, height * 0.9), fill=0)
    alpha = alpha.filter(ImageFilter.GaussianBlur(2))
    return np.asarray(photo, dtype=np.float32), np.asarray(alpha)


def test_premultiplied_colours_leave_no_dark_ring_at_a_cut_out_s_edge():
    """A PNG written with colours multiplied by alpha (against the standard) decodes as its straight-alpha twin:
    laid down as straight alpha, the fading edge was darkened twice, a dark ring that 6 of 12 clean mosaics with
    such a cut-out were labeled crack for."""
    colours, alpha = feathered_cut_out(concrete())
    weight = alpha[..., None].astype(np.float32) / 255
    straight = np.dstack([np.where(weight > 0, colours, 0).astype(np.uint8), alpha])
    premultiplied = np.dstack([(colours * weight).round().astype(np.uint8), alpha])
    expected = np.asarray(open_image(imagefiles.encode(Image.fromarray(straight, "RGBA"), "PNG")), dtype=np.int16)
    decoded = np.asarray(open_image(imagefiles.encode(Image.fromarray(premultiplied, "RGBA"), "PNG")), np.int16)
    edge = (alpha > 0) & (alpha < 255)
    assert edge.sum() > 100
    # Dividing by a small alpha brings back rounding: a few levels where a pixel is nearly transparent.
    assert np.abs(decoded - expected)[edge].mean() < 2
    assert np.abs(decoded - expected).max() <= 8


def test_a_straight_cut_out_is_not_taken_for_premultiplied():
    """An ordinary anti-aliased cut-out (colours brighter than their alpha at the edge) keeps its colours."""
    colours, alpha = feathered_cut_out(concrete())
    straight = Image.fromarray(np.dstack([colours.astype(np.uint8), alpha]), "RGBA")
    laid = pixel_modes.transparency(straight)
    assert laid is not None and not laid.premultiplied
