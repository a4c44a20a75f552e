"""The training-data manifest kept with a registered version: its slices, and which of them a model learnt from."""

from __future__ import annotations

import csv
import io

from crack_model.data.manifest import build_data_manifest, read_data_manifest, slices_sharing_images, training_slices


def test_a_csv_manifest_keeps_its_slices_and_a_blank_one_is_the_class_folder(tmp_path):
    source = tmp_path / "manifest.csv"
    source.write_text(f"key,label,sha256,slice\nx/a.jpg,Positive,{1:064x}, site-b \nx/b.jpg,Negative,{2:064x},\n")
    data, summary = build_data_manifest(source, tmp_path)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(row["uri"], row["slice"]) for row in rows] == [("x/a.jpg", "site-b"), ("x/b.jpg", "(none)")]
    assert summary["per_slice"] == {"(none)": 1, "site-b": 1}
    assert training_slices(read_data_manifest(data, "test")) == {"site-b", "(none)"}


def test_without_a_slice_column_the_slices_are_unknown_and_the_content_digest_unchanged(tmp_path):
    plain, with_slices = tmp_path / "plain.csv", tmp_path / "sliced.csv"
    plain.write_text(f"uri,label,sha256\n/a.jpg,Positive,{1:064x}\n")
    with_slices.write_text(f"uri,label,sha256,slice\n/a.jpg,Positive,{1:064x},metu\n")
    data, summary = build_data_manifest(plain, tmp_path)
    assert summary["per_slice"] is None and b"slice" not in data
    assert training_slices(read_data_manifest(data, "test")) is None
    assert build_data_manifest(with_slices, tmp_path)[1]["content_digest"] == summary["content_digest"]


def test_a_model_learns_from_train_and_validation_rows_not_test_ones():
    rows = [{"uri": "/a", "label": "P", "sha256": "1", "split": "train", "slice": "metu"},
            {"uri": "/b", "label": "P", "sha256": "2", "split": "validation", "slice": "site-c"},
            {"uri": "/c", "label": "P", "sha256": "3", "split": "test", "slice": "site-b"}]  # fmt: skip
    assert training_slices(rows) == {"metu", "site-c"}
    assert training_slices([{**row, "split": ""} for row in rows]) == {"metu", "site-c", "site-b"}  # no split kept
    assert training_slices([]) is None
    assert slices_sharing_images(rows, [{"sha256": "3"}, {"sha256": ""}]) == {"site-b"}
