"""A batch validated again after it was scored: its rows follow the latest validation, not the first night's."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from crack_model.core import layout
from crack_model.core.documents import BatchSummary, QuarantineManifest
from crack_model.core.local_store import LocalStore
from crack_model.core.uploads import read_manifest, write_manifest
from crack_model.pipelines.nightly import find_new_batches
from crack_model.pipelines.overlays import crack_keys, draw_overlays, has_tile_scores
from crack_model.serving.batch import score_batch, score_shard
from crack_model.serving.batch_results import finalize_batch
from crack_model.serving.scorer import Scorer, load_scorer
from crack_model.serving.tile_scores import find_tile_scores, tile_score_files
from tests import imagefiles
from tests.unit.serving.test_batch import _validate_manifest_of, read_predictions, upload_synth


@pytest.fixture()
def model_dir(trained_model):
    return str(trained_model.output_dir)


def _rows(store):
    return {row["key"]: row for row in read_predictions(store)}


def _summary(store):
    return json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))


def test_an_upload_replaced_after_validation_is_scored_when_the_batch_is_validated_again(
    tmp_path, synth_data, model_dir
):
    """Night 1 leaves it ``changed``, which makes the batch new again; night 2 scores the new bytes, and only them."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    swapped = "incoming/b1/positive/synth_00000.jpg"
    replacement = imagefiles.jpeg()
    store.write(swapped, replacement)
    score_batch(str(tmp_path), "b1", model_dir)
    first = _rows(store)
    assert first[swapped]["status"] == "changed"
    assert find_new_batches(store) == ["b1"]  # the night picks it up again

    _validate_manifest_of(store)
    report = score_batch(str(tmp_path), "b1", model_dir)

    assert report.images == 1 and report.skipped_already_done == 3
    rows = _rows(store)
    assert set(rows) == set(first)
    assert rows[swapped]["status"] == "ok" and rows[swapped]["sha256"] == hashlib.sha256(replacement).hexdigest()
    assert all(rows[key]["scored_at"] == first[key]["scored_at"] for key in first if key != swapped)
    assert "changed" not in _summary(store)["status_counts"]
    assert find_new_batches(store) == []
    # the overlay is drawn from the tile scores of the bytes scored last, not the first night's line
    files = tile_score_files(store, layout.parts_key("b1", rows[swapped]["model_version"]) + "/")
    assert find_tile_scores(store, files, swapped).sha256 == rows[swapped]["sha256"]


@pytest.mark.parametrize("same_size", [False, True])
def test_an_upload_scored_before_and_replaced_after_the_next_validation_is_changed_not_its_old_row(
    tmp_path, synth_data, model_dir, same_size
):
    """A batch reopened by another upload: an upload scored the first night and replaced after the second
    validation kept its old ``ok`` row (its bytes were never read again) and the batch closed for good, the new
    photo never scored. Bytes of the same size are told apart by the listing's version."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", model_dir)
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())  # reopens the batch
    _validate_manifest_of(store)
    swapped = "incoming/b1/positive/synth_00000.jpg"
    old = store.read(swapped)
    new = bytes(255 - byte for byte in old) if same_size else imagefiles.jpeg()
    store.write(swapped, new)

    score_batch(str(tmp_path), "b1", model_dir)

    row = _rows(store)[swapped]
    assert row["status"] == "changed" and "changed after validation" in row["error"]
    assert _summary(store)["status_counts"]["changed"] == 1
    assert find_new_batches(store) == ["b1"]  # the next night validates and scores the new bytes


def test_an_upload_replaced_after_its_row_was_written_is_changed_at_the_merge(tmp_path, synth_data, model_dir):
    """Replaced while the other shard still ran: its row (of the old bytes) stood, the batch closed with
    ``_SUCCESS`` and no night ever scored the new photo. The merge's listing shows the new write: ``changed``,
    the batch comes back, and the next night scores the new bytes."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    shards = [layout.Shard(index, 2) for index in range(2)]
    swapped = next(key for key in sorted(_validated_keys(store)) if shards[0].owns(key))
    score_shard(str(tmp_path), "b1", model_dir, shards[0])
    replacement = imagefiles.jpeg()
    store.write(swapped, replacement)  # after its row was written, before the merge
    score_shard(str(tmp_path), "b1", model_dir, shards[1])

    row = _rows(store)[swapped]
    assert row["status"] == "changed" and "written again after validation" in row["error"]
    assert row["label"] == row["crack_probability"] == row["sha256"] == ""
    assert _summary(store)["status_counts"]["changed"] == 1
    assert find_new_batches(store) == ["b1"]

    _validate_manifest_of(store)
    report = score_batch(str(tmp_path), "b1", model_dir, shards=2)

    rows = _rows(store)
    assert report.finalized and rows[swapped]["sha256"] == hashlib.sha256(replacement).hexdigest()
    assert rows[swapped]["status"] == "ok" and "changed" not in _summary(store)["status_counts"]
    assert find_new_batches(store) == []


