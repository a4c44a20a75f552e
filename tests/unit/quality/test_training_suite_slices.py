"""The training suite quarantines broken images only; a new surface's sharp, dark photos are reported, not held back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from crack_model.quality.batch_validation import validate_labeled
from crack_model.quality.judging import slice_of_key
from crack_model.quality.outcome import FAILED
from crack_model.quality.profile import profile_bytes
from crack_model.quality.thresholds import ValidationThresholds
from tests.imagefiles import encode

DEFAULTS = ValidationThresholds()
POOL = ValidationThresholds(min_images_per_class=20, min_slice_images_for_bounds=40)


def old_surface(seed: int) -> bytes:
    """A soft, mid-grey 227x227 texture inside the default (METU-derived) bounds."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(150, 30, (227, 227)).clip(0, 255).astype(np.uint8)
    return encode(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)).convert("RGB"), quality=92)


def new_surface(seed: int) -> bytes:
    """A dark, sharp, grainy 227x170 photo of another surface: outside the default brightness and blur bounds."""
    rng = np.random.default_rng(10_000 + seed)
    noise = rng.normal(55, 35, (170, 227)).clip(0, 255).astype(np.uint8)
    return encode(Image.fromarray(noise).convert("RGB"), quality=95)


def write(root: Path, key: str, data: bytes) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_store(root: Path, *, broken: bool) -> str:
    """labeled/<class>/old/ (40 each) and labeled/<class>/site-b/ (12 each); optionally a few broken images."""
    for class_index, name in enumerate(("Negative", "Positive")):
        for index in range(40):
            write(root, f"labeled/{name}/old/o{index}.jpg", old_surface(1000 * class_index + index))
        for index in range(12):
            write(root, f"labeled/{name}/site-b/s{index}.jpg", new_surface(1000 * class_index + index))
    if broken:
        write(root, "labeled/Negative/old/blank.jpg", encode(Image.new("RGB", (227, 227), (128, 128, 128))))
        write(root, "labeled/Negative/old/truncated.jpg", old_surface(7)[:300])
        write(root, "labeled/Positive/old/copy.jpg", (root / "labeled/Positive/old/o3.jpg").read_bytes())
        write(root, "labeled/Positive/old/thumbnail.jpg", encode(Image.new("RGB", (40, 30), (10, 200, 30))))
    return str(root)


def test_the_new_surface_is_outside_the_default_bounds():
    """Premise: the synthetic site-b photos break the METU-derived bounds (the old suite would quarantine them)."""
    row = profile_bytes("a.jpg", new_surface(1))
    assert row["brightness"] < DEFAULTS.brightness_min or row["blur"] > DEFAULTS.blur_max
    old = profile_bytes("b.jpg", old_surface(1))
    assert DEFAULTS.brightness_min <= old["brightness"] <= DEFAULTS.brightness_max
    assert DEFAULTS.blur_min <= old["blur"] <= DEFAULTS.blur_max


def test_a_sharp_but_different_surface_is_reported_not_quarantined(tmp_path):
    """No site-b photo is quarantined; the slice is named as drifted, its photos as unusual for their slice."""
    outcome = validate_labeled(build_store(tmp_path, broken=False), "labeled", thresholds=POOL)
    assert outcome.outcome != FAILED, outcome.reasons
    assert not outcome.quarantined_keys
    checks = {check["name"]: check for check in outcome.checks}
    assert checks["slices_within_reference_bounds"]["offenders"] == ["site-b"]
    assert checks["slices_within_reference_bounds"]["observed_value"]["site-b"] == 1.0
    unusual = checks["photo_within_slice_bounds"]["offenders"]
    assert unusual and all("/site-b/" in key for key in unusual)  # 24 < 40: site-b is held to the defaults


def test_a_big_enough_slice_gets_its_own_bounds(tmp_path):
    """With min_slice_images_for_bounds at 20, site-b (24 photos) is judged by its own bounds: nothing unusual."""
    store = build_store(tmp_path, broken=False)
    outcome = validate_labeled(store, "labeled", thresholds=POOL.replace(min_slice_images_for_bounds=20))
    checks = {check["name"]: check for check in outcome.checks}
    assert checks["photo_within_slice_bounds"]["offenders"] == []
    assert checks["slices_within_reference_bounds"]["offenders"] == ["site-b"]  # still drift against the reference


