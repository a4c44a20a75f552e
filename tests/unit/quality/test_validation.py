"""Data validation: profiling, the expectation suites, quarantine, drift, reports (local and S3), the CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from crack_model.core import layout
from crack_model.core.documents import quarantined_keys, read_outcome
from crack_model.core.errors import CrackModelError
from crack_model.core.imaging import ALLOWED_FORMATS
from crack_model.core.local_store import LocalStore
from crack_model.core.tiling import TileConfig
from crack_model.quality import drift
from crack_model.quality.batch_validation import load_hashes, validate_batch, validate_labeled
from crack_model.quality.grey_image import image_statistics
from crack_model.quality.judging import validate_profile
from crack_model.quality.outcome import FAILED, PASSED, PASSED_WITH_QUARANTINE
from crack_model.quality.profile import ProfileConfig, profile_bytes, profile_labeled
from crack_model.quality.thresholds import ValidationThresholds, derive_thresholds
from tests.imagefiles import encode, exif_rotated_jpeg, grayscale_png

CLASSES = ("Negative", "Positive")
# Small pools need a smaller class minimum than the 100 of the defaults.
SMALL_POOL = ValidationThresholds(min_images_per_class=20)


@pytest.fixture(scope="module")
def real_files(metu_sample: Path) -> dict[str, list[Path]]:
    """Every 5th real photo of each class (200 each), so neighbouring patches of one photo spread out."""
    return {name: sorted((metu_sample / name).glob("*.jpg"))[::5] for name in CLASSES}


def mixed(real_files: dict[str, list[Path]], count: int, start: int = 0) -> list[Path]:
    """``count`` real photos, half of each class, from position ``start`` of each class list."""
    half = count // 2
    return real_files["Negative"][start : start + half] + real_files["Positive"][start : start + count - half]


def write_batch(root: Path, batch_id: str, objects: dict[str, bytes]) -> str:
    """A local store with ``incoming/<batch_id>/<name>`` objects; returns the store URI."""
    for name, data in objects.items():
        path = root / "incoming" / batch_id / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(root)


def real_objects(files: list[Path]) -> dict[str, bytes]:
    return {f"{path.parent.name.lower()}-{path.name}": path.read_bytes() for path in files}


def damaged(files: list[Path], change: Callable[[Image.Image], Image.Image], fmt: str = "JPEG") -> dict[str, bytes]:
    options = {"quality": 90} if fmt == "JPEG" else {}
    suffix = {"JPEG": "jpg"}.get(fmt, fmt.lower())
    return {
        f"damaged-{path.stem}.{suffix}": encode(change(Image.open(path).convert("RGB")), fmt, **options)
        for path in files
    }


def failed_checks(outcome) -> set[str]:
    return {check["name"] for check in outcome.checks if not check["success"]}


# ---------------------------------------------------------------- profile


def test_profile_row_of_a_real_photo_has_every_statistic(real_files):
    """A real 227x227 JPEG decodes, and its statistics are within the ranges a photo can have."""
    data = real_files["Positive"][0].read_bytes()
    row = profile_bytes("a.jpg", data)
    assert row["decodable"] and row["decode_error"] == ""
    assert (row["format"], row["mode"], row["channels"], row["width"], row["height"]) == ("JPEG", "RGB", 3, 227, 227)
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["size_bytes"] == len(data)
    assert 0 < row["brightness"] < 255 and row["contrast"] > 0 and row["blur"] > 0
    assert 0 <= row["saturated_fraction"] <= 1 and 0 <= row["dark_fraction"] <= 1


def test_profile_of_undecodable_bytes_is_a_row_with_a_reason():
    """Truncated, empty and non-image bytes are rows with decodable=False and a reason, not exceptions."""
    full = encode(Image.new("RGB", (300, 300), (120, 120, 120)), "JPEG")
    cases = {"cut.jpg": full[: len(full) // 3], "empty.jpg": b"", "notes.txt": b"hello, not an image"}
    rows = {key: profile_bytes(key, data) for key, data in cases.items()}
    assert not any(row["decodable"] for row in rows.values())
    assert "truncated" in rows["cut.jpg"]["decode_error"]
    assert "empty" in rows["empty.jpg"]["decode_error"]
    assert "not an image" in rows["notes.txt"]["decode_error"]
    assert rows["cut.jpg"]["brightness"] is None


def test_profile_of_a_very_thin_jpeg_is_a_row():
    """A 1x5000 strip (thinner than the analysis size on one side) is profiled, not a crash of the batch, and
    its statistics are numbers (shrunk by ImageOps.contain, a 2x65000 strip became 0 pixels wide: NaN)."""
    rows = [profile_bytes(f"{w}x{h}.jpg", encode(Image.new("RGB", (w, h), (90, 90, 90)), "JPEG"))
            for w, h in ((1, 5000), (5000, 1), (2, 65000))]  # fmt: skip
    assert [(row["width"], row["height"], row["decodable"]) for row in rows] == [
        (1, 5000, True), (5000, 1, True), (2, 65000, True)
    ]  # fmt: skip
    assert [round(row["brightness"]) for row in rows] == [90, 90, 90]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (KeyError("boom"), "unexpected KeyError in crack-model ('boom')"),
        (MemoryError(), "the worker ran out of memory"),
    ],
)
def test_a_fault_of_ours_on_one_object_is_that_objects_row(monkeypatch, fault, reason):
    """Whatever goes wrong while profiling one object ends as its row's reason; the next object is profiled."""
    from crack_model.quality import profile

    real = profile.picture_statistics

    def failing(gray, tiles, side):
        if gray.shape == (30, 40):
            raise fault
        return real(gray, tiles, side)

    monkeypatch.setattr(profile, "picture_statistics", failing)
    odd = profile_bytes("odd.png", encode(Image.new("L", (40, 30), 90), "PNG"))
    fine = profile_bytes("fine.png", grayscale_png())
    assert not odd["decodable"] and reason in odd["decode_error"], odd
    assert fine["decodable"] and fine["brightness"] is not None