def test_an_upload_gone_when_scored_reopens_the_batch_and_is_scored_once_it_is_back(tmp_path, synth_data, model_dir):
    """Moved away between validation and scoring and back after the night: ``missing``, saying what to do; the
    batch reopens, and the next night's validation and scoring take it."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    moved = "incoming/b1/negative/synth_00000.jpg"
    photo = store.read(moved)
    store.delete(moved)
    score_batch(str(tmp_path), "b1", model_dir)

    row = _rows(store)[moved]
    assert row["status"] == "missing" and "gone since validation" in row["error"]
    assert "put it back under the same name" in row["error"] and "next nightly run" in row["error"]
    assert find_new_batches(store) == ["b1"]

    store.write(moved, photo)
    _validate_manifest_of(store)
    report = score_batch(str(tmp_path), "b1", model_dir)

    assert report.images == 1 and _rows(store)[moved]["status"] == "ok"
    assert find_new_batches(store) == []


def test_an_upload_gone_when_validated_is_missing_and_scored_once_it_is_back(tmp_path, synth_data, model_dir):
    """Gone when validation read it, back before scoring: its bytes were never validated, so it is ``missing`` (not
    read), the batch reopens, and the next night's validation and scoring take it."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    moved = "incoming/b1/negative/synth_00000.jpg"
    entries = read_manifest(store, "b1")
    entries[moved] = dataclasses.replace(entries[moved], size=None, sha256=None, gone=True)
    write_manifest(store, "b1", entries.values())
    score_batch(str(tmp_path), "b1", model_dir)

    row = _rows(store)[moved]
    assert row["status"] == "missing" and row["sha256"] == "" and "gone when validation read it" in row["error"]
    assert find_new_batches(store) == ["b1"]

    _validate_manifest_of(store)
    report = score_batch(str(tmp_path), "b1", model_dir)

    assert report.images == 1 and _rows(store)[moved]["status"] == "ok"
    assert find_new_batches(store) == []


def test_an_upload_back_before_the_merge_after_its_missing_row_is_changed_with_a_reason_that_fits(
    tmp_path, synth_data, model_dir
):
    """Gone when its shard read it, written again before the merge: ``changed``, whose reason spoke of "its score of
    the earlier bytes" withheld, of a photo never scored. It says it was not scored, and that the next night is."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    moved = "incoming/b1/negative/synth_00000.jpg"
    photo = store.read(moved)
    store.delete(moved)
    report = score_shard(str(tmp_path), "b1", model_dir, finalize=False)
    store.write(moved, photo)
    finalize_batch(store, "b1", report.model_version, 1)

    row = _rows(store)[moved]
    assert row["status"] == "changed" and "its row was missing" in row["error"], row["error"]
    assert "score of the earlier bytes" not in row["error"] and "next nightly run" in row["error"]


def test_an_upload_deleted_for_good_reopens_the_batch_once_not_every_night(tmp_path, synth_data, model_dir):
    """The validation of the reopened batch no longer lists it: its row goes, and the batch is settled."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    deleted = "incoming/b1/negative/synth_00000.jpg"
    store.delete(deleted)
    score_batch(str(tmp_path), "b1", model_dir)
    assert find_new_batches(store) == ["b1"]

    _validate_manifest_of(store)
    report = score_batch(str(tmp_path), "b1", model_dir)

    assert report.images == 0 and deleted not in _rows(store)
    assert "missing" not in _summary(store)["status_counts"]
    assert find_new_batches(store) == []


