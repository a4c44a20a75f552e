"""Training's photo-level step: the rule chosen on validation mosaics, stored in the card, measured on test mosaics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crack_model.core.model_card import ModelCard
from crack_model.data.labeled import LabeledImage, Split
from crack_model.evaluation.mosaics import MosaicConfig
from crack_model.training.photo_rule import calibration_runtimes, fit_photo_rule

SMALL = MosaicConfig(rows=3, columns=4, clean=8, with_cracks=8)


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> list[LabeledImage]:
    """30 synthetic 64 px images per class, as labeled images."""
    from crack_model.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("patches")
    generate_dataset(root, 30, size=64, seed=21)
    return [LabeledImage(str(path), path.parent.name) for path in sorted(root.glob("*/*.jpg"))]


@pytest.fixture()
def detector_dir(tmp_path_factory, tmp_path) -> Path:
    """A fresh copy of the dark-line detector tiling at 64 px, without a photo rule."""
    from tests.gate_models import build_detector, variant

    cached = tmp_path_factory.getbasetemp() / "photo-rule-detector"
    if not cached.is_dir():
        build_detector(cached, "det-train")
    return variant(cached, tmp_path / "model", "det-train", tile_size=64)


def halves(images: list[LabeledImage]) -> Split:
    """Even images for validation, odd ones for test (the step never looks at train)."""
    return Split([], images[::2], images[1::2])


def test_the_rule_is_chosen_on_validation_and_measured_on_test(detector_dir, patches):
    """The card gets a photo rule with its record; the section has the rule, validation and test figures."""
    section = fit_photo_rule(detector_dir, halves(patches), SMALL)
    card = ModelCard.load(detector_dir)
    assert card.photo_threshold is not None and card.photo_threshold >= card.threshold
    assert section["rule"] == {"photo_threshold": card.photo_threshold, "photo_min_tiles": card.photo_min_tiles,
                               "photo_tiles": card.photo_tiles, "photo_tail_scale": card.photo_tail_scale,
                               "photo_max_threshold": card.photo_max_threshold,
                               "photo_confirm_threshold": card.photo_confirm_threshold,
                               "tile_threshold": card.threshold}  # fmt: skip
    record = card.photo_calibration or {}
    runtimes = ["litert-int8", "litert-fp32"]  # every approved runtime, fastest first; fp32 stands in for Keras
    assert record["split"] == "validation" and record["runtimes"] == runtimes
    assert record["mosaics"]["clean"] == 8 and record["chosen"]["photo_threshold"] == card.photo_threshold
    assert record["clean_mosaics"] == record["crack_mosaics"] == 8  # the same mosaics in every runtime
    assert list(section["validation"]) == runtimes
    tail = record["tail"]  # the threshold rises for photos of more tiles than the 3 x 4 mosaics
    assert card.photo_tiles == section["validation"]["litert-int8"]["tiles_per_mosaic"] > 1
    assert list(tail["per_runtime"]) == runtimes and card.photo_tail_scale == max(tail["per_runtime"].values())
    assert card.photo_max_threshold is not None and 0 < card.photo_max_threshold <= 1
    for validation in section["validation"].values():  # the rule labels no validation clean photo a crack
        assert validation["false_alarms"] == 0 and validation["crack_mosaics"] == 8
        # and its confirmation by flips loses no validation crack photo the rule finds
        assert validation["found"] == validation["without_confirmation"]["found"]
    assert any(validation["found"] for validation in section["validation"].values())  # fp32 finds all 8
    confirmation = record["confirmation"]
    assert card.photo_confirm_threshold == confirmation["threshold"] is not None
    assert card.photo_confirm_threshold == min(card.threshold, confirmation["lowest_crack_confirmation"])
    assert list(section["test"]) == ["litert-int8"]  # the runtime that will serve
    test = section["test"]["litert-int8"]
    assert test["clean_mosaics"] == test["crack_mosaics"] == 40 and test["seed"] == SMALL.seed + 1  # the bar's check
    assert test["rule"]["photo_threshold"] == card.photo_threshold and test["runtime"] == "litert-int8"


def test_no_mosaics_no_rule(detector_dir, patches):
    """Turned off, or with too few clean validation images, the card keeps labeling photos by the highest tile."""
    assert "turned off" in fit_photo_rule(detector_dir, halves(patches), None)["skipped"]
    few = Split([], [image for image in patches if image.label == "Positive"][:5] + patches[:3], [])
    assert "cannot fill a mosaic" in fit_photo_rule(detector_dir, few, SMALL)["skipped"]
    card = ModelCard.load(detector_dir)
    assert (card.photo_threshold, card.photo_min_tiles, card.photo_calibration) == (None, 1, None)


def scored_as_if(hot: dict[str, float]):
    """A stand-in for ``score_mosaics``: every tile over patch ``key`` scores ``hot[key]``, the others 0.02."""
    from crack_model.core.tiling import TileConfig, tile_boxes
    from crack_model.evaluation.photo_check import ScoredMosaic
    from crack_model.serving.photo_decision import overlap

    def score_mosaics(scorer, plans, read):
        size = scorer.card.tile_size
        scored = []
        for plan in plans:
            boxes = tile_boxes(*plan.size(size), TileConfig(tile_size=size))
            cells = [(plan.cell_box(n // plan.columns, n % plan.columns, size), hot.get(key, 0.02))
                     for n, key in enumerate(plan.keys)]  # fmt: skip
            probabilities = [max(p for box, p in cells if overlap(tile, box)) for tile in boxes]
            scored.append(ScoredMosaic(plan, boxes, probabilities))
        return scored

    return score_mosaics


def test_a_clean_patch_that_scores_like_a_crack_is_left_out_of_the_clean_mosaics(detector_dir, patches, monkeypatch):
    """A crack patch labeled clean in validation (a labeling error) is named and kept out: the rule is the one
    chosen as if it were not there, not one that must sit above a crack."""
    from crack_model.training import photo_rule

    split = halves(patches)
    mislabeled = next(image for image in split.validation if image.label == "Positive")
    cracks = {image.uri: 0.99 for image in split.validation if image.label == "Positive"}
    monkeypatch.setattr(photo_rule, "score_mosaics", scored_as_if({**cracks, mislabeled.uri: 0.97}))
    wrong = Split([], [LabeledImage(mislabeled.uri, "Negative") if image is mislabeled else image
                       for image in split.validation], split.test)  # fmt: skip
    section = fit_photo_rule(detector_dir, wrong, SMALL)
    assert section["crack_like_clean"] == {"patches": {mislabeled.uri: pytest.approx(0.97)}, "note": None}
    card = ModelCard.load(detector_dir)
    assert (card.photo_calibration or {})["crack_like_clean"] == section["crack_like_clean"]
    assert card.photo_threshold is not None and card.photo_threshold < 0.97  # kept in, it would sit above 0.97
    without = Split([], [image for image in split.validation if image is not mislabeled], split.test)
    assert fit_photo_rule(detector_dir, without, SMALL)["crack_like_clean"]["patches"] == {}
    assert ModelCard.load(detector_dir).photo_threshold == card.photo_threshold


def test_training_writes_the_photo_level_section(trained_model):
    """A real (tiny) training run stores the rule in model.json and the figures in metrics.json."""
    out = trained_model.output_dir
    metrics = json.loads((out / "metrics.json").read_text())
    section = metrics["photo_level"]
    card = ModelCard.load(out)
    assert trained_model.card == card and card.photo_calibration is not None
    assert section["rule"]["photo_threshold"] == card.photo_threshold >= card.threshold
    assert list(section["validation"]) == calibration_runtimes(out, card)
    assert list(section["test"]) == card.approved_runtimes[:1]
    for figures in section["validation"].values():  # the default mosaics, however small the split
        assert (figures["clean_mosaics"], figures["crack_mosaics"]) == (120, 40)
    for figures in [*section["validation"].values(), *section["test"].values()]:
        assert figures["crack_mosaics"] == 40 and figures["crack_patches"] >= 40 and "max_rule" in figures
    assert next(iter(section["test"].values()))["clean_mosaics"] == 40
    grid = card.photo_calibration["mosaics"]["grid"]  # the grid built, which a small split shrinks
    assert grid == section["validation"][calibration_runtimes(out, card)[0]]["grid"]


def test_fp32_stands_in_for_keras_and_missing_files_are_skipped(tmp_path):
    """Calibration scores each approved runtime whose file is there, except Keras when fp32 (the same network) is."""
    card = ModelCard(version="v", approved_runtimes=["keras", "litert-fp32", "litert-int8"])
    for name in ("model.keras", "model_fp32.tflite", "model_int8.tflite"):
        (tmp_path / name).write_bytes(b"x")
    assert calibration_runtimes(tmp_path, card) == ["litert-int8", "litert-fp32"]
    (tmp_path / "model_fp32.tflite").unlink()
    assert calibration_runtimes(tmp_path, card) == ["litert-int8", "keras"]
    assert calibration_runtimes(tmp_path, ModelCard(version="v")) == ["keras"]


def site_photos(folder: Path, count: int) -> list[LabeledImage]:
    """``count`` clean and ``count`` crack photos of 192 px (16 tiles of 64 px): a site's own labeled photos,
    grey gradients, a crack photo with a dark line drawn somewhere on it."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True)
    rng, photos = np.random.default_rng(8), []
    for n in range(2 * count):
        ramp = np.add.outer(np.arange(192) * 40 // 192, np.arange(192) * 60 // 192) + 110 + 5 * n
        image = Image.fromarray(np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=2))
        crack = n % 2 == 1
        if crack:
            x, y = (int(v) for v in rng.integers(30, 160, size=2))
            ImageDraw.Draw(image).line((x - 25, y - 15, x + 25, y + 15), fill=(15, 15, 15), width=3)
        path = folder / f"photo-{n}.png"
        image.save(path)
        photos.append(LabeledImage(str(path), "Positive" if crack else "Negative", width=192, height=192))
    return photos


