"""Full-size photos in a holdout or an evaluation set: labeled by the photo rule, kept out of the gate's mosaics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from crack_model.data.labeled import LabeledImage
from crack_model.data.synth import generate_dataset
from crack_model.evaluation.assess import evaluate_scorer
from crack_model.evaluation.holdout import evaluate_on_holdout, load_holdout
from crack_model.evaluation.holdout_checks import check_not_in_training
from crack_model.serving.scorer import load_scorer
from tests.gate_models import build_detector, variant

PHOTOS = 4  # per class


def save_photo(path: Path, crack: bool, shade: int) -> None:
    """A 640 px grey gradient (169 tiles of 64 px); a crack photo has a dark line across part of it."""
    ramp = np.add.outer(np.arange(640) * 40 // 640, np.arange(640) * 60 // 640) + 110 + shade
    image = Image.fromarray(np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=2))
    if crack:
        ImageDraw.Draw(image).line((200 + shade, 250, 330 + shade, 330), fill=(15, 15, 15), width=5)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The dark-line detector tiling at 64 px, with a photo rule its tiles reach (0.6) and one they never do in
    int8 (which scores at most 0.996)."""
    source = build_detector(tmp_path_factory.mktemp("detector") / "model", "det-source")
    root = tmp_path_factory.mktemp("variants")
    calibrated = {"photo_calibration": {"split": "validation"}}
    return {
        "reachable": variant(source, root / "reachable", "det-photo", tile_size=64, photo_threshold=0.6, **calibrated),
        "unreachable": variant(
            source, root / "unreachable", "det-unreachable", tile_size=64, photo_threshold=0.9999, **calibrated
        ),
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A site's holdout of full-size photos only: 4 clean and 4 with a crack."""
    root = tmp_path_factory.mktemp("photos")
    for index in range(2 * PHOTOS):
        crack = index % 2 == 1
        save_photo(root / ("Positive" if crack else "Negative") / "site" / f"photo-{index}.png", crack, 5 * index)
    return root


def test_holdout_photos_are_labeled_by_the_photo_rule_not_by_their_highest_tile(models, photos):
    """The gate's holdout figures label a full-size photo as the night would: a rule that no tile reaches finds
    none of the crack photos, though their highest tiles are far above the tile threshold."""
    holdout = load_holdout(str(photos), ["Negative", "Positive"])
    for model, missed in (("reachable", 0), ("unreachable", PHOTOS)):
        evaluation = evaluate_on_holdout(load_scorer(models[model], runtime="litert-int8"), holdout)
        assert evaluation.metrics["missed_cracks"] == missed and evaluation.metrics["false_alarms"] == 0
        cracks = evaluation.outcomes.is_crack
        assert float(evaluation.crack_probability[cracks].min()) > 0.9  # the highest tiles alone would find them
        assert int(evaluation.outcomes.says_crack[cracks].sum()) == PHOTOS - missed
        assert evaluation.photo_keys(holdout) == set(holdout.keys)  # every image here is a photo


def test_evaluate_labels_photos_by_the_photo_rule_and_a_given_threshold_enters_it(models, photos):
    """``crack-model evaluate``: the same labels as scoring; --threshold replaces the tile threshold in the rule."""
    images = [LabeledImage(str(path), path.parent.parent.name) for path in sorted(photos.rglob("*.png"))]
    unreachable = load_scorer(models["unreachable"], runtime="litert-int8")
    assert evaluate_scorer(unreachable, images)["missed_cracks"] == PHOTOS
    reachable = load_scorer(models["reachable"], runtime="litert-int8")
    assert evaluate_scorer(reachable, images)["missed_cracks"] == 0
    assert evaluate_scorer(reachable, images, threshold=0.99999)["missed_cracks"] == PHOTOS  # above every tile


def test_the_gate_builds_its_mosaics_of_the_holdout_patches_only(tmp_path, models, photos, monkeypatch):
    """Photos in a holdout beside patches stay out of the mosaics (shrunk into a 64 px cell, a crack vanishes);
    the report says how many were left out."""
    from crack_model.evaluation import gate_photo
    from crack_model.evaluation.gate import run_gate
    from crack_model.evaluation.policy import load_policy
    from crack_model.registry.versions import Registry

    mixed = tmp_path / "holdout"
    generate_dataset(mixed, 30, size=64, seed=5)
    for path in photos.rglob("*.png"):
        target = mixed / path.relative_to(photos)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    seen: list[str] = []
    real_check = gate_photo.mosaic_check

    def recording(scorer, clean, cracks, read, config):
        seen.extend([*clean, *cracks])
        return real_check(scorer, clean, cracks, read, config)

    monkeypatch.setattr(gate_photo, "mosaic_check", recording)
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "cache"))
    registry = Registry(tmp_path / "store")
    registry.register(models["reachable"], "crack", actor="trainer")
    report = run_gate(registry, "crack", "det-photo", str(mixed), load_policy())
    section = report.document["photo_level"]
    assert section["photos_left_out"] == 2 * PHOTOS and section["candidate"]["crack_mosaics"] == 40
    assert len(set(seen)) == 60 and not any(key.endswith(".png") for key in seen)  # the 60 patches, no photo
    html = (tmp_path / "store" / "models" / "crack" / "versions" / "det-photo" / "gate_report.html").read_text()
    assert "8 full-size photos are not cut into mosaics" in html


def test_a_holdout_image_over_the_size_limit_fails_the_evaluation_unread(tmp_path, models, photos, loaded_keys):
    """A holdout image over the upload limit (sparse: no disk used) is named as unreadable, never loaded: the gate
    cannot judge a model on a holdout it cannot read whole."""
    import shutil

    from crack_model.core.errors import CrackModelError
    from crack_model.core.uploads import MAX_UPLOAD_BYTES

    root = tmp_path / "holdout"
    shutil.copytree(photos, root)
    with (root / "Positive" / "site" / "scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)
    holdout = load_holdout(str(root), ["Negative", "Positive"])
    training = [{"uri": "s3://pool/labeled/Positive/x.jpg", "label": "Positive", "sha256": "0" * 64}]
    with pytest.raises(CrackModelError, match=r"holdout image \S+/Positive/site/scan\.tif cannot be read: too large"):
        check_not_in_training(holdout, training, "crack version v1")  # the gate's first read of the holdout
    unreadable = r"1 holdout image\(s\) could not be scored, e\.g\. Positive/site/scan\.tif: cannot read: too large"
    with pytest.raises(CrackModelError, match=unreadable):
        evaluate_on_holdout(load_scorer(models["reachable"], runtime="litert-int8"), holdout)
    assert not [key for key in loaded_keys if key.endswith("scan.tif")] and len(loaded_keys) == 2 * 2 * PHOTOS