def test_a_batch_scored_again_whole_by_a_promoted_model_records_what_it_replaced(tmp_path, synth_data, model_dir):
    """A late upload reopened the batch after a promotion, and every row of it was silently replaced by the new
    version's: the summary now names the version replaced, how many rows were scored again and how many flipped."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())  # after validation: reopens the batch
    champion = load_scorer(model_dir)
    score_batch(str(tmp_path), "b1", champion)
    before = _rows(store)
    # No upload a crack any more: the labels of those the champion called cracks flip.
    promoted = Scorer(dataclasses.replace(champion.card, version="v2", threshold=1.01), champion.runtime,
                      champion.model_dir)  # fmt: skip

    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", promoted)
    finalize_batch(store, "b1", "v2", 1)  # a retried merge keeps the record

    summary = _summary(store)
    flipped = sum(1 for row in before.values() if row["label"] == champion.card.crack_class)
    assert summary["model_version"] == "v2" and summary["rescored_from"] == champion.version
    assert summary["rows_rescored"] == len(before) and summary["labels_flipped"] == flipped > 0
    store.write("incoming/b1/later.jpg", imagefiles.jpeg())  # a later night with the same version replaces nothing
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", promoted)
    assert _summary(store)["rescored_from"] is None and _summary(store)["labels_flipped"] == 0


def test_a_batch_scored_again_whole_at_another_tile_budget_records_what_it_replaced(tmp_path, synth_data, model_dir):
    """A late upload reopened the batch after the night's tile budget changed (Variable crack_max_tiles): its shard
    was started over, every row scored again at the new budget; the summary names the budget replaced."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())  # after validation: reopens the batch
    champion = load_scorer(model_dir)
    score_batch(str(tmp_path), "b1", champion, max_tiles=512)
    before = _rows(store)

    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", champion, max_tiles=64)
    finalize_batch(store, "b1", champion.version, 1)  # a retried merge keeps the record

    summary, after = _summary(store), _rows(store)
    flipped = sum(1 for key, row in before.items() if row["label"] != after[key]["label"])
    assert summary["max_tiles"] == 64 and summary["rescored_from_max_tiles"] == 512
    assert summary["rescored_from"] == summary["model_version"] == champion.version
    assert summary["rows_rescored"] == len(before) and summary["labels_flipped"] == flipped
    store.write("incoming/b1/later.jpg", imagefiles.jpeg())  # a later night at the same budget replaces nothing
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", champion, max_tiles=64)
    assert _summary(store)["rescored_from"] is None and _summary(store)["rescored_from_max_tiles"] is None


def _validated_keys(store):
    return set(read_manifest(store, "b1") or {})


