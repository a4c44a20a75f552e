"""A round picture's black frame holds no picture: it is found and laid on the picture's mean colour (its curved
edge was read as a crack: 5 of 8 clean mosaics so framed), while a thin dark crack reaching the photo's edge, an
underexposed photo and a shadowed slab are never masked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from crack_model.core import frames
from crack_model.core.imaging import open_image
from tests import imagefiles
from tests.imagefiles import concrete, disc_mask, framed


def test_a_disc_frame_is_found_and_laid_on_the_picture_s_mean_colour():
    """A round picture on black: the black corners become the picture's mean colour; the picture stays as it is."""
    photo = concrete()
    picture = disc_mask(908, 908, 0.5)
    laid, frame = frames.without_frame(framed(photo, picture))
    assert frame is not None and 0.2 <= frame.share <= 0.3, "the corners of a disc are about 21 % of the square"
    mean = photo[picture].mean(axis=0)
    assert np.abs(np.asarray(frame.colour) - mean).max() <= 3, "the frame is not laid on the picture's mean colour"
    corners = ~disc_mask(908, 908, 0.51)  # where the disc touches the edge, a few black pixels share its blocks
    assert np.abs(laid[corners] - mean).max() <= 3, "black pixels are left outside the picture"
    kept = disc_mask(908, 908, 0.45)  # the mask grows a little over the frame's edge, never far into the picture
    assert np.array_equal(laid[kept], photo[kept]), "pixels of the picture changed"


@pytest.mark.parametrize(
    "dress", ["off centre", "feathered", "jpeg", "caption", "noise ring", "rounded rectangle", "octagon"]
)
def test_frames_of_every_usual_shape_are_found(dress):
    """Off centre, with a soft edge, JPEG-compressed, with a caption or a ring of noise in it, or cut-cornered."""
    photo, width = concrete(), 908
    picture = disc_mask(width, width, 0.46, (0.45, 0.55) if dress == "off centre" else (0.5, 0.5))
    if dress in ("rounded rectangle", "octagon"):
        mask = Image.new("L", (width, width), 0)
        draw, cut = ImageDraw.Draw(mask), 0.22 * width
        if dress == "octagon":
            draw.polygon([(cut, 0), (width - cut, 0), (width, cut), (width, width - cut), (width - cut, width),
                          (cut, width), (0, width - cut), (0, cut)], fill=255)  # fmt: skip
        else:
            draw.rounded_rectangle((0, 0, width - 1, width - 1), round(cut), 255)
        picture = np.asarray(mask) > 0
    image = Image.fromarray(framed(photo, picture))
    if dress == "feathered":
        soft = Image.fromarray(picture.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(18))
        image = Image.composite(Image.fromarray(photo), Image.new("RGB", image.size), soft)
    if dress == "caption":
        ImageDraw.Draw(image).text((12, 12), "CAM1 14:32", fill=(255, 255, 255), font=ImageFont.load_default(20))
    if dress == "noise ring":
        ring = disc_mask(width, width, 0.475) & ~picture
        pixels = np.asarray(image).copy()
        pixels[ring] = np.random.default_rng(0).integers(0, 200, (int(ring.sum()), 3))
        image = Image.fromarray(pixels)
    decoded = open_image(imagefiles.encode(image, "JPEG" if dress == "jpeg" else "PNG"))
    frame = frames.find_frame(np.asarray(decoded))
    assert frame is not None, f"no frame found ({dress})"
    assert abs(frame.share - (1 - picture.mean())) <= 0.06, f"the frame is {frame.share:.0%} of the photo ({dress})"


def test_a_thin_dark_crack_reaching_the_photo_s_edge_is_never_masked():
    """A black line 8 px wide from the edge to the middle is a crack, not a frame: nothing is masked."""
    photo = concrete()
    ImageDraw.Draw(image := Image.fromarray(photo)).line([(0, 400), (300, 420), (454, 470)], fill=(0, 0, 0), width=8)
    line = np.asarray(image)
    assert frames.border_share(line) > 0, "the line must reach the edge for this test"
    laid, frame = frames.without_frame(line.copy())
    assert frame is None and np.array_equal(laid, line)