def test_a_pool_of_photos_only_gets_a_rule_from_its_validation_photos(detector_dir, patches, tmp_path):
    """No patch to build mosaics of: the rule is chosen on the labeled validation photos themselves, in every
    approved runtime, and labels none of the clean ones a crack."""
    photos = site_photos(tmp_path / "site", 6)
    section = fit_photo_rule(detector_dir, Split([], [], []), SMALL, labeled_photos=photos)
    card = ModelCard.load(detector_dir)
    record = card.photo_calibration or {}
    runtimes = calibration_runtimes(detector_dir, card)
    assert card.photo_threshold is not None and record["mosaics"] is None and record["labeled_photos"] == 12
    assert (record["clean_photos"], record["crack_photos"], record["clean_mosaics"]) == (6, 6, 0)
    assert card.photo_tiles is None  # clean tiles near 0 show no tail to fit: the threshold holds for any size
    assert "validation" not in section and list(section["validation_photos"]) == runtimes
    for counts in section["validation_photos"].values():
        assert counts["clean_photos"] == counts["crack_photos"] == 6 and counts["false_alarms"] == 0
        assert counts["found"] == 6


def test_photos_of_one_class_alone_give_no_rule(detector_dir, patches, tmp_path):
    """A rule needs a clean photo to stay above and a crack photo to find: without both, none is set."""
    clean_only = [photo for photo in site_photos(tmp_path / "site", 3) if photo.label == "Negative"]
    section = fit_photo_rule(detector_dir, Split([], [], []), SMALL, labeled_photos=clean_only)
    assert section["skipped"] == ("validation split: no crack patches to build crack mosaics from: the split has no "
                                  "crack images, and its 3 labeled photos are all Negative; photos are labeled by "
                                  "their highest tile")  # fmt: skip
    assert ModelCard.load(detector_dir).photo_threshold is None


