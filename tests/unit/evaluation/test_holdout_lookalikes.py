"""The gate's look-alike check on real photos: distinct photos of flat surfaces whose 64-bit perceptual hashes
happen to be within ``LOOKALIKE_BITS`` are graded on; a re-saved copy of a training photo is not."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image, ImageEnhance, ImageOps

from crack_model.core.imaging import open_image
from crack_model.data.labeled import LabeledImage, fingerprint_all
from crack_model.evaluation.holdout import load_holdout
from crack_model.evaluation.holdout_checks import LOOKALIKE_BITS, same_picture, without_training_lookalikes
from tests.conftest import METU_SAMPLE, SHARED

SITE_B = SHARED / "data" / "site-b-pavement"
CLASSES = ("Negative", "Positive")
# Site-b photos (flat plaster, pavement) whose dHash is within 5-6 bits of the METU patch Negative/08080.jpg: a
# gate whose training data held that patch left them out of grading as copies of it.
FLAT_PHOTOS = ("Negative/08085.jpg", "Negative/09810.jpg", "Positive/07809.jpg", "Positive/10806.jpg")
UNLIKE_ANY = "Negative/00004.jpg"  # far from every photo above

pytestmark = pytest.mark.skipif(not (SITE_B / "Positive").is_dir(), reason=f"needs the shared photos in {SITE_B}")


def _training_rows(images: list[LabeledImage]) -> list[dict[str, str]]:
    readable, unreadable = fingerprint_all(images)
    assert not unreadable
    return [{"uri": image.uri, "label": image.label, "sha256": image.sha256,
             "perceptual_hash": image.perceptual_hash} for image in readable]  # fmt: skip


def _holdout_of(folder, names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SITE_B / name, folder / name)
    return load_holdout(str(folder), CLASSES)


def test_distinct_flat_photos_whose_hashes_nearly_match_a_training_patch_are_graded_on(tmp_path):
    holdout = _holdout_of(tmp_path / "holdout", FLAT_PHOTOS)
    training = _training_rows([LabeledImage(str(METU_SAMPLE / "Negative" / "08080.jpg"), "Negative")])

    graded = without_training_lookalikes(holdout, training, CLASSES)

    assert graded.left_out == {} and len(graded.images) == 4


def test_a_copy_of_a_training_photo_is_still_left_out_and_one_whose_original_is_gone_by_its_hash(tmp_path):
    original = tmp_path / "train" / "Positive" / "07809.png"
    original.parent.mkdir(parents=True)
    photo = ImageOps.exif_transpose(Image.open(SITE_B / "Positive" / "07809.jpg")).convert("RGB")
    ImageEnhance.Brightness(photo.crop((2, 2, photo.width - 2, photo.height - 2))).enhance(1.03).save(original)
    gone = tmp_path / "train" / "Negative" / "09810.png"
    gone.parent.mkdir(parents=True)
    shutil.copy(SITE_B / "Negative" / "09810.jpg", gone)
    training = _training_rows([LabeledImage(str(original), "Positive"), LabeledImage(str(gone), "Negative")])
    gone.unlink()  # moved away after training: its pixels cannot be compared, the hash alone decides
    holdout = _holdout_of(tmp_path / "holdout", (*FLAT_PHOTOS, UNLIKE_ANY))

    graded = without_training_lookalikes(holdout, training, CLASSES)

    # 08085 is within 8 bits of 09810 too: with 09810 gone, the hash alone leaves it out, on the safe side.
    assert set(graded.left_out) == {"Positive/07809.jpg", "Negative/09810.jpg", "Negative/08085.jpg"}
    assert "near-same perceptual hash and pixels" in graded.left_out["Positive/07809.jpg"]
    assert "could not be compared" in graded.left_out["Negative/09810.jpg"]


def test_a_copy_of_a_training_photo_whose_file_was_replaced_since_training_is_left_out_by_its_hash(tmp_path):
    """The training file replaced by another photo of the same name: its pixels were compared with the holdout's
    copy of the photo trained on, which then graded the model; not the bytes trained on, it is not compared."""
    original = tmp_path / "train" / "Positive" / "07809.png"
    original.parent.mkdir(parents=True)
    ImageOps.exif_transpose(Image.open(SITE_B / "Positive" / "07809.jpg")).convert("RGB").save(original)
    training = _training_rows([LabeledImage(str(original), "Positive")])
    ImageOps.exif_transpose(Image.open(SITE_B / UNLIKE_ANY)).convert("RGB").save(original)  # replaced since
    holdout = _holdout_of(tmp_path / "holdout", ("Positive/07809.jpg", "Positive/00053.jpg", UNLIKE_ANY))

    graded = without_training_lookalikes(holdout, training, CLASSES)

    assert set(graded.left_out) == {"Positive/07809.jpg"}
    assert "could not be compared: its bytes changed since training" in graded.left_out["Positive/07809.jpg"]


def test_same_picture_tells_a_resized_copy_from_a_flat_photo_of_another_surface():
    patch = open_image((METU_SAMPLE / "Negative" / "08080.jpg").read_bytes())
    plaster = open_image((SITE_B / "Positive" / "07809.jpg").read_bytes())  # upright, as scoring decodes it
    assert same_picture(patch, patch.resize((113, 113)))
    assert not same_picture(patch, plaster)
    assert LOOKALIKE_BITS == 8  # the measurements behind SAME_PICTURE_CORRELATION were made at 8 bits
