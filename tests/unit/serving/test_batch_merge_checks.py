"""The merge of a batch's shards refuses what would hide a lost row: a part lost by a killed restart, shards of
two runtimes or of an earlier validation; and it counts an upload no shard saw."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from crack_model.core import layout
from crack_model.core.documents import ShardStats
from crack_model.core.local_store import LocalStore
from crack_model.serving.batch import score_shard
from crack_model.serving.batch_results import ShardsIncompleteError, finalize_batch, shard_parts_prefix
from crack_model.serving.scorer import load_scorer
from tests import imagefiles
from tests.unit.serving.test_batch import _validate_manifest_of, read_predictions, upload_synth


@pytest.fixture()
def model_dir(trained_model):
    return str(trained_model.output_dir)


def parts_of(store: LocalStore, prefix: str) -> list[str]:
    return sorted(info.key for info in store.list(prefix + "/") if info.key.endswith(".csv"))


def test_a_restart_killed_while_deleting_old_parts_loses_no_row(tmp_path, synth_data, model_dir):
    """A shard started over (--force, or another runtime) and killed after deleting its first parts: the next run
    numbered its parts from their count and wrote over the survivors, and the batch completed without 74 rows."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=6)
    _validate_manifest_of(store)
    version = load_scorer(model_dir).version
    prefix = shard_parts_prefix("b1", version, layout.Shard(0, 1))
    score_shard(store.uri, "b1", model_dir, part_rows=2, finalize=False)
    parts = parts_of(store, prefix)
    assert len(parts) == 6
    store.delete(f"{prefix}/{layout.DONE}")  # what a killed restart deletes first, then parts in name order
    for key in parts[:3]:
        for suffix in (".csv", ".json", layout.TILE_SCORES_SUFFIX):
            store.delete(key.removesuffix(".csv") + suffix)

    report = score_shard(store.uri, "b1", model_dir, part_rows=2)

    assert report.finalized and len(read_predictions(store)) == 12
    assert re.search(r"/part-000008-[0-9a-f]{8}\.csv$", parts_of(store, prefix)[-1])  # after the survivors


def test_a_lost_part_is_refused_by_the_merge_and_scored_again_by_the_shard(tmp_path, synth_data, model_dir):
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    _validate_manifest_of(store)
    version = load_scorer(model_dir).version
    score_shard(store.uri, "b1", model_dir, part_rows=2, finalize=False)
    store.delete(parts_of(store, shard_parts_prefix("b1", version, layout.Shard(0, 1)))[0])
    with pytest.raises(ShardsIncompleteError, match=r"2 validated upload\(s\) of batch b1 have no row .*of "
                       r"shard-0000-of-0001\): score their shards again") as refused:  # fmt: skip
        finalize_batch(store, "b1", version, 1)
    assert refused.value.blocked and not store.exists(layout.results_key("b1", layout.SUCCESS))
    # Scoring the shard again (a plain retry, as the next night does) scores the two; it used to trust its _DONE.
    again = score_shard(store.uri, "b1", model_dir, part_rows=2)
    assert again.images == 2 and again.finalized and len(read_predictions(store)) == 6


def test_shards_of_two_runtimes_are_not_merged(tmp_path, synth_data, model_dir):
    """Separate runs by hand, one shard on LiteRT fp32: the summary named one runtime for rows of two."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    version = load_scorer(model_dir).version
    for index in range(2):
        score_shard(store.uri, "b1", model_dir, layout.Shard(index, 2), finalize=False)
    done_key = f"{shard_parts_prefix('b1', version, layout.Shard(1, 2))}/{layout.DONE}"
    stats = json.loads(store.read(done_key))
    store.write(done_key, json.dumps({**stats, "runtime": "litert-fp32-elsewhere"}).encode())
    assert ShardStats.read(store, done_key).runtime == "litert-fp32-elsewhere"
    with pytest.raises(ShardsIncompleteError, match=r"scored with different runtimes \(shard-0000-of-0002: .*; "
                       r"shard-0001-of-0002: litert-fp32-elsewhere\): score them with one"):  # fmt: skip
        finalize_batch(store, "b1", version, 2)


def test_a_shard_scored_before_the_batch_was_validated_again_says_to_score_it_again(tmp_path, synth_data, model_dir):
    """Every run printed "completes when all shards are done", and no run would ever complete it."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    _validate_manifest_of(store)
    score_shard(store.uri, "b1", model_dir, layout.Shard(0, 2))
    store.write("incoming/b1/late.jpg", imagefiles.jpeg())
    _validate_manifest_of(store)
    report = score_shard(store.uri, "b1", model_dir, layout.Shard(1, 2))
    assert not report.finalized and report.blocked
    assert "shard-0000-of-0002 of batch b1 was scored against an earlier validation of the batch: score it again" in (
        report.waiting_for
    )  # fmt: skip