def test_a_clean_validation_photo_above_every_mosaic_raises_the_threshold(detector_dir, patches, monkeypatch):
    """Mosaics of a patch pool that never lights a clean tile keep the patch rule; a site photo whose clean
    surface scores 0.9 moves the threshold above it, halfway to the weakest crack."""
    from crack_model.core.tiling import TileConfig, tile_boxes
    from crack_model.evaluation.photo_check import ScoredPhoto
    from crack_model.training import photo_rule

    split = halves(patches)
    cracks = {image.uri: 0.99 for image in split.validation if image.label == "Positive"}
    monkeypatch.setattr(photo_rule, "score_mosaics", scored_as_if(cracks))
    mosaics_only = fit_photo_rule(detector_dir, split, SMALL)["rule"]
    assert mosaics_only["photo_threshold"] == mosaics_only["tile_threshold"]
    boxes = tile_boxes(192, 192, TileConfig(tile_size=64))

    def score_photos(scorer, photos, read):
        return [ScoredPhoto(key, crack, list(boxes), [0.9 if key == "clean" else 0.02] + [0.02] * (len(boxes) - 1))
                for key, crack in photos.items()]  # fmt: skip

    monkeypatch.setattr(photo_rule, "score_photos", score_photos)
    photos = [LabeledImage("clean", "Negative"), LabeledImage("plain", "Negative"), LabeledImage("crack", "Positive")]
    section = fit_photo_rule(detector_dir, split, SMALL, labeled_photos=photos)
    assert section["rule"]["photo_threshold"] == pytest.approx(0.9 + 0.5 * (0.99 - 0.9))
    for counts in section["validation_photos"].values():  # the crack photo scores nothing: missed, and counted
        assert (counts["clean_photos"], counts["false_alarms"], counts["crack_photos"], counts["found"]) == (2, 0, 1, 0)
    clean_only = fit_photo_rule(detector_dir, split, SMALL, labeled_photos=photos[:2])  # beside mosaics, one class do
    assert clean_only["rule"]["photo_threshold"] == section["rule"]["photo_threshold"]
    assert (ModelCard.load(detector_dir).photo_calibration or {})["clean_photos"] == 2