def test_a_batch_brought_back_by_a_change_that_undid_itself_settles_and_stops_coming_back(
    tmp_path, synth_data, model_dir
):
    """Bytes replaced and put back, a late upload deleted: the manifest reads as before, yet the night that
    brings the batch back scores the changed upload and recounts, so it is not brought back every night
    (also when the shard's marker is from before it counted unsettled rows)."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    swapped = "incoming/b1/positive/synth_00000.jpg"
    validated = store.read(swapped)
    store.write(swapped, imagefiles.jpeg())
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())
    score_batch(str(tmp_path), "b1", model_dir)
    assert _rows(store)[swapped]["status"] == "changed" and _summary(store)["late_objects"] == 1
    [done] = [info.key for info in store.list("results/b1/_parts/") if info.key.endswith("/_DONE")]
    marker = json.loads(store.read(done))
    assert marker.pop("unsettled") == 1
    store.write(done, json.dumps(marker).encode())  # as a marker written before the count: settled is not known
    store.write(swapped, validated)  # the validated bytes are back
    store.delete("incoming/b1/late.jpg")
    assert find_new_batches(store) == ["b1"]

    _validate_manifest_of(store)  # the same manifest as the first night's
    report = score_batch(str(tmp_path), "b1", model_dir)

    assert not report.already_complete and report.images == 1
    assert _rows(store)[swapped]["status"] == "ok"
    assert _summary(store)["late_objects"] == 0 and "changed" not in _summary(store)["status_counts"]
    assert find_new_batches(store) == []


def test_rows_follow_the_latest_validation_held_back_or_deleted(tmp_path, synth_data, model_dir):
    """Scored ok, then replaced by junk that validation holds back: the quarantine row wins over the old score.
    An upload deleted before the batch is validated again has no row any more."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", model_dir)
    held, deleted = "incoming/b1/negative/synth_00000.jpg", "incoming/b1/negative/synth_00001.jpg"
    assert _rows(store)[held]["status"] == "ok"
    kept = "incoming/b1/positive/synth_00000.jpg"
    for key in (held, deleted, kept):  # as the ops view stores the overlays it draws
        store.write(layout.overlay_key("b1", key), b"png")

    store.write(held, b"<html>not a photo</html>")
    store.delete(deleted)
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())  # what brings the batch back on a real night
    _validate_manifest_of(store)
    QuarantineManifest("b1", "passed_with_quarantine", "2026-11-25T02:00:00Z",
                       [{"key": held, "reasons": ["decodes: not an image"]}]).write(
        store, "quarantine/b1/quarantine.json")  # fmt: skip
    score_batch(str(tmp_path), "b1", model_dir)

    rows = _rows(store)
    assert deleted not in rows and "incoming/b1/late.jpg" in rows
    assert rows[held]["status"] == "quarantined" and rows[held]["error"] == "decodes: not an image"
    assert sum(_summary(store)["status_counts"].values()) == len(rows) == 4
    # no crack picture is left beside a row that is no score
    overlays = {info.key for info in store.list(layout.results_key("b1", layout.OVERLAYS) + "/")}
    assert overlays == {layout.overlay_key("b1", kept)}


def test_overlays_are_drawn_from_the_shards_the_summary_was_merged_from(tmp_path, synth_data, model_dir):
    """Scored in 2 shards, replaced, validated again and scored in 1: the old layout's tile lines (of other bytes)
    must not be the ones drawn, whatever their folders' names."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", model_dir, shards=2)
    swapped = "incoming/b1/positive/synth_00000.jpg"
    store.write(swapped, imagefiles.jpeg())
    _validate_manifest_of(store)
    score_batch(str(tmp_path), "b1", model_dir, shards=1)

    summary = BatchSummary.read(store, layout.results_key("b1", layout.SUMMARY))
    cracks = crack_keys(store, "b1", summary)
    assert summary.shards == 1 and swapped in cracks  # the synthetic model calls it a crack: its overlay is drawn
    report = draw_overlays(store, "b1")
    assert (report.drawn, report.failed) == (len(cracks), 0)

    # Only the old layout's tile scores left: the ops view offers no overlay it would draw from them.
    assert has_tile_scores(store, "b1")
    merged = layout.parts_key("b1", summary.model_version, layout.Shard(0, 1).name) + "/"
    for info in list(store.list(merged)):
        if info.key.endswith(layout.TILE_SCORES_SUFFIX):
            store.delete(info.key)
    assert tile_score_files(store, layout.parts_key("b1", summary.model_version) + "/")  # the 2-shard layout's
    assert not has_tile_scores(store, "b1")