def test_broken_images_are_still_quarantined(tmp_path):
    """Blank, undecodable, byte-duplicate and thumbnail images are quarantined, each with its reason."""
    outcome = validate_labeled(build_store(tmp_path, broken=True), "labeled", thresholds=POOL)
    assert outcome.outcome != FAILED, outcome.reasons
    reasons = {item["key"]: " ".join(item["reasons"]) for item in outcome.quarantined}
    assert set(reasons) == {
        "labeled/Negative/old/blank.jpg",
        "labeled/Negative/old/truncated.jpg",
        "labeled/Positive/old/o3.jpg",  # the first copy by key is kept: copy.jpg sorts before o3.jpg
        "labeled/Positive/old/thumbnail.jpg",
    }
    assert "blank" in reasons["labeled/Negative/old/blank.jpg"]
    assert "decode" in reasons["labeled/Negative/old/truncated.jpg"]
    assert "40 px" in reasons["labeled/Positive/old/thumbnail.jpg"]


def test_slice_of_key():
    """The folder right below the class folder is the slice; an image in the class folder has none."""
    assert slice_of_key("labeled/Positive/site-b/x/a.jpg", "Positive") == "site-b"
    assert slice_of_key("labeled/Positive/a.jpg", "Positive") == "(none)"
    assert slice_of_key("incoming/b/a.jpg", None) == "(none)"


def test_a_class_or_slice_folder_that_is_a_symbolic_link_is_left_out_saying_so(tmp_path):
    """A linked class folder vanished in silence (the suite then asked for more photos of that class), a linked
    slice folder was left out as "not an image file name"."""
    for index in range(20):
        write(tmp_path, f"labeled/Negative/n{index}.jpg", old_surface(index))
        write(tmp_path, f"elsewhere/Positive/p{index}.jpg", old_surface(100 + index))
    write(tmp_path, "elsewhere/site-b/n-b.jpg", old_surface(300))
    (tmp_path / "labeled" / "Positive").symlink_to(tmp_path / "elsewhere" / "Positive")
    (tmp_path / "labeled" / "Negative" / "site-b").symlink_to(tmp_path / "elsewhere" / "site-b")

    outcome = validate_labeled(str(tmp_path), "labeled", thresholds=POOL)

    assert set(outcome.left_out) == {"labeled/Positive", "labeled/Negative/site-b"}
    for key, why in outcome.left_out.items():
        assert why.startswith(f"{key} is a symbolic link: ") and why.endswith("put the real file or folder there")
    assert "left out labeled/Positive: labeled/Positive is a symbolic link" in outcome.summary()


def test_files_of_the_class_folders_left_out_of_the_pool_are_named_with_why(tmp_path):
    """Photos named .jfif or with no extension, or in a hidden folder, vanished from training with one INFO line
    (a .Trash/ folder's photo was trained on, as a slice of its own)."""
    from crack_model.data.labeled import list_labeled_folder
    from crack_model.quality.outcome import ValidationOutcome

    for index in range(20):
        write(tmp_path, f"labeled/Negative/n{index}.jpg", old_surface(index))
        write(tmp_path, f"labeled/Positive/p{index}.jpg", old_surface(100 + index))
    write(tmp_path, "labeled/Positive/site-c/crack-1.jfif", old_surface(200))
    write(tmp_path, "labeled/Positive/site-c/crack-2", old_surface(201))
    write(tmp_path, "labeled/Positive/.Trash/removed.jpg", old_surface(202))
    write(tmp_path, "labeled/Negative/notes.txt", b"site c: taken on a rainy day")

    outcome = validate_labeled(str(tmp_path), "labeled", thresholds=POOL)

    assert outcome.counts["objects"] == 41  # the .jfif is a photo
    assert outcome.left_out == {
        "labeled/Negative/notes.txt": "not an image file name (.jpg, .png, .heic, ...)",
        "labeled/Positive/.Trash/removed.jpg": "hidden (a name starting with '.')",
        "labeled/Positive/site-c/crack-2": "not an image file name (.jpg, .png, .heic, ...)",
    }
    assert "left out labeled/Positive/site-c/crack-2: not an image file name" in outcome.summary()
    report = (tmp_path / "validation" / "labeled" / "report.html").read_text()
    assert "Left out (3)" in report and "labeled/Positive/.Trash/removed.jpg" in report
    saved = ValidationOutcome(**{name: value for name, value in outcome.to_dict().items()
                                 if name not in ("format_version", "passed")})  # fmt: skip
    assert saved.left_out == outcome.left_out
    trained = {Path(image.uri).name for image in list_labeled_folder(tmp_path / "labeled", ["Negative", "Positive"])}
    assert "crack-1.jfif" in trained and "removed.jpg" not in trained and "crack-2" not in trained
