"""What the gate checks about its holdout before it grades a model on it: that it holds none of the candidate's
training images.

A holdout that shares images with the training data would grade the model on what it learnt from:
``check_not_in_training`` compares the holdout's bytes (SHA-256) and URIs with the version's
``data_manifest.csv`` and refuses any overlap (the holdout is the wrong folder). A training photo saved again
(another JPEG quality, PNG, resized) has other bytes and passes that check: training records each image's
perceptual hash (dHash, as near-duplicate grouping uses) in the manifest, and ``without_training_lookalikes``
leaves holdout images within ``LOOKALIKE_BITS`` of one of those hashes out of grading, named in the report, once
their pixels confirm it (``same_picture``: a 64-bit hash also matches by chance, between distinct near-featureless
photos, such as flat plaster against a METU patch). Left out rather than refused: the rest of the holdout still
grades the model.

The champion is graded on the same holdout, and a photo it trained on (moved from the labeled pool to the
holdout: an ordinary step) flatters it; the candidate must not regress against those figures. Its training
images, same bytes, location or look-alike, are left out of grading both models, named in the report too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageFilter

from crack_model.core.concurrency import map_bounded
from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import difference_hash, open_image
from crack_model.core.log_lines import module_logger
from crack_model.core.uploads import read_photo_uri
from crack_model.evaluation.holdout import (
    READ_WORKERS,
    Holdout,
    holdout_hashes,
    load_holdout,
    raise_if_a_class_is_missing,
    without_label_conflicts,
)

log = module_logger(__name__)

OVERLAP_EXAMPLES = 3
# dHash bits in which a holdout image may differ from a training image and still be taken for a copy of it. Of 200
# METU patches saved again, the same hash was kept by 150 at JPEG quality 95, 75 at 70, 105 resized, 22 cropped by 2
# px, 65 brightened by 3 %; each copy was within 8 bits. Of the 2,000 distinct patches' pairs, 128 share a hash
# (near-featureless ones) and 141 are within 8 bits: 13 pairs more, of 2 million.
LOOKALIKE_BITS = 8
# How closely the texture of a holdout image's thumbnail must correlate with a training image's for a look-alike to
# be a copy (``same_picture``). ``python -m bench.lookalikes`` (90 photos, decoded as scoring decodes them): copies
# at JPEG 70 >= 0.93, halved >= 0.90, cropped by 2 px >= 0.72, brightened 10 % >= 0.96; cropped by 6 px, 54 of 90
# still taken. Distinct photos within 8 bits: site-b pairs <= 0.48, site-b against METU <= 0.06 (12 of the 1,000
# site-b photos are within 8 bits of a METU patch, 11 of them of one flat patch, Negative/08080.jpg). Thumbnails
# without their blur taken off do not separate them (copies >= 0.77, chance pairs <= 0.72).
SAME_PICTURE_CORRELATION = 0.6
LOOKALIKE_CANDIDATES = 3  # training images compared by pixels, nearest hash first


def holdout_for_gate(
    uri: str,
    class_names: Sequence[str],
    training: Sequence[Mapping[str, str]] | None,
    model: str,
    champion_training: Sequence[Mapping[str, str]] | None = None,
    champion: str = "the champion",
) -> tuple[Holdout, str | None]:
    """The holdout at ``uri`` as the gate grades on it (without label conflicts, training look-alikes and the
    champion's training images; refused if it holds the candidate's training images), and a note of what could not
    be checked (``check_not_in_training``)."""
    holdout = without_label_conflicts(load_holdout(uri, class_names), class_names)
    unchecked = check_not_in_training(holdout, training, model)
    holdout = without_training_lookalikes(holdout, training, class_names)
    if champion_training:
        holdout = without_champion_training(holdout, champion_training, champion, class_names)
    return holdout, unchecked


def check_not_in_training(holdout: Holdout, training: Sequence[Mapping[str, str]] | None, model: str) -> str | None:
    """Refuse a holdout that shares any image (same bytes, or same URI) with the model's training data.

    Args:
        training: the rows (uri, label, sha256) of the model's ``data_manifest.csv``; None if it has none.
        model: the model for the messages, e.g. ``crack version 20261124T195745Z-4a68a5b1``.

    Returns:
        None when every holdout image was checked, or a note saying what could not be checked.

    Raises:
        CrackModelError: some holdout images are training images; names how many, a few, and what to do.
    """
    if not training:
        return (
            f"{model} has no training-data manifest: the gate could not check that the holdout holds no training "
            "images (register versions with their data_manifest.csv)"
        )
    by_hash = {row["sha256"]: row["uri"] for row in training if row.get("sha256")}
    by_uri = {row["uri"]: row["uri"] for row in training if row.get("uri")}
    hashes = holdout_hashes(holdout) if by_hash else [""] * len(holdout.keys)
    shared = [
        (image.uri, by_hash.get(digest) or by_uri[image.uri])
        for image, digest in zip(holdout.images, hashes, strict=True)
        if (digest and digest in by_hash) or image.uri in by_uri
    ]
    if shared:
        examples = "; ".join(f"{held} is training image {trained}" for held, trained in shared[:OVERLAP_EXAMPLES])
        msg = (
            f"holdout {holdout.uri} shares {len(shared)} of its {len(holdout.images)} images with the training data "
            f"of {model} (same bytes or same location; its data_manifest.csv), e.g. {examples}. The gate would grade "
            "the model on images it learnt from: point the holdout (--holdout, or the DAG's holdout param; default "
            "<store>/holdout) at images kept out of training, or remove these images from it"
        )
        raise CrackModelError(msg)
    unhashed = sum(1 for row in training if not row.get("sha256"))
    if unhashed:
        return (
            f"{unhashed} of the {len(training)} training images of {model} have no sha256 in its data manifest: "
            "those were compared with the holdout by location only"
        )
    log.info("holdout %s: none of its %d images is among the %d training images of %s", holdout.uri,
             len(holdout.images), len(training), model)  # fmt: skip
    return None


def without_training_lookalikes(
    holdout: Holdout, training: Sequence[Mapping[str, str]] | None, class_names: Sequence[str]
) -> Holdout:
    """The holdout without images whose perceptual hash is within ``LOOKALIKE_BITS`` of a training image's (kept
    in ``left_out``, with the training image each looks like). Manifests registered before they kept perceptual
    hashes check nothing here."""
    found = {key: f"looks like training image {trained}" for key, trained in _lookalikes(holdout, training).items()}
    return _left_out(holdout, found, "look like training images", class_names)


def without_champion_training(
    holdout: Holdout, training: Sequence[Mapping[str, str]], champion: str, class_names: Sequence[str]
) -> Holdout:
    """The holdout without the images ``champion`` was trained on (same bytes or location, or a look-alike)."""
    by_hash = {row["sha256"]: row["uri"] for row in training if row.get("sha256")}
    by_uri = {row["uri"] for row in training if row.get("uri")}
    hashes = holdout_hashes(holdout) if by_hash else [""] * len(holdout.keys)
    found = {
        key: f"{champion} was trained on it ({by_hash.get(digest) or image.uri}): it would flatter the champion"
        for key, image, digest in zip(holdout.keys, holdout.images, hashes, strict=True)
        if (digest and digest in by_hash) or image.uri in by_uri
    }
    found.update({
        key: f"looks like {champion}'s training image {trained}: it would flatter it"
        for key, trained in _lookalikes(holdout.without(found), training).items()
    })  # fmt: skip
    return _left_out(holdout, found, f"are {champion}'s training images", class_names)


def _lookalikes(holdout: Holdout, training: Sequence[Mapping[str, str]] | None) -> dict[str, str]:
    """Holdout key -> how it looks like a training image, for those within ``LOOKALIKE_BITS`` of one whose pixels
    confirm it (``same_picture``), or could not be compared: then the hash alone decides, on the safe side."""
    rows = [row for row in training or () if row.get("perceptual_hash")]
    if not rows:
        return {}
    table = np.array([int(row["perceptual_hash"], 16) for row in rows], dtype=np.uint64)

    def lookalike(key: str) -> str | None:
        try:
            picture = open_image(holdout.read(key))
        except (CrackModelError, OSError):  # unreadable, or changed since first read: scoring reports it
            return None
        distances = np.bitwise_count(table ^ np.uint64(int(difference_hash(picture), 16)))
        near = [int(index) for index in np.argsort(distances, kind="stable")[:LOOKALIKE_CANDIDATES]]
        unread = None
        for index in (index for index in near if distances[index] <= LOOKALIKE_BITS):
            uri = rows[index]["uri"]
            try:
                trained = open_image(_trained_bytes(rows[index]))
            except (CrackModelError, OSError) as error:  # moved, deleted or replaced since training
                unread = unread or f"{uri} (near-same perceptual hash; its pixels could not be compared: {error})"
                continue
            if same_picture(picture, trained):
                return f"{uri} (near-same perceptual hash and pixels: a re-saved or resized copy?)"
        return unread

    found = map_bounded(lookalike, holdout.keys, workers=READ_WORKERS, thread_name_prefix="holdout-dhash")
    return {key: trained for key, trained in zip(holdout.keys, found, strict=True) if trained}


def _trained_bytes(row: Mapping[str, str]) -> bytes:
    """The bytes of the training image of a manifest row, read again. Raises ``CrackModelError`` if they are not
    the bytes trained on (its ``sha256``): a file replaced since training by another photo compared its pixels,
    and a holdout copy of the photo trained on was graded on."""
    data = read_photo_uri(row["uri"])
    if row.get("sha256") and hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise CrackModelError("its bytes changed since training (not the sha256 of its data manifest)")
    return data


def same_picture(first: Image.Image, second: Image.Image) -> bool:
    """Whether two images show the same picture: the fine texture of their thumbnails correlates
    (``texture_correlation``). Re-saved, resized, cropped by a few pixels or brightened copies do; distinct
    photos of flat surfaces, whose hashes may match, do not."""
    return texture_correlation(first, second) >= SAME_PICTURE_CORRELATION


def texture_correlation(first: Image.Image, second: Image.Image) -> float:
    """The correlation of two images' 32x32 grey thumbnails, each less its blur (light falling across a flat
    surface would otherwise make any two alike). Two thumbnails without texture (blank images) count as 1."""
    first_texture, second_texture = (_texture(image) for image in (first, second))
    spread = np.sqrt(np.dot(first_texture, first_texture) * np.dot(second_texture, second_texture))
    if spread == 0:
        return 0.0 if first_texture.any() or second_texture.any() else 1.0
    return float(np.dot(first_texture, second_texture) / spread)


def _texture(image: Image.Image) -> np.ndarray:
    thumbnail = image.convert("L").resize((32, 32), Image.Resampling.BOX)
    texture: np.ndarray = np.asarray(thumbnail, np.float64) - np.asarray(thumbnail.filter(ImageFilter.BoxBlur(2)))
    centred: np.ndarray = (texture - texture.mean()).ravel()
    return centred


def _left_out(holdout: Holdout, found: dict[str, str], what: str, class_names: Sequence[str]) -> Holdout:
    if not found:
        return holdout
    trimmed = holdout.without(found, left_out={**holdout.left_out, **found})
    log.warning("%d holdout image(s) %s and are not graded on", len(found), what)
    raise_if_a_class_is_missing(f"{holdout.uri} (without images that {what})", trimmed.images, class_names)
    return trimmed
