"""A batch of hostile uploads (tests/hostile_corpus.py) through validation and scoring: one row per upload, each
with a reason of its own, and no fault of ours (an "unexpected" row) among them."""

from __future__ import annotations

import csv
import io

from crack_model.core import layout
from crack_model.core.local_store import LocalStore
from crack_model.quality.batch_validation import validate_batch
from crack_model.serving.batch import score_batch
from tests.hostile_corpus import NAMES, hostile_batch

BATCH = "2026-12-02"


def stored_rows(store: LocalStore, key: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(store.read(key).decode("utf-8"))))


def test_every_hostile_upload_is_one_row_in_validation_and_in_scoring(tmp_path, trained_model):
    store = LocalStore(tmp_path)
    uploads = hostile_batch()
    for name, data in uploads.items():
        store.write(f"incoming/{BATCH}/{name}", data)
    expected = sorted(f"incoming/{BATCH}/{name}" for name in uploads)

    validation = validate_batch(str(tmp_path), BATCH)
    profile = {row["key"]: row for row in stored_rows(store, layout.validation_key(BATCH, "profile.csv"))}
    assert sorted(profile) == expected
    score_batch(str(tmp_path), BATCH, str(trained_model.output_dir))
    rows = {row["key"]: row for row in stored_rows(store, layout.results_key(BATCH, layout.PREDICTIONS))}
    assert sorted(rows) == expected

    for key, row in rows.items():
        assert row["status"] in ("ok", "error"), row
        assert (row["status"] == "ok") == (row["crack_probability"] != "") == (row["error"] == ""), row
        assert "unexpected" not in row["error"] and "unexpected" not in profile[key]["decode_error"], row
        assert (row["status"] == "ok") == (profile[key]["decodable"] == "True"), (row, profile[key])

    def row(name: str) -> dict[str, str]:
        return rows[f"incoming/{BATCH}/{name}"]

    assert all(row(name)["status"] == "ok" for name in NAMES)  # odd names, valid photos: scored
    for name in (
        "strip-1x3000.jpg",
        "strip-40000x2.jpg",
        "nan.tif",
        "orientation-255.jpg",
        "two-jpegs.jpg",
        "cmyk.jpg",
        "sixteen-bit.png",
    ):
        assert row(name)["status"] == "ok", row(name)
    assert int(row("strip-40000x2.jpg")["tile_count"]) > 1 and row("strip-40000x2.jpg")["note"]
    for name in ("header-says-0x0.jpg", "cut-at-20.jpg", "soi-eoi-only.jpg", "png-signature-only.png"):
        assert row(name)["error"].startswith("damaged "), row(name)
    # Pillow decodes these without a word; libjpeg reports part of the picture lost (jpeg_damage.py).
    end_marker_cut = max((name for name in uploads if name.startswith("cut-at-")), key=lambda n: int(n[7:-4]))
    for name in ("corrupt-0.jpg", "corrupt-1.jpg", "corrupt-2.jpg", end_marker_cut):
        assert "so part of the picture may be lost" in row(name)["error"], row(name)
    for name in ("iphone-turned.heic", "ten-bit-grey.heif"):  # what iPhones save is scored
        key = f"incoming/{BATCH}/{name}"
        assert row(name)["status"] == "ok" and key not in {item["key"] for item in validation.quarantined}, row(name)
        assert profile[key]["format"] == "HEIF", profile[key]
    assert (row("iphone-turned.heic")["width"], row("iphone-turned.heic")["height"]) == ("300", "220")  # upright
    assert row("header-only.heic")["error"].startswith("damaged HEIC file"), row("header-only.heic")
    assert row("cut-in-half.heic")["error"].startswith("corrupt or truncated image"), row("cut-in-half.heic")
    assert row("item-type-not-text.heic")["error"].startswith("damaged HEIC file: it holds an item of type")
    assert row("boxes-end-early.heic")["error"].startswith("damaged HEIC file"), row("boxes-end-early.heic")
    assert row("photo.avif")["error"].startswith("format AVIF is not accepted"), row("photo.avif")
    assert row("camera.dng")["error"].startswith("format DNG (camera raw) is not accepted: export"), row("camera.dng")
    assert row("header-says-65000x65000.jpg")["error"].startswith("image too large")
    assert row("header-says-65000x65000.jpg")["error"].endswith("downscale it before upload")
    assert "empty file" in row("empty.jpg")["error"]