def test_a_crack_running_into_a_frame_is_kept_past_the_frame_s_edge():
    """A crack inside a round picture that runs into its black frame: the frame is masked, the crack is not."""
    photo = framed(concrete(), picture := disc_mask(908, 908, 0.48))
    ImageDraw.Draw(image := Image.fromarray(photo)).line([(40, 454), (454, 454)], fill=(0, 0, 0), width=8)
    laid, frame = frames.without_frame(np.asarray(image).copy())
    assert frame is not None
    inside = disc_mask(908, 908, 0.44)  # the crack, away from the frame's edge
    crack = np.zeros_like(inside)
    crack[452:457, 60:454] = True
    assert (laid[crack & inside] == 0).all(), "the crack was painted over"
    assert (laid[~picture] != 0).any(axis=-1).all(), "the frame was not laid"


@pytest.mark.parametrize("light", [0.0, 0.04, 0.1])
def test_a_dark_photo_is_never_masked_whole(light):
    """An all-black photo and an underexposed slab (4 % and 10 % of the light) are pictures, not frames."""
    dark = (concrete() * light).astype(np.uint8)
    laid, frame = frames.without_frame(dark.copy())
    assert frame is None and np.array_equal(laid, dark)


@pytest.mark.parametrize("light", [0.05, 0.1])
def test_a_shadowed_half_of_a_slab_is_not_a_frame(light):
    """The left half of a slab in deep shadow (5 % or 10 % of the light): wide, dark, at the border, but concrete."""
    photo = concrete().astype(np.float32)
    photo[:, :430] *= light
    laid, frame = frames.without_frame(shadowed := photo.astype(np.uint8))
    assert frame is None and np.array_equal(laid, shadowed)


def test_a_photo_whose_border_is_not_dark_is_not_searched(monkeypatch):
    """The common case costs a look at two rings of border pixels: no thumbnail, no search."""
    monkeypatch.setattr(frames, "frame_of_thumbnail", lambda *args: pytest.fail("searched a photo with no dark border"))
    photo = concrete(4032, 3024)
    assert frames.without_frame(photo)[1] is None
    assert frames.image_without_frame(Image.fromarray(photo))[1] is None


def test_arrays_and_pillow_images_lose_the_same_frame():
    """Scoring's two decoders (simplejpeg's arrays, Pillow's images) give the same pixels once the frame is laid."""
    photo = framed(concrete(1000, 750), disc_mask(1000, 750, 0.45, (0.52, 0.5)))
    laid, frame = frames.without_frame(photo.copy())
    image, same = frames.image_without_frame(Image.fromarray(photo))
    assert frame is not None and same is not None and frame.share == same.share
    assert np.array_equal(np.asarray(image), laid)
    grey, grey_frame = frames.without_frame(np.asarray(Image.fromarray(photo).convert("L")).copy())
    assert grey_frame is not None and abs(grey_frame.share - frame.share) < 0.01
    assert abs(int(grey[0, 0]) - frame.grey) <= 1, "a grey photo's frame is laid on its mean grey"


def test_the_frame_s_colour_fades_into_the_picture_without_a_dark_ring():
    """The fill fades in over the frame's edge (a hard edge against a flat colour was read as a crack too), and no
    black from the frame is left in the fade."""
    picture = disc_mask(908, 908, 0.46)
    photo = np.full((908, 908, 3), 200, dtype=np.uint8)
    photo[:, :454] = 100  # the picture's mean is 150: its left edge fades from 150 down to 100
    laid, frame = frames.without_frame(framed(photo, picture))
    assert frame is not None and frame.colour == (150, 150, 150)
    row = laid[454, :200, 0].astype(int)
    assert row.min() >= 99, f"a dark ring is left at the frame's edge: {row.min()}"
    ramp = sorted({value for value in row if 101 <= value <= 149})
    assert len(ramp) >= 4, f"a hard step between the fill and the picture: {row[:80].tolist()}"