def test_running_out_of_memory_reading_an_object_says_so_in_its_row():
    """A MemoryError while fetching carries no message: the row says what happened and what to do."""
    from crack_model.quality.profile import profile_object

    def fetch(key):
        raise MemoryError

    row = profile_object("incoming/b1/huge.jpg", fetch, ProfileConfig())
    assert row["decode_error"].startswith("cannot read: the worker ran out of memory; the file is kept"), row


def test_profile_reports_displayed_size_mode_and_orientation():
    """An EXIF-rotated JPEG reports its upright size; a grey PNG its mode and one channel."""
    rotated = profile_bytes("r.jpg", exif_rotated_jpeg(6))
    assert (rotated["width"], rotated["height"], rotated["exif_orientation"]) == (48, 64, 6)
    grey = profile_bytes("g.png", grayscale_png())
    assert (grey["format"], grey["mode"], grey["channels"], grey["decodable"]) == ("PNG", "L", 1, True)


def mirrored_photo(patch: Path, width: int = 2270, height: int = 1816) -> Image.Image:
    """A full-size photo of one real patch's surface at its own resolution: the patch mirrored to fill it,
    so the texture runs on without a seam (a photo of concrete taken as the training patches were)."""
    pixels = np.asarray(Image.open(patch).convert("RGB"))
    row = np.concatenate([pixels, pixels[:, ::-1]] * (width // (2 * pixels.shape[1]) + 1), axis=1)
    full = np.concatenate([row, row[::-1]] * (height // (2 * pixels.shape[0]) + 1), axis=0)
    return Image.fromarray(np.ascontiguousarray(full[:height, :width]))


@pytest.fixture(scope="module")
def sharp_crack_patches(real_files) -> list[Path]:
    """Real crack patches whose surface, measured whole at 512 px on a full-size photo, read as "noisy"."""
    chosen = []
    for path in real_files["Positive"]:
        shrunk = mirrored_photo(path).convert("L").resize((512, 410), Image.Resampling.BILINEAR)
        if image_statistics(np.asarray(shrunk))["blur"] > ValidationThresholds().blur_max:
            chosen.append(path)
        if len(chosen) == 4:
            return chosen
    raise AssertionError("no real crack patch reads above blur_max on a shrunk full-size photo")


def test_full_size_photos_are_measured_at_the_scale_of_the_tiles(sharp_crack_patches):
    """Contrast and blur of a full-size photo are those of its tiles, as the bounds (derived on 227-px patches)
    expect: measured whole at 512 px, these crack photos read 2.5-20x sharper and were quarantined as noisy,
    and the same photos out of focus read as sharp as an ordinary patch."""
    for path in sharp_crack_patches:
        patch = profile_bytes("patch.jpg", path.read_bytes())
        photo = mirrored_photo(path)
        sharp = profile_bytes("photo.jpg", encode(photo, "JPEG", quality=92))
        assert (sharp["width"], sharp["height"]) == (2270, 1816)
        assert sharp["blur"] == pytest.approx(patch["blur"], rel=0.3), path.name
        assert sharp["contrast"] == pytest.approx(patch["contrast"], rel=0.15), path.name
        assert sharp["blur"] <= ValidationThresholds().blur_max
        blurred = profile_bytes("blurred.jpg", encode(photo.filter(ImageFilter.GaussianBlur(4)), "JPEG", quality=92))
        assert blurred["blur"] < ValidationThresholds().blur_min, path.name  # out of focus, as it is


def test_full_size_crack_photos_pass_the_incoming_suite(tmp_path, sharp_crack_patches):
    """A batch of sharp full-size crack photos is scored, not quarantined; the same photos out of focus are not."""
    sharp = {f"crack-{path.stem}.jpg": encode(mirrored_photo(path), "JPEG", quality=92) for path in sharp_crack_patches}
    blurred = {f"blurred-{path.stem}.jpg": encode(mirrored_photo(path).filter(ImageFilter.GaussianBlur(4)), "JPEG",
                                                  quality=92) for path in sharp_crack_patches}  # fmt: skip
    store = write_batch(tmp_path, "photos", sharp | blurred)
    outcome = validate_batch(store, "photos", "incoming", thresholds=ValidationThresholds(max_bad_fraction=0.6))
    assert outcome.outcome == PASSED_WITH_QUARANTINE, outcome.reasons
    assert sorted(key.rsplit("/", 1)[-1] for key in quarantined_keys(store, "photos")) == sorted(blurred)


def test_statistics_of_a_photo_shrunk_for_the_tile_budget_come_from_the_shrunk_photo():
    """A photo over the tile budget is measured at the size scoring tiles it at; pixel noise averages away there.
    Brightness comes from the whole photo at most ``analysis_side`` a side, whatever that is."""
    rng = np.random.default_rng(0)
    pixels = np.clip(150 + rng.normal(0, 20, (1500, 2000, 3)), 0, 255).astype(np.uint8)
    data = encode(Image.fromarray(pixels), "JPEG", quality=90)
    full = profile_bytes("big.jpg", data)
    shrunk = profile_bytes("big.jpg", data, ProfileConfig(tiles=TileConfig(max_tiles=4)))
    small_analysis = profile_bytes("big.jpg", data, ProfileConfig(analysis_side=64))
    assert (shrunk["width"], shrunk["height"]) == (full["width"], full["height"]) == (2000, 1500)
    assert shrunk["blur"] < full["blur"] / 10
    assert small_analysis["blur"] == full["blur"] and small_analysis["contrast"] == full["contrast"]
    assert small_analysis["brightness"] == pytest.approx(full["brightness"], abs=1)


def test_labeled_profile_takes_labels_from_class_folders(tmp_path, real_files):
    """labeled/<class>/... keys get their class; files outside a class folder are left out."""
    for name in CLASSES:
        (tmp_path / "labeled" / name).mkdir(parents=True)
        for path in real_files[name][:3]:
            (tmp_path / "labeled" / name / path.name).write_bytes(path.read_bytes())
    (tmp_path / "labeled" / "README.txt").write_text("not an image")
    profile = profile_labeled(str(tmp_path), "labeled")
    assert len(profile) == 6
    assert profile["label"].value_counts().to_dict() == {"Negative": 3, "Positive": 3}


# ---------------------------------------------------------------- the real sample passes


def test_real_photos_pass_the_incoming_suite_and_files_are_written(tmp_path, real_files):
    """200 real photos: passed, every expectation holds, result/outcome/report/profile written."""
    store = write_batch(tmp_path, "real", real_objects(mixed(real_files, 200)))
    outcome = validate_batch(store, "real", "incoming")
    assert outcome.outcome == PASSED, outcome.reasons
    assert outcome.quarantined == [] and failed_checks(outcome) == set()
    assert outcome.counts["objects"] == 200 and outcome.counts["evaluated_expectations"] == 11
    result = json.loads((tmp_path / "validation/real/result.json").read_text())
    assert result["success"] is True and len(result["results"]) == 11
    assert result["results"][0]["expectation_config"]["type"] == "expect_table_row_count_to_be_between"
    assert read_outcome(store, "real")["outcome"] == PASSED
    assert "passed" in (tmp_path / "validation/real/report.html").read_text()
    assert (tmp_path / "validation/real/profile.csv").read_text().count("\n") == 201
    assert not (tmp_path / "quarantine").exists() and quarantined_keys(store, "real") == set()


def test_a_holdout_file_over_the_size_limit_is_not_hashed_and_never_read(tmp_path, loaded_keys, caplog, monkeypatch):
    """The overlap check hashes every holdout image; one over the upload limit (sparse: no disk used) is left out
    with a warning instead of read whole: a labeled photo that size is quarantined, so it overlaps nothing."""
    from crack_model.core.uploads import MAX_UPLOAD_BYTES

    (tmp_path / "holdout" / "Positive").mkdir(parents=True)
    (tmp_path / "holdout" / "Positive" / "a.jpg").write_bytes(b"a photo")
    with (tmp_path / "holdout" / "Positive" / "scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)

    assert load_hashes(str(tmp_path / "holdout")) == {hashlib.sha256(b"a photo").hexdigest()}
    assert loaded_keys == ["Positive/a.jpg"]
    assert "not hashing Positive/scan.tif: too large" in caplog.text

    from dataclasses import replace

    from crack_model.core.local_store import LocalStore

    caplog.clear()  # listed small, over the limit by the time it is read: left out the same way, not a failed run
    real_list = LocalStore.list
    monkeypatch.setattr(
        LocalStore, "list", lambda self, prefix="": (replace(info, size=7) for info in real_list(self, prefix))
    )
    assert load_hashes(str(tmp_path / "holdout")) == {hashlib.sha256(b"a photo").hexdigest()}
    assert "not hashing Positive/scan.tif: too large" in caplog.text and "scan.tif" not in " ".join(loaded_keys)


def test_real_pool_passes_the_training_suite(tmp_path, real_files):
    """A labeled pool of real photos with a disjoint holdout passes the training suite."""
    for name in CLASSES:
        for folder, files in (("labeled", real_files[name][:60]), ("holdout", real_files[name][60:80])):
            (tmp_path / folder / name).mkdir(parents=True, exist_ok=True)
            for path in files:
                (tmp_path / folder / name / path.name).write_bytes(path.read_bytes())
    holdout = load_hashes(str(tmp_path / "holdout"))
    assert len(holdout) == 40
    outcome = validate_labeled(str(tmp_path), "labeled", thresholds=SMALL_POOL, holdout_hashes=holdout)
    assert outcome.outcome == PASSED, outcome.reasons
    assert outcome.holdout_checked and outcome.counts["label:Positive"] == 60
    assert {"known_label", "class_size", "class_balance", "not_in_holdout"} <= {c["name"] for c in outcome.checks}
    assert (tmp_path / "validation/labeled/outcome.json").is_file()


def test_whole_sample_passes_both_suites_and_matches_the_derived_defaults(metu_sample):
    """All 2,000 real photos pass both suites untouched; derive_thresholds on them gives the defaults."""
    profile = profile_labeled(str(metu_sample), prefix="")
    for suite in ("incoming", "training"):
        outcome, _, _ = validate_profile(profile, batch_id="metu", suite=suite)
        assert (outcome.outcome, outcome.quarantined) == (PASSED, []), (suite, outcome.reasons)
    derived = derive_thresholds(profile)
    defaults = ValidationThresholds()
    for name in ("brightness_min", "brightness_max", "contrast_min", "contrast_max", "blur_min", "blur_max"):
        assert getattr(derived, name) == pytest.approx(getattr(defaults, name), rel=0.02, abs=0.5), name


# ---------------------------------------------------------------- each expectation fails for its reason


def blank(image: Image.Image) -> Image.Image:
    return Image.new("RGB", image.size, (150, 150, 150))


def half_white(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image).copy()
    pixels[:, : pixels.shape[1] * 2 // 5] = 255
    return Image.fromarray(pixels)


def half_black(image: Image.Image) -> Image.Image:
    pixels = np.asarray(image).copy()
    pixels[:, : pixels.shape[1] * 2 // 5] = 0
    return Image.fromarray(pixels)


DAMAGE = {
    "decodes": lambda files: {f"cut-{p.name}": p.read_bytes()[: p.stat().st_size // 3] for p in files},
    "allowed_format": lambda files: damaged(files, lambda image: image, "PNG"),  # with NARROWED thresholds
    "width_in_bounds": lambda files: damaged(files, lambda image: image.resize((120, 227))),
    "height_in_bounds": lambda files: damaged(files, lambda image: image.resize((227, 120))),
    "no_duplicate": lambda files: {
        **real_objects(files[:20]),
        **{f"again-{key}": data for key, data in real_objects(files[:20]).items()},
    },
    "brightness_in_bounds": lambda files: damaged(files, lambda image: ImageEnhance.Brightness(image).enhance(0.35)),
    "contrast_in_bounds": lambda files: damaged(files, blank),
    "sharpness_in_bounds": lambda files: damaged(files, lambda image: image.filter(ImageFilter.GaussianBlur(5))),
    "not_overexposed": lambda files: damaged(files, half_white),
    "not_underexposed": lambda files: damaged(files, half_black),
}
# Every format the decoder opens is allowed by default: a thresholds file that narrows the list is how one fails.
NARROWED = {"allowed_format": ValidationThresholds(allowed_formats=("JPEG",))}


@pytest.mark.parametrize("check", sorted(DAMAGE))
def test_incoming_expectation_fails_on_a_batch_built_to_break_it(tmp_path, real_files, check):
    """A batch of 40 photos all damaged one way fails, and that expectation is among the failures."""
    store = write_batch(tmp_path, "bad", DAMAGE[check](mixed(real_files, 40)))
    outcome = validate_batch(store, "bad", "incoming", thresholds=NARROWED.get(check))
    assert outcome.outcome == FAILED
    assert check in failed_checks(outcome), failed_checks(outcome)
    assert any(reason.startswith(f"{check}:") for reason in outcome.reasons)
    assert outcome.quarantined == [] and not (tmp_path / "quarantine").exists()
    if check != "decodes":  # only undecodable objects may fail the decode check
        assert "decodes" not in failed_checks(outcome)


def animated_gif(image: Image.Image) -> bytes:
    return encode(image, "GIF", save_all=True, append_images=[image.rotate(90)])


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "animated GIF"])
def test_every_format_the_contract_invites_passes_validation(tmp_path, real_files, fmt):
    """BMP and GIF (an animated one is scored on its first picture) pass as the scorer scores them."""
    files = mixed(real_files, 40)
    objects = real_objects(files[1:])
    image = Image.open(files[0]).convert("RGB")
    objects["invited"] = animated_gif(image) if fmt == "animated GIF" else encode(image, fmt)
    outcome = validate_batch(write_batch(tmp_path, "formats", objects), "formats", "incoming")
    assert outcome.outcome == PASSED and outcome.quarantined == [], outcome.reasons
    assert set(ValidationThresholds().allowed_formats) == set(ALLOWED_FORMATS)


def test_a_format_left_out_of_the_thresholds_is_quarantined_with_what_to_do(tmp_path, real_files):
    """The quarantine reason says to convert the photo, not only that its format is not in a list."""
    files = mixed(real_files, 40)
    objects = {**real_objects(files[1:]), "scan.bmp": encode(Image.open(files[0]).convert("RGB"), "BMP")}
    thresholds = ValidationThresholds(allowed_formats=("JPEG",))
    outcome = validate_batch(write_batch(tmp_path, "formats", objects), "formats", "incoming", thresholds=thresholds)
    assert outcome.outcome == PASSED_WITH_QUARANTINE
    [quarantined] = outcome.quarantined
    assert quarantined["key"] == "incoming/formats/scan.bmp"
    [reason] = quarantined["reasons"]
    assert reason.startswith("allowed_format: format BMP is not accepted")
    assert "convert the photo to JPEG or PNG" in reason


def test_a_batch_with_zero_objects_fails_clearly(tmp_path):
    """An empty (or missing) batch fails the batch_not_empty check with a reason saying what to look at."""
    (tmp_path / "incoming" / "empty").mkdir(parents=True)
    (tmp_path / "incoming" / "empty" / "_READY").write_text("")
    outcome = validate_batch(str(tmp_path), "empty")
    assert outcome.outcome == FAILED
    assert failed_checks(outcome) == {"batch_not_empty"}
    assert "no objects" in outcome.reasons[0] and "incoming/<batch_id>" in outcome.reasons[0]
    assert (tmp_path / "validation/empty/report.html").is_file()


def test_an_upload_gone_when_read_is_left_out_not_quarantined(tmp_path, real_files, monkeypatch):
    """Listed, then moved away before its bytes were read: it was quarantined for good as "does not decode", and
    failed a small batch; it is left out with why, and kept in the manifest as ``gone`` (scored ``missing``)."""
    from crack_model.core.uploads import read_manifest
    from crack_model.quality import batch_validation

    objects = real_objects(mixed(real_files, 6))
    uri = write_batch(tmp_path, "b1", objects)
    vanished = f"incoming/b1/{sorted(objects)[0]}"
    listed = batch_validation.list_uploads

    def listed_then_gone(store, batch_id):
        uploads = listed(store, batch_id)
        store.delete(vanished)
        return uploads

    monkeypatch.setattr(batch_validation, "list_uploads", listed_then_gone)
    outcome = validate_batch(uri, "b1")

    assert outcome.outcome == PASSED and outcome.quarantined == [] and outcome.counts["objects"] == 5
    assert "gone when read" in outcome.left_out[vanished] and "next nightly run" in outcome.left_out[vanished]
    manifest = read_manifest(LocalStore(tmp_path), "b1")
    assert manifest[vanished].gone and manifest[vanished].sha256 is None
    assert not any(entry.gone for key, entry in manifest.items() if key != vanished)


def test_a_labeled_photo_gone_when_read_is_left_out_not_quarantined(tmp_path, real_files, monkeypatch):
    """Listed, then moved away (relabeled) before its bytes were read: it was quarantined as "does not decode", a
    damaged photo; it is left out with why, and absent from profile.csv, which training takes its photos from."""
    from crack_model.quality import batch_validation

    store = build_pool(tmp_path, {name: real_files[name][:21] for name in CLASSES})
    vanished = f"labeled/Positive/{real_files['Positive'][0].name}"
    listed = batch_validation.labeled_objects

    def listed_then_gone(source, prefix, left_out):
        labeled = listed(source, prefix, left_out)
        source.delete(vanished)
        return labeled

    monkeypatch.setattr(batch_validation, "labeled_objects", listed_then_gone)
    outcome = validate_labeled(store, "labeled", thresholds=SMALL_POOL)

    assert outcome.outcome == PASSED and outcome.quarantined == [] and outcome.counts["objects"] == 41
    assert "gone when read" in outcome.left_out[vanished] and "not trained on" in outcome.left_out[vanished]
    assert vanished not in (tmp_path / "validation" / "labeled" / "profile.csv").read_text(encoding="utf-8")


def test_an_empty_labeled_pool_names_the_class_folders_not_incoming(tmp_path):
    """A labeled pool with class folders and no photo fails batch_not_empty saying where labeled photos go, not
    the incoming batches' "reached incoming/<batch_id>/"."""
    for name in ("Negative", "Positive"):
        (tmp_path / "labeled" / name).mkdir(parents=True)
    outcome = validate_labeled(str(tmp_path), "labeled", thresholds=SMALL_POOL)
    assert outcome.outcome == FAILED
    assert "batch_not_empty" in failed_checks(outcome)
    (reason,) = [reason for reason in outcome.reasons if reason.startswith("batch_not_empty:")]
    assert "labeled/<class>/" in reason and "incoming" not in reason, reason


def build_pool(root: Path, counts: dict[str, list[Path]]) -> str:
    for name, files in counts.items():
        (root / "labeled" / name).mkdir(parents=True, exist_ok=True)
        for path in files:
            (root / "labeled" / name / path.name).write_bytes(path.read_bytes())
    return str(root)


def test_training_suite_fails_on_an_unknown_class_folder(tmp_path, real_files):
    """Images in a folder that is not a known class fail known_label, naming the objects."""
    store = build_pool(tmp_path, {"Negative": real_files["Negative"][:30], "Positive": real_files["Positive"][:30],
                                  "Cracks": real_files["Positive"][30:32]})  # fmt: skip
    outcome = validate_labeled(store, "labeled", thresholds=SMALL_POOL)
    assert outcome.outcome == FAILED and failed_checks(outcome) == {"known_label"}
    offenders = next(check["offenders"] for check in outcome.checks if check["name"] == "known_label")
    assert len(offenders) == 2 and all(key.startswith("labeled/Cracks/") for key in offenders)


def test_a_photo_filed_under_both_classes_is_held_back_in_both(tmp_path, real_files):
    """The same bytes in Positive and Negative: a labeling mistake; keeping either copy would train it wrong."""
    store = build_pool(tmp_path, {name: real_files[name][:30] for name in CLASSES})
    crack = real_files["Positive"][0]
    (tmp_path / "labeled" / "Negative" / "dup.jpg").write_bytes(crack.read_bytes())
    outcome = validate_labeled(store, "labeled", thresholds=SMALL_POOL)
    assert outcome.outcome == PASSED_WITH_QUARANTINE, outcome.reasons
    both = {f"labeled/Positive/{crack.name}", "labeled/Negative/dup.jpg"}
    assert outcome.quarantined_keys == both
    reasons = {item["key"]: " ".join(item["reasons"]) for item in outcome.quarantined}
    assert f"also filed as Positive (labeled/Positive/{crack.name})" in reasons["labeled/Negative/dup.jpg"]
    assert "also filed as Negative (labeled/Negative/dup.jpg)" in reasons[f"labeled/Positive/{crack.name}"]


def test_a_copy_in_a_folder_that_is_no_class_is_no_label_conflict():
    """labeled/Positive_old/ holding a copy is known_label's to refuse; the good copy is not held back for it."""
    import pandas as pd

    from crack_model.quality.tables import objects_table

    keys = ["labeled/Positive/a.jpg", "labeled/Positive_old/a.jpg", "labeled/Negative/a.jpg"]
    labels = ["Positive", "Positive_old", "Negative"]
    profile = pd.DataFrame({"key": keys, "sha256": ["s1", "s1", "s2"], "label": labels})
    assert objects_table(profile, class_names=CLASSES)["label_conflict"].isna().all()
    profile.loc[2, "sha256"] = "s1"  # now also under Negative: both copies in classes name each other
    conflicts = objects_table(profile, class_names=CLASSES)["label_conflict"].tolist()
    assert conflicts[0] == "Negative (labeled/Negative/a.jpg)" and conflicts[2] == "Positive (labeled/Positive/a.jpg)"
    assert pd.isna(conflicts[1])  # no class: known_label holds it back


def test_training_suite_fails_on_a_small_class(tmp_path, real_files):
    """A class with fewer images than min_images_per_class fails class_size, naming the class."""
    store = build_pool(tmp_path, {"Negative": real_files["Negative"][:40], "Positive": real_files["Positive"][:10]})
    outcome = validate_labeled(store, "labeled", thresholds=SMALL_POOL.replace(min_class_balance=0.0))
    assert failed_checks(outcome) == {"class_size"}
    assert any("class_size" in reason and "Positive" in reason for reason in outcome.reasons)


def test_training_suite_fails_on_unbalanced_classes(tmp_path, real_files):
    """100 against 15 images (share 0.15 < 0.2) fails class_balance but not class_size."""
    store = build_pool(tmp_path, {"Negative": real_files["Negative"][:100], "Positive": real_files["Positive"][:15]})
    outcome = validate_labeled(store, "labeled", thresholds=ValidationThresholds(min_images_per_class=10))
    assert failed_checks(outcome) == {"class_balance"}


def test_training_suite_fails_when_pool_and_holdout_share_images(tmp_path, real_files):
    """Training images whose bytes are also in the holdout fail not_in_holdout, naming them."""
    store = build_pool(tmp_path, {name: real_files[name][:30] for name in CLASSES})
    leaked = real_files["Positive"][:3]
    holdout = {hashlib.sha256(path.read_bytes()).hexdigest() for path in [*leaked, *real_files["Negative"][50:60]]}
    outcome = validate_labeled(store, "labeled", thresholds=SMALL_POOL, holdout_hashes=holdout)
    assert failed_checks(outcome) == {"not_in_holdout"}
    offenders = next(check["offenders"] for check in outcome.checks if check["name"] == "not_in_holdout")
    assert sorted(offenders) == sorted(f"labeled/Positive/{path.name}" for path in leaked)


def test_training_suite_on_an_unlabeled_batch_fails_has_label(tmp_path, real_files):
    """An incoming batch has no class folders: the training suite fails it on has_label."""
    store = write_batch(tmp_path, "b", real_objects(mixed(real_files, 10)))
    outcome = validate_batch(store, "b", "training", thresholds=ValidationThresholds(min_images_per_class=0))
    assert "has_label" in failed_checks(outcome)


# ---------------------------------------------------------------- quarantine


def test_a_labeled_photo_over_the_size_limit_is_quarantined_and_never_read(tmp_path, real_files, loaded_keys):
    """A labeled file over the upload limit (sparse: no disk used) is quarantined by its size, as an upload is: the
    pool's profile never loads it, and its quarantine copy is refused unread; the photos beside it pass."""
    from crack_model.core.uploads import MAX_UPLOAD_BYTES

    for name in CLASSES:
        (tmp_path / "labeled" / name / "site-b").mkdir(parents=True)
        for path in real_files[name][:40]:
            (tmp_path / "labeled" / name / "site-b" / path.name).write_bytes(path.read_bytes())
    with (tmp_path / "labeled" / "Positive" / "site-b" / "scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)

    outcome = validate_labeled(str(tmp_path), "labeled", thresholds=SMALL_POOL)

    assert "labeled/Positive/site-b/scan.tif" not in loaded_keys and len(loaded_keys) >= 80
    assert outcome.outcome == PASSED_WITH_QUARANTINE, outcome.reasons
    [held] = outcome.quarantined
    assert held["key"] == "labeled/Positive/site-b/scan.tif"
    assert f"too large: {MAX_UPLOAD_BYTES + 1:,} bytes, over the limit" in " ".join(held["reasons"])
    assert held["quarantine_error"].startswith("not copied: too large: ")


def test_a_few_bad_objects_are_quarantined_with_their_bytes_and_reasons(tmp_path, real_files):
    """3 bad objects among 100: passed_with_quarantine; copies are byte-identical; reasons name the checks.

    One sits in a folder named like the quarantine manifest: its copy goes beside the manifest, not in its way."""
    objects = real_objects(mixed(real_files, 97))
    good = mixed(real_files, 100, start=60)
    bad = {
        "quarantine.json/cut.jpg": good[0].read_bytes()[:2000],
        "site-a/thumb.jpg": encode(Image.open(good[1]).resize((64, 64)), "JPEG"),
        "dark.jpg": encode(ImageEnhance.Brightness(Image.open(good[2])).enhance(0.3), "JPEG"),
    }
    store = write_batch(tmp_path, "q1", {**objects, **bad})
    outcome = validate_batch(store, "q1")
    assert outcome.outcome == PASSED_WITH_QUARANTINE, outcome.reasons
    expected = {f"incoming/q1/{name}" for name in bad}
    assert outcome.quarantined_keys == expected == quarantined_keys(store, "q1")
    reasons = {item["key"]: " ".join(item["reasons"]) for item in outcome.quarantined}
    assert reasons["incoming/q1/quarantine.json/cut.jpg"].startswith("decodes: does not decode: corrupt or truncated")
    assert "width_in_bounds" in reasons["incoming/q1/site-a/thumb.jpg"]
    assert "brightness_in_bounds" in reasons["incoming/q1/dark.jpg"]
    for name, data in bad.items():
        copy = tmp_path / "quarantine" / "q1" / "uploads" / name
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert (tmp_path / "incoming" / "q1" / name).is_file()  # nothing is deleted
    manifest = json.loads((tmp_path / "quarantine/q1/quarantine.json").read_text())
    assert {item["key"] for item in manifest["objects"]} == expected
    copies = [item["quarantine_key"] for item in manifest["objects"] if item["reasons"]]
    assert len(copies) == 3 and all(copy.startswith("quarantine/q1/uploads/") for copy in copies)
    report = (tmp_path / "validation/q1/report.html").read_text()
    assert "passed_with_quarantine" in report and "incoming/q1/quarantine.json/cut.jpg" in report


def test_a_rerun_after_the_upload_is_fixed_clears_the_list_but_keeps_the_copies(tmp_path, real_files):
    """Re-validating a fixed batch: passed, quarantined_keys empty, the earlier copy still in quarantine/."""
    late = real_files["Positive"][100]
    store = write_batch(tmp_path, "r", {**real_objects(mixed(real_files, 40)), "late.jpg": late.read_bytes()[:1000]})
    assert validate_batch(store, "r").outcome == PASSED_WITH_QUARANTINE
    assert quarantined_keys(store, "r") == {"incoming/r/late.jpg"}
    (tmp_path / "incoming/r/late.jpg").write_bytes(late.read_bytes())
    outcome = validate_batch(store, "r")
    assert outcome.outcome == PASSED and quarantined_keys(store, "r") == set()
    assert (tmp_path / "quarantine/r/uploads/late.jpg").read_bytes() == late.read_bytes()[:1000]


def test_more_bad_objects_than_the_tolerance_fail_even_if_each_check_holds(tmp_path, real_files):
    """4 undecodable + 4 tiny among 104 (each check under 5 %, together 7.7 %) fail on the combined tolerance."""
    files = mixed(real_files, 104)
    objects = real_objects(files[8:])
    objects.update({f"cut-{path.name}": path.read_bytes()[:1500] for path in files[:4]})
    objects.update(damaged(files[4:8], lambda image: image.resize((64, 64))))
    store = write_batch(tmp_path, "many", objects)
    outcome = validate_batch(store, "many")
    assert outcome.outcome == FAILED
    assert failed_checks(outcome) == {"bad_objects_within_tolerance"}
    assert not (tmp_path / "quarantine").exists()


# ---------------------------------------------------------------- drift


def held_back(real_files: dict[str, list[Path]], name: str) -> list[Path]:
    """Every 4th of the class's photos: kept out of the drift reference, spread over the whole sample."""
    return real_files[name][::4]


def held_back_mix(real_files: dict[str, list[Path]]) -> list[Path]:
    return held_back(real_files, "Negative") + held_back(real_files, "Positive")


@pytest.fixture(scope="module")
def reference(real_files, tmp_path_factory) -> str:
    """A drift reference from the 300 real photos (150 per class) not held back, saved as JSON."""
    root = tmp_path_factory.mktemp("reference")
    kept = {name: [path for path in real_files[name] if path not in held_back(real_files, name)] for name in CLASSES}
    build_pool(root, kept)
    uri = str(root / "drift_reference.json")
    drift.save_reference(drift.build_reference(profile_labeled(str(root), "labeled")), uri)
    return uri


def test_held_back_real_photos_do_not_drift(tmp_path, real_files, reference):
    """100 real photos held back from the reference: PSI of every feature under the threshold."""
    store = write_batch(tmp_path, "held", real_objects(held_back_mix(real_files)))
    outcome = validate_batch(store, "held", reference=reference)
    assert outcome.drift is not None and outcome.drift["checked"]
    assert outcome.drift["drifted"] is False, outcome.drift
    assert outcome.outcome == PASSED


def test_only_uncracked_photos_are_not_drift(tmp_path, metu_sample, reference):
    """A batch of uncracked surfaces only differs from a 50/50 reference by crack prevalence, not drift."""
    others = sorted((metu_sample / "Negative").glob("*.jpg"))[2::10]  # 100, none of them in the reference
    store = write_batch(tmp_path, "neg", real_objects(others))
    outcome = validate_batch(store, "neg", reference=reference)
    assert outcome.drift["drifted"] is False, outcome.drift
    assert max(outcome.drift["psi_unadjusted"].values()) > outcome.drift["threshold"]  # naive PSI would flag it


def test_shifted_lighting_and_synthetic_textures_drift(tmp_path, real_files, reference):
    """Darker, blue-tinted real photos and synthetic textures are both flagged as drifted."""
    from crack_model.data.synth import generate_dataset

    def relit(image: Image.Image) -> Image.Image:
        red, green, blue = ImageEnhance.Brightness(image).enhance(0.65).split()
        return Image.merge("RGB", (red.point(lambda v: v * 0.85), green, blue.point(lambda v: min(255, v * 1.3))))

    generate_dataset(tmp_path / "synth", 50, seed=3)
    synthetic = {f"{path.parent.name}-{path.name}": path.read_bytes() for path in (tmp_path / "synth").rglob("*.jpg")}
    for batch_id, objects in (("relit", damaged(held_back_mix(real_files), relit)), ("synth", synthetic)):
        store = write_batch(tmp_path / batch_id, batch_id, objects)
        outcome = validate_batch(store, batch_id, reference=reference)
        assert outcome.drift["drifted"] is True, (batch_id, outcome.drift)
        assert outcome.drift["drifted_features"]
        saved = json.loads((tmp_path / batch_id / f"validation/{batch_id}/outcome.json").read_text())
        assert saved["drift"]["drifted"] is True


def test_drift_fails_the_batch_only_when_asked(tmp_path, real_files, reference):
    """fail_on_drift turns a drifted batch into failed with a no_drift reason."""
    objects = damaged(held_back_mix(real_files), lambda image: ImageEnhance.Brightness(image).enhance(0.7))
    store = write_batch(tmp_path, "dim", objects)
    outcome = validate_batch(store, "dim", reference=reference, thresholds=ValidationThresholds(fail_on_drift=True))
    assert outcome.outcome == FAILED and any(reason.startswith("no_drift:") for reason in outcome.reasons)


def test_small_batches_are_not_judged_for_drift(tmp_path, real_files, reference):
    """Fewer images than DriftConfig.min_images: drift is reported as not judged, not as a verdict."""
    store = write_batch(tmp_path, "few", real_objects(mixed(real_files, 10)))
    outcome = validate_batch(store, "few", reference=reference)
    assert outcome.drift["checked"] is False and outcome.drift["drifted"] is None
    assert "not judged" in outcome.drift["note"]


# ---------------------------------------------------------------- S3 over HTTP


# ---------------------------------------------------------------- the command line


def run_cli(argv: list[str]) -> int:
    from crack_model.cli.validate_command import add_validate_command

    parser = argparse.ArgumentParser(prog="crack-model")
    add_validate_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_exit_status_follows_the_outcome(tmp_path, real_files, capsys):
    """validate exits 0 for a good batch and 1 for a failed one, printing the outcome and the reason."""
    good = write_batch(tmp_path, "good", real_objects(mixed(real_files, 20)))
    write_batch(tmp_path, "bad", damaged(mixed(real_files, 20), blank))
    assert run_cli(["validate", "--batch", f"{good}/incoming/good"]) == 0
    assert "batch good: passed" in capsys.readouterr().out
    assert run_cli(["validate", "--batch", f"{good}/incoming/bad", "--report", str(tmp_path / "r.html")]) == 1
    out = capsys.readouterr().out
    assert "batch bad: failed" in out and "contrast_in_bounds" in out
    assert (tmp_path / "r.html").is_file()


def test_cli_validates_a_labeled_folder_with_the_training_suite(tmp_path, real_files, capsys):
    """--suite training on <store>/labeled writes validation/labeled/ beside it and a drift reference."""
    store = build_pool(tmp_path, {name: real_files[name][:25] for name in CLASSES})
    reference_path = tmp_path / "ref.json"
    argv = ["validate", "--batch", f"{store}/labeled", "--suite", "training", "--min-images-per-class", "20",
            "--write-reference", str(reference_path)]  # fmt: skip
    assert run_cli(argv) == 0
    assert "batch labeled: passed" in capsys.readouterr().out
    assert (tmp_path / "validation/labeled/report.html").is_file()
    assert drift.load_reference(str(reference_path))["label_counts"] == {"Negative": 25, "Positive": 25}


def test_cli_user_mistakes_raise_actionable_errors(tmp_path):
    """A batch URI without incoming/<id>, a plain folder without --output, an unknown threshold: CrackModelError."""
    with pytest.raises(CrackModelError, match="incoming/<batch_id>"):
        run_cli(["validate", "--batch", str(tmp_path / "somewhere")])
    with pytest.raises(CrackModelError, match="--output"):
        run_cli(["validate", "--batch", str(tmp_path), "--suite", "training"])
    (tmp_path / "t.json").write_text(json.dumps({"blurr_min": 1}))
    with pytest.raises(CrackModelError, match="unknown threshold"):
        run_cli(["validate", "--batch", f"{tmp_path}/incoming/x", "--thresholds", str(tmp_path / "t.json")])
    with pytest.raises(CrackModelError, match="unknown --suite"):
        run_cli(["validate", "--batch", f"{tmp_path}/incoming/x", "--suite", "nightly"])


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"min_side": "wide"}, "threshold min_side must be a whole number, got 'wide'"),
        ({"brightness_min": "80"}, "threshold brightness_min must be a number, got '80'"),
        ({"max_bad_fraction": None}, "threshold max_bad_fraction must be a number, got None"),
        ({"fail_on_drift": 1}, "threshold fail_on_drift must be true or false, got 1"),
        ({"class_names": "Positive"}, "threshold class_names must be a list of names, got 'Positive'"),
    ],
)
def test_a_thresholds_file_with_a_value_of_the_wrong_kind_names_it(tmp_path, overrides, said):
    (tmp_path / "t.json").write_text(json.dumps(overrides))
    with pytest.raises(CrackModelError, match=re.escape(said)):
        ValidationThresholds.load(str(tmp_path / "t.json"))


def test_a_thresholds_file_may_give_whole_numbers_for_fractions(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"brightness_min": 80, "class_names": ["A", "B"], "max_side": 16384.0}))
    loaded = ValidationThresholds.load(str(tmp_path / "t.json"))
    assert (loaded.brightness_min, loaded.class_names, loaded.max_side) == (80, ("A", "B"), 16384)
    assert isinstance(loaded.max_side, int)  # a whole number in the suite parameters and reports, not 16384.0
    (tmp_path / "t.json").write_text(json.dumps({"max_side": 16384.5}))
    with pytest.raises(CrackModelError, match=r"threshold max_side must be a whole number, got 16384\.5"):
        ValidationThresholds.load(str(tmp_path / "t.json"))


def test_profiling_benchmark_reports_a_rate(tmp_path, real_files):
    """bench.profile_bench.measure_profiling times a real batch and returns images per second."""
    from bench.profile_bench import measure_profiling

    store = write_batch(tmp_path, "bench", real_objects(mixed(real_files, 100)))
    result = measure_profiling(store, "bench")
    assert result["images"] == 100 and result["outcome"] == PASSED
    assert result["images_per_second"] > 0 and result["profile_images_per_second"] > 0


def test_layout_keys_are_used_for_validation_files(tmp_path, real_files):
    """The files sit exactly where layout says: validation/<id>/ and quarantine/<id>/."""
    store = write_batch(tmp_path, "k", real_objects(mixed(real_files, 20)))
    outcome = validate_batch(store, "k")
    assert outcome.files["outcome"] == str(tmp_path / layout.validation_key("k", "outcome.json"))


def test_profiling_fetches_with_the_threads_the_store_is_worth(tmp_path, monkeypatch):
    """2 fetching threads for a folder (more only take turns at the GIL), 8 for S3; an explicit count wins."""
    from crack_model.core.local_store import LocalStore
    from crack_model.core.storage import open_store
    from crack_model.quality import profile

    fetching: list[int] = []
    real_map_bounded = profile.map_bounded

    def spy(function, items, *, workers, thread_name_prefix="", **options):
        if thread_name_prefix == "profile-fetch":
            fetching.append(workers)
        return real_map_bounded(function, items, workers=workers, thread_name_prefix=thread_name_prefix, **options)

    monkeypatch.setattr(profile, "map_bounded", spy)
    store = LocalStore(tmp_path)
    store.write("incoming/b1/a.jpg", encode(Image.new("RGB", (64, 48), (90, 90, 90)), "JPEG"))
    validate_batch(str(tmp_path), "b1")
    validate_batch(str(tmp_path), "b1", profile_config=ProfileConfig(workers=5))
    profile.profile_batch(str(tmp_path), "b1")
    assert fetching == [2, 5, 2]
    assert ProfileConfig().for_store(open_store("s3://bucket/pre/fix")).workers == 8


def test_objects_the_store_refused_are_named_as_the_stores_not_the_cameras(tmp_path, real_files, monkeypatch):
    """AccessDenied on 3 of 20 (an SSE-KMS key the worker may not use): the batch's reason told the operator to
    check the upload tool and the camera's export settings."""
    from crack_model.core.local_store import LocalStore

    batch = tmp_path / "store" / "incoming" / "b1"
    batch.mkdir(parents=True)
    for path in mixed(real_files, 20):
        (batch / path.name).write_bytes(path.read_bytes())
    denied = sorted(path.name for path in batch.iterdir())[:3]
    real_read = LocalStore.read

    def read(self, key, *args, **kwargs):
        if key.rsplit("/", 1)[-1] in denied:
            raise PermissionError(f"AccessDenied: {key}")
        return real_read(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "read", read)
    outcome = validate_batch(str(tmp_path / "store"), "b1")
    assert outcome.outcome == FAILED
    store_reason = next(reason for reason in outcome.reasons if reason.startswith("store: "))
    assert "3 of 20 objects could not be read from the store" in store_reason and "AccessDenied" in store_reason
    assert "check the store's permissions (a KMS key?) and health" in store_reason
