"""What finding a night's batches costs on a store of many nights: every batch ever uploaded is looked at, each poke."""

from __future__ import annotations

import pytest

from crack_model.cli.score_commands import refuse_an_unreleased_failed_batch
from crack_model.core import layout
from crack_model.core.documents import BatchSummary, RunSummary
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.alerts import run_alerts
from crack_model.pipelines.batch_states import new_batches
from crack_model.pipelines.nightly import find_new_batches
from tests.unit.pipelines.counting_store import CountingStore, OverlapStore

DONE = [f"2026-01-{day:02d}" for day in range(1, 11)]


def summary(batch_id: str) -> BatchSummary:
    return BatchSummary(batch_id=batch_id, model_version="v1", runtime="keras", threshold=0.5, objects=1,
                        status_counts={"ok": 1}, label_counts={}, crack_class="Positive", cracks=0, crack_rate=0.0,
                        shards=1, scoring_seconds=0.1, throughput_images_per_second=10.0,
                        finished_at="2026-01-01T02:00:00Z")  # fmt: skip


def a_year(store: LocalStore) -> LocalStore:
    """Ten complete batches (the history) and one new one."""
    for batch_id in [*DONE, "2026-02-01"]:
        store.write(f"incoming/{batch_id}/0.jpg", b"jpeg")
    for batch_id in DONE:
        summary(batch_id).write(store, layout.results_key(batch_id, layout.SUCCESS))
    return store


def test_each_batch_state_is_one_read_not_a_head_and_a_read(tmp_path):
    """The sensor read every batch's _SUCCESS with a HEAD and then a GET: 800 requests a poke on a store of 400
    batches, every ten minutes, and as many again for the night's alerts. One GET tells both."""
    store = a_year(CountingStore(tmp_path))

    assert find_new_batches(store) == ["2026-02-01"]
    for batch_id in [*DONE, "2026-02-01"]:
        assert store.of(layout.results_key(batch_id, layout.SUCCESS)) == ["read"], batch_id
    store.calls.clear()
    run_alerts(store, {"validations": [], "batches_scored": []}, [])
    assert store.of(layout.results_key(DONE[0], layout.SUCCESS)) == ["read"]


def test_a_folder_where_the_marker_goes_is_still_no_marker(tmp_path):
    """Read without asking first: a folder named _SUCCESS is no marker, as when its existence was asked."""
    store = a_year(LocalStore(tmp_path))
    store.write(layout.results_key("2026-02-01", layout.SUCCESS, "x"), b"")

    assert new_batches(store, ["2026-02-01", DONE[0]]) == (["2026-02-01"], [])


def test_batch_states_are_read_side_by_side(tmp_path):
    """One request after another, a poke of the sensor took 12 s on a store of 400 batches, growing each night."""
    store = a_year(OverlapStore(tmp_path, lambda key: key.endswith(layout.SUCCESS)))

    assert new_batches(store, DONE[:2]) == ([], [])
    assert store.most >= 2


def test_a_stored_document_is_one_read(tmp_path):
    """Scoring a failed batch by hand looks for its release in every run summary: a HEAD and a GET each, 800
    requests for 400 nights on S3. A missing document is still None."""
    store = CountingStore(tmp_path)
    for night in range(1, 4):
        RunSummary(run_id=f"scheduled__2026-01-0{night}", finished_at=f"2026-01-0{night}T03:00:00Z",
                   batches_validated=1, batches_failed_validation=["b"], batches_with_quarantine=[], batches_scored=[],
                   objects_scored=0, cracks=0, validations=[]).write(store, f"runs/{night}.json")  # fmt: skip
    store.write("validation/b/outcome.json", b'{"outcome": "failed", "validated_at": "2026-01-01T02:00:00Z"}')

    with pytest.raises(CrackModelError, match="no operator released it"):
        refuse_an_unreleased_failed_batch(store, "b")
    assert [store.of(f"runs/{night}.json") for night in range(1, 4)] == [["read"]] * 3
    assert BatchSummary.read(store, "results/b/summary.json") is None