def test_a_clean_validation_photo_scoring_like_the_cracks_is_left_out_and_counted(detector_dir, patches, monkeypatch):
    """A clean site photo above the crack mosaics (mislabeled?) would switch the rule off: it is left out of
    the choice, named in the section and the card, and counted as the false alarm it is. It goes by its
    key among the labeled photos: the clean mosaic of the same name stays in."""
    from crack_model.core.tiling import TileConfig, tile_boxes
    from crack_model.evaluation.photo_check import ScoredPhoto
    from crack_model.training import photo_rule

    split = halves(patches)
    cracks = {image.uri: 0.99 for image in split.validation if image.label == "Positive"}
    monkeypatch.setattr(photo_rule, "score_mosaics", scored_as_if(cracks))
    boxes = tile_boxes(192, 192, TileConfig(tile_size=64))  # 4 x 4 tiles
    odd = "clean-000.png"  # the first clean mosaic's name too
    lit = {"clean": [0.9], odd: [0.999, 0.9, 0.02, 0.02, 0.9, 0.9], "crack": [0.02]}  # odd: 2 x 2 touching tiles

    def score_photos(scorer, photos, read):
        return [ScoredPhoto(key, crack, list(boxes), lit[key] + [0.02] * (len(boxes) - len(lit[key])))
                for key, crack in photos.items()]  # fmt: skip

    monkeypatch.setattr(photo_rule, "score_photos", score_photos)
    photos = [LabeledImage("clean", "Negative"), LabeledImage(odd, "Negative"), LabeledImage("crack", "Positive")]
    section = fit_photo_rule(detector_dir, split, SMALL, labeled_photos=photos)
    assert section["crack_like_photos"] == {"photos": {odd: 0.999}, "note": None}
    assert section["rule"]["photo_threshold"] == pytest.approx(0.9 + 0.5 * (0.99 - 0.9))  # as if it were not there
    record = ModelCard.load(detector_dir).photo_calibration or {}
    assert record["crack_like_photos"]["photos"] == {odd: 0.999}
    assert (record["clean_mosaics"], record["clean_photos"]) == (SMALL.clean, 1)
    for counts in section["validation_photos"].values():
        assert (counts["clean_photos"], counts["false_alarms"]) == (2, 1)


