"""The local copy of the labeled pool: what training reads, and the store URLs a registered version names."""

from __future__ import annotations

import csv
import hashlib
import json

from crack_model.core.local_store import LocalStore
from crack_model.core.uploads import MAX_UPLOAD_BYTES
from crack_model.pipelines.pool_copy import download_labeled, name_split_in_store, named_in_store


def test_the_training_pool_download_leaves_out_a_file_over_the_size_limit_unread(tmp_path, loaded_keys):
    """Validation quarantines a labeled file over the upload limit unread; the pool's download must not read it
    whole either (sparse: no disk used); the photos beside it are copied."""
    store = LocalStore(tmp_path / "store")
    store.write("labeled/Positive/site-b/a.jpg", b"crack")
    store.write("labeled/Negative/b.jpg", b"clean")
    with (store.root / "labeled/Positive/site-b/scan.tif").open("wb") as handle:
        handle.truncate(MAX_UPLOAD_BYTES + 1)

    pool = download_labeled(store, "labeled", tmp_path / "pool", ["Negative", "Positive"])

    assert sorted(loaded_keys) == ["labeled/Negative/b.jpg", "labeled/Positive/site-b/a.jpg"]
    assert sorted(str(path.relative_to(pool)) for path in pool.rglob("*") if path.is_file()) == [
        "Negative/b.jpg",
        "Positive/site-b/a.jpg",
    ]


def test_a_training_pool_kept_from_an_earlier_run_is_brought_up_to_date(tmp_path):
    """`retrain --work` keeps its pool between runs: a photo replaced by another of the same size (a fixed-size BMP)
    is copied again, and one taken out of the store leaves the pool, so training never sees either old version."""
    store = LocalStore(tmp_path / "store")
    store.write("labeled/Positive/a.bmp", b"crack one")
    store.write("labeled/Negative/b.bmp", b"clean one")
    store.write("labeled/Negative/mislabeled.bmp", b"a crack")
    pool = download_labeled(store, "labeled", tmp_path / "pool", ["Negative", "Positive"])
    (pool / "notes.txt").write_text("the operator's own")  # outside the class folders: left alone

    store.write("labeled/Positive/a.bmp", b"crack two")  # same size, other bytes
    store.delete("labeled/Negative/mislabeled.bmp")
    download_labeled(store, "labeled", pool, ["Negative", "Positive"])

    files = {str(path.relative_to(pool)): path.read_bytes() for path in pool.rglob("*") if path.is_file()}
    assert files == {"Positive/a.bmp": b"crack two", "Negative/b.bmp": b"clean one", "notes.txt": b"the operator's own"}


def test_only_what_the_suite_judged_is_copied_with_the_bytes_it_judged(tmp_path, caplog):
    """Uploads go on between validation and training: a photo added since (a broken JPEG failed the whole training,
    a GIF the suite would hold back was trained on) or replaced since waits for the next retraining."""
    store = LocalStore(tmp_path / "store")
    store.write("labeled/Positive/a.jpg", b"crack")
    store.write("labeled/Negative/b.jpg", b"clean")
    judged = {key: hashlib.sha256(store.read(key)).hexdigest() for key in ("labeled/Positive/a.jpg",
                                                                           "labeled/Negative/b.jpg")}  # fmt: skip
    store.write("labeled/Positive/late.jpg", b"not a jpeg at all")
    store.write("labeled/Negative/b.jpg", b"replaced")

    pool = download_labeled(store, "labeled", tmp_path / "pool", ["Negative", "Positive"], judged)

    assert [str(path.relative_to(pool)) for path in pool.rglob("*") if path.is_file()] == ["Positive/a.jpg"]
    said = caplog.text
    assert "labeled/Positive/late.jpg: added after the pool was validated" in said
    assert "labeled/Negative/b.jpg: replaced after the pool was validated" in said


def test_a_registered_version_names_its_photos_by_their_store_urls(tmp_path):
    """The local copy is deleted after training: split.csv and metrics.json named its paths, so nobody could trace
    what a version learned from, and ``evaluate --split`` on a registered version failed."""
    split = tmp_path / "split.csv"
    local = f"{tmp_path}/pool/"
    with split.open("w", newline="") as handle:
        csv.writer(handle).writerows([["uri", "label", "sha256", "split", "slice"],
                                      [f"{local}Positive/a, b.jpg", "Positive", "ab", "train", "(none)"],
                                      ["s3://elsewhere/x.jpg", "Negative", "cd", "test", "(none)"]])  # fmt: skip
    name_split_in_store(split, local, "s3://bucket/labeled/")
    with split.open(newline="") as handle:
        assert [row["uri"] for row in csv.DictReader(handle)] == ["s3://bucket/labeled/Positive/a, b.jpg",
                                                                  "s3://elsewhere/x.jpg"]  # fmt: skip
    metrics = {"test": {"misclassified": [{"uri": f"{local}Negative/c.jpg", "probability": 0.7}]}, "note": local}
    named = named_in_store(json.loads(json.dumps(metrics)), local, "s3://bucket/labeled/")
    assert named["test"]["misclassified"][0]["uri"] == "s3://bucket/labeled/Negative/c.jpg"
    assert named["note"] == "s3://bucket/labeled/"


def test_files_the_suite_leaves_out_are_not_copied_nor_warned_about(tmp_path, caplog):
    """Hidden files and notes in class folders are not the pool: they were warned about as "added after the pool
    was validated" on every retraining."""
    store = LocalStore(tmp_path / "store")
    store.write("labeled/Positive/a.jpg", b"crack")
    store.write("labeled/Positive/.Trash/old.jpg", b"thrown away")
    store.write("labeled/Negative/README.txt", b"notes")
    store.write("labeled/Negative/b.jpg", b"clean")
    judged = {key: hashlib.sha256(store.read(key)).hexdigest() for key in ("labeled/Positive/a.jpg",
                                                                           "labeled/Negative/b.jpg")}  # fmt: skip
    pool = download_labeled(store, "labeled", tmp_path / "pool", ["Negative", "Positive"], judged)
    assert sorted(str(path.relative_to(pool)) for path in pool.rglob("*") if path.is_file()) == [
        "Negative/b.jpg", "Positive/a.jpg"
    ]  # fmt: skip
    assert "after the pool was validated" not in caplog.text


def test_a_profile_of_a_later_validation_is_refused(tmp_path):
    """Another validation of the pool (a rerun, crack-model validate) writes the same profile.csv: training must not
    take what it judged beside this run's quarantine list."""
    import pytest

    from crack_model.core.errors import CrackModelError
    from crack_model.pipelines.pool_copy import judged_photos

    store = LocalStore(tmp_path)
    store.write("validation/labeled/profile.csv", b'"key","sha256"\n"labeled/Positive/a.jpg","' + b"a" * 64 + b'"\n')
    store.write("validation/labeled/outcome.json", json.dumps({"validated_at": "2026-12-07T10:00:00Z"}).encode())
    assert judged_photos(store, "validation/labeled/profile.csv", "2026-12-07T10:00:00Z") == {
        "labeled/Positive/a.jpg": "a" * 64
    }  # fmt: skip
    with pytest.raises(CrackModelError, match=r"validated again \(2026-12-07T10:00:00Z\) since this run validated it"):
        judged_photos(store, "validation/labeled/profile.csv", "2026-12-07T09:00:00Z")
