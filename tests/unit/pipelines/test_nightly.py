"""The nightly shard planner (crack_model.pipelines.nightly.plan_shards) on a real local store."""

from __future__ import annotations

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.nightly import plan_shards


def uploads(store: LocalStore, counts: dict[str, int]) -> LocalStore:
    """Write ``count`` small objects under incoming/<batch_id>/ for each batch, plus a marker that is not an upload."""
    for batch_id, count in counts.items():
        for index in range(count):
            store.write(f"incoming/{batch_id}/{index:04d}.jpg", b"jpeg")
        store.write(f"incoming/{batch_id}/_READY", b"")
    return store


def test_each_batch_gets_enough_shards_and_markers_are_not_objects(tmp_path):
    """5 uploads at 2 per shard -> 3 shards; 1 upload -> 1 shard; the _READY marker is not counted."""
    store = uploads(LocalStore(tmp_path), {"2026-11-24": 5, "2026-11-25": 1})

    plan = plan_shards(store, ["2026-11-24", "2026-11-25"], objects_per_shard=2)

    assert plan == [
        {"batch_id": "2026-11-24", "shard": "0/3", "objects": 5},
        {"batch_id": "2026-11-24", "shard": "1/3", "objects": 5},
        {"batch_id": "2026-11-24", "shard": "2/3", "objects": 5},
        {"batch_id": "2026-11-25", "shard": "0/1", "objects": 1},
    ]


def test_shards_per_batch_are_capped(tmp_path):
    """A batch far larger than objects_per_shard still gets at most max_shards_per_batch shards (URI accepted)."""
    uploads(LocalStore(tmp_path), {"big": 40})

    plan = plan_shards(str(tmp_path), ["big"], objects_per_shard=1, max_shards_per_batch=4)

    assert [item["shard"] for item in plan] == ["0/4", "1/4", "2/4", "3/4"]


def test_the_total_stays_bounded_by_halving_every_batch(tmp_path):
    """Two batches wanting 8 shards each under a total of 8: each is halved to 4 (the grid view stays usable)."""
    store = uploads(LocalStore(tmp_path), {"a": 8, "b": 8})

    plan = plan_shards(store, ["a", "b"], objects_per_shard=1, max_shards_per_batch=8, max_total_shards=8)

    assert len(plan) == 8
    assert {item["shard"] for item in plan} == {"0/4", "1/4", "2/4", "3/4"}


def test_more_batches_than_the_total_allows_is_an_error_that_says_what_to_do(tmp_path):
    """Three one-shard batches under a total of 2 cannot be planned: the error names the limit to raise."""
    store = uploads(LocalStore(tmp_path), {"a": 1, "b": 1, "c": 1})

    with pytest.raises(CrackModelError, match="exceed 2 work items: raise the limit"):
        plan_shards(store, ["a", "b", "c"], max_total_shards=2)


def test_an_empty_batch_still_gets_one_shard(tmp_path):
    """A batch folder holding only a marker plans one (empty) shard, so the run still finalizes it."""
    store = uploads(LocalStore(tmp_path), {"empty": 0})

    assert plan_shards(store, ["empty"]) == [{"batch_id": "empty", "shard": "0/1", "objects": 0}]