def test_a_big_validation_photo_counts_at_the_size_the_rule_judges_it(detector_dir, patches, monkeypatch):
    """A clean site photo of many more tiles than the mosaics, with a fitted tail: its highest tile counts
    lowered as much as the threshold rises for it, so the threshold sits below what it would at its raw score."""
    from crack_model.core.tiling import TileConfig, tile_boxes
    from crack_model.evaluation.photo_calibration import PhotoSize
    from crack_model.evaluation.photo_check import ScoredPhoto
    from crack_model.training import photo_rule

    split = halves(patches)
    cracks = {image.uri: 0.99 for image in split.validation if image.label == "Positive"}
    monkeypatch.setattr(photo_rule, "score_mosaics", scored_as_if(cracks))
    boxes = tile_boxes(768, 768, TileConfig(tile_size=64))
    rng = np.random.default_rng(4)
    surface = {key: list(1 / (1 + np.exp(4 - rng.exponential(0.5, size=len(boxes))))) for key in ("big", "other")}
    surface["big"][0] = 0.9
    surface["crack"] = [0.99, 0.99] + [0.02] * (len(boxes) - 2)

    def score_photos(scorer, photos, read):
        return [ScoredPhoto(key, crack, list(boxes), surface[key]) for key, crack in photos.items()]

    monkeypatch.setattr(photo_rule, "score_photos", score_photos)
    photos = [LabeledImage("big", "Negative"), LabeledImage("other", "Negative"), LabeledImage("crack", "Positive")]
    section = fit_photo_rule(detector_dir, split, SMALL, labeled_photos=photos)
    card = ModelCard.load(detector_dir)
    assert card.photo_tiles is not None and card.photo_tiles < len(boxes) and (card.photo_tail_scale or 0) > 0
    size = PhotoSize(card.photo_tiles, card.photo_tail_scale or 0.0, card.photo_max_threshold)
    lowered = size.at_calibrated_size(0.9, len(boxes))
    assert card.threshold < lowered < 0.9
    assert section["rule"]["photo_threshold"] == pytest.approx(lowered + 0.5 * (0.99 - lowered))
    for counts in section["validation_photos"].values():  # what the rule says of them, at their size
        assert (counts["false_alarms"], counts["found"]) == (0, 1)
    surface["big"][0], surface["crack"][0] = 0.995, 0.999  # at the rise's cap (0.99) it counts as it is
    capped = fit_photo_rule(detector_dir, split, SMALL, labeled_photos=photos)
    card = ModelCard.load(detector_dir)
    assert card.photo_max_threshold == pytest.approx(0.99)
    one_tile = (card.photo_calibration or {})["options"][0]  # the only option the lone 0.995 tile bounds
    assert one_tile["highest_clean"] == pytest.approx(0.995)
    for counts in capped["validation_photos"].values():  # two touching tiles then keep it clean
        assert (capped["rule"]["photo_min_tiles"], counts["false_alarms"], counts["found"]) == (2, 0, 1)


def test_a_mosaic_that_cannot_be_scored_fails_the_step(detector_dir, patches, monkeypatch):
    """Too few patches means no mosaics; a scoring error is not that, and is not turned into "no rule"."""
    from crack_model.core.errors import CrackModelError
    from crack_model.training import photo_rule

    def broken(scorer, plans, read):
        raise CrackModelError("mosaic mosaic-000 could not be scored: decode failed")

    monkeypatch.setattr(photo_rule, "score_mosaics", broken)
    with pytest.raises(CrackModelError, match="mosaic mosaic-000 could not be scored"):
        photos = [LabeledImage("clean", "Negative"), LabeledImage("crack", "Positive")]
        fit_photo_rule(detector_dir, halves(patches), SMALL, labeled_photos=photos)
    assert ModelCard.load(detector_dir).photo_threshold is None


def test_too_few_test_patches_skip_the_test_check_and_the_rule_is_kept(detector_dir, patches):
    """The check is named as skipped; the rule chosen on validation is saved all the same."""
    split = halves(patches)
    few = Split([], split.validation, split.test[:3])
    section = fit_photo_rule(detector_dir, few, SMALL)
    assert section["test"]["litert-int8"]["skipped"].startswith("test split: ")
    assert ModelCard.load(detector_dir).photo_threshold == section["rule"]["photo_threshold"] is not None


def test_a_test_mosaic_that_cannot_be_scored_fails_the_step_before_the_card_changes(detector_dir, patches, monkeypatch):
    """The check runs before the card is saved: the step fails and the card keeps no rule it could not measure."""
    from crack_model.core.errors import CrackModelError
    from crack_model.training import photo_rule

    def broken(scorer, clean, cracks, read, config):
        raise CrackModelError("mosaic clean-000.png could not be scored: connection reset")

    monkeypatch.setattr(photo_rule, "mosaic_check", broken)
    with pytest.raises(CrackModelError, match="connection reset"):
        fit_photo_rule(detector_dir, halves(patches), SMALL)
    assert ModelCard.load(detector_dir).photo_threshold is None