def test_an_upload_no_shard_of_an_unvalidated_batch_saw_is_counted_late(tmp_path, synth_data, model_dir):
    """Scored without validation, an upload added between two shards had no row and was counted nowhere."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    names = (f"late-{number}.jpg" for number in range(50))
    owner = next(name for name in names if layout.Shard(0, 2).owns(f"incoming/b1/{name}"))  # shard 0 has run
    score_shard(store.uri, "b1", model_dir, layout.Shard(0, 2))
    store.write(f"incoming/b1/{owner}", imagefiles.jpeg())
    assert score_shard(store.uri, "b1", model_dir, layout.Shard(1, 2)).finalized
    summary = json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))
    assert summary["late_objects"] == 1 and len(read_predictions(store)) == 6


def test_keys_a_caller_excluded_do_not_block_the_merge_nor_count_as_late(tmp_path, synth_data, model_dir):
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    _validate_manifest_of(store)
    left_out = "incoming/b1/positive/" + sorted(path.name for path in (synth_data / "Positive").glob("*.jpg"))[0]
    report = score_shard(store.uri, "b1", model_dir, exclude=[left_out])
    assert report.finalized and left_out not in {row["key"] for row in read_predictions(store)}
    assert json.loads(store.read(layout.results_key("b1", layout.SUMMARY)))["late_objects"] == 0


class _StartedBeforeTheOtherWrote(LocalStore):
    """A try that listed the shard's parts before another try of it wrote any (a zombie and its retry)."""

    def __init__(self, root, hidden: str) -> None:
        super().__init__(root)
        self.hidden, self.looked = hidden, False

    def list(self, prefix=""):
        listed = list(super().list(prefix))
        if prefix.startswith(self.hidden) and not self.looked:
            self.looked = True
            return [info for info in listed if not info.key.endswith(".csv")]
        return listed


def test_two_tries_of_one_shard_at_once_keep_each_others_parts(tmp_path, synth_data, model_dir):
    """A worker Airflow gave up on, still running, and its retry wrote the same part names: one try's rows
    replaced the other's, and its tile scores could sit beside the other's rows."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    _validate_manifest_of(store)
    prefix = shard_parts_prefix("b1", load_scorer(model_dir).version, layout.Shard(0, 1))
    score_shard(store.uri, "b1", model_dir, part_rows=2, finalize=False)
    first = {key: store.read(key) for key in parts_of(store, prefix)}

    report = score_shard(_StartedBeforeTheOtherWrote(tmp_path, prefix), "b1", model_dir, part_rows=2)

    assert report.images == 6 and report.finalized
    assert all(store.read(key) == rows for key, rows in first.items())  # the first try's parts, untouched
    assert len(parts_of(store, prefix)) == 2 * len(first)
    assert sorted(row["key"] for row in read_predictions(store)) == sorted(
        {row["key"] for rows in first.values() for row in csv.DictReader(io.StringIO(rows.decode()))}
    )


def test_a_shard_resumed_with_another_tile_budget_is_scored_again_within_it(tmp_path, synth_data, model_dir):
    """A photo's score depends on the scale it was tiled at: a shard scored within 512 tiles and run again within 64
    is scored again whole, and the budget is kept in its tile scores, its marker and the batch's summary."""
    from crack_model.core.documents import BatchSummary
    from crack_model.serving.tile_scores import find_tile_scores, tile_score_files
    from tests.unit.serving.test_batch import large_photo

    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=2)
    store.write("incoming/b1/drone.jpg", large_photo(size=(2400, 1800)))  # 154 tiles
    _validate_manifest_of(store)
    version = load_scorer(model_dir).version
    prefix = shard_parts_prefix("b1", version, layout.Shard(0, 1))
    first = score_shard(store.uri, "b1", model_dir, finalize=False)
    assert first.images == 5 and ShardStats.read(store, f"{prefix}/{layout.DONE}").max_tiles == 512

    again = score_shard(store.uri, "b1", model_dir, max_tiles=64)

    assert again.images == 5 and again.skipped_already_done == 0 and again.finalized
    drone = next(row for row in read_predictions(store) if row["key"] == "incoming/b1/drone.jpg")
    assert int(drone["tile_count"]) <= 64 and "to stay within 64 tiles" in drone["note"]
    scores = find_tile_scores(store, tile_score_files(store, prefix + "/"), "incoming/b1/drone.jpg")
    assert scores is not None and scores.max_tiles == 64 and len(scores.boxes) == int(drone["tile_count"])
    assert BatchSummary.read(store, layout.results_key("b1", layout.SUMMARY)).max_tiles == 64
    assert score_shard(store.uri, "b1", model_dir, max_tiles=64).already_complete


def test_shards_scored_within_two_tile_budgets_are_not_merged(tmp_path, synth_data, model_dir):
    """Shards run by hand with different --max-tiles: one batch's photos tiled at two scales are refused."""
    store = LocalStore(tmp_path)
    upload_synth(store, synth_data, count=3)
    version = load_scorer(model_dir).version
    score_shard(store.uri, "b1", model_dir, layout.Shard(0, 2), finalize=False)
    report = score_shard(store.uri, "b1", model_dir, layout.Shard(1, 2), max_tiles=1024)
    assert not report.finalized and report.blocked
    assert re.search(r"different tile budgets \(shard-0000-of-0002: 512; shard-0001-of-0002: 1024\): score them "
                     r"with one --max-tiles", report.waiting_for)  # fmt: skip
    assert not store.exists(layout.results_key("b1", layout.SUCCESS))
    with pytest.raises(ShardsIncompleteError, match="different tile budgets"):
        finalize_batch(store, "b1", version, 2)


@pytest.mark.parametrize("budget", [0, 63, 2049])
def test_a_tile_budget_outside_the_range_is_refused_before_anything_is_touched(tmp_path, budget):
    """Refused before the store is read, the model loaded or a shard's parts started over."""
    from crack_model.core.errors import CrackModelError

    with pytest.raises(CrackModelError, match=f"from 64 to 2048 tiles per photo, got {budget}"):
        score_shard(str(tmp_path / "no-store"), "b1", str(tmp_path / "no-model"), max_tiles=budget)
    assert not (tmp_path / "no-store").exists()
