"""Trends over the nightly runs (crack_model.pipelines.history) on the four nights of ops_store."""

from __future__ import annotations

import json

import pytest

from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.history import history
from crack_model.pipelines.nightly import publish_run_summary
from tests.unit.pipelines.counting_store import CountingStore, OverlapStore
from tests.unit.pipelines.ops_store import CHAMPION, EARLY, SCORED, SECOND


def test_one_point_per_night_oldest_first_with_volume_rates_and_throughput(store):
    """Each nightly run is a point: objects, crack rate, error and quarantine rates, throughput (batch summaries)."""
    data = history(store.uri)
    assert [point["night"] for point in data["points"]] == ["2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24"]
    early, unfinished, scored, last = data["points"]
    assert early["objects"] == 3 and early["cracks"] == 1 and early["crack_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert early["throughput_images_per_second"] == 6.0 and early["error_rate"] == 0.0
    assert [batch["batch_id"] for batch in early["batches"]] == [EARLY]
    assert scored["objects"] == 5 and scored["crack_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert scored["error_rate"] == pytest.approx(1 / 5) and scored["quarantine_rate"] == pytest.approx(1 / 5)
    assert scored["throughput_images_per_second"] == 8.0
    # The scoring of night 22 never finished: its validated upload counts, no rate is made up.
    assert unfinished["objects"] == 1 and unfinished["crack_rate"] is None and unfinished["error_rate"] is None
    assert unfinished["failed_batches"] == ["2026-11-22"]
    # Night 24 validated the blank frames (12 uploads, failed): they count as objects, not as errors. It scored
    # night 23's batch again: that batch counts on night 23 only (its latest figures), named here.
    assert last["objects"] == 12 and last["scored"] == 0 and last["error_rate"] is None
    assert last["scored_again"] == [SCORED] and scored["scored_again"] == []
    assert [batch["batch_id"] for batch in last["batches"]] == ["blank-frames"]
    assert data["runs_total"] == 4 and data["problems"] == []


def test_highest_drift_psi_per_batch_and_per_night(store):
    """The worst PSI of each batch's validation outcome, and of the night; a drifted batch marks the night."""
    points = history(store.uri)["points"]
    assert points[0]["max_psi"] is None  # validated without a drift reference
    assert points[2]["max_psi"] == 0.11 and points[2]["drifted"] is False
    batches = {batch["batch_id"]: batch for batch in points[3]["batches"]}
    assert batches["blank-frames"]["max_psi"] == 1.7 and batches["blank-frames"]["drifted"] is True
    assert {batch["batch_id"]: batch["max_psi"] for batch in points[2]["batches"]} == {SCORED: 0.11}
    assert points[3]["max_psi"] == 1.7 and points[3]["drifted"] is True
    assert history(store.uri)["drift_threshold"] == 0.25


def test_champion_bands_follow_the_audit_log(store):
    """Who was champion each night comes from the audit log: SECOND on night 22, CHAMPION again after the rollback."""
    data = history(store.uri)
    assert [point["champion"] for point in data["points"]] == [CHAMPION, SECOND, CHAMPION, CHAMPION]
    assert data["bands"] == [
        {"version": CHAMPION, "first": 0, "last": 0, "since": "2026-11-01T03:00:00Z"},
        {"version": SECOND, "first": 1, "last": 1, "since": "2026-11-22T01:00:00Z"},
        {"version": CHAMPION, "first": 2, "last": 3, "since": "2026-11-22T09:00:00Z"},
    ]


def test_nights_limits_to_the_latest_runs(store):
    """nights=2 keeps the two latest runs by logical date; out-of-range values are user errors."""
    assert [point["night"] for point in history(store.uri, nights=2)["points"]] == ["2026-11-23", "2026-11-24"]
    for nights in (0, 367):
        with pytest.raises(CrackModelError, match="nights"):
            history(store.uri, nights=nights)


def test_without_registry_the_band_is_the_model_that_scored(tmp_path):
    """No audit log (scored with a model URI, not an alias): the night's champion is the version in its summaries."""
    local = LocalStore(tmp_path)
    summary = {"batch_id": "b1", "model_version": "v-by-uri", "runtime": "keras", "threshold": 0.5, "objects": 2,
               "status_counts": {"ok": 2}, "label_counts": {"Positive": 1, "Negative": 1}, "crack_class": "Positive",
               "cracks": 1, "crack_rate": 0.5, "shards": 1, "scoring_seconds": 1.0,
               "throughput_images_per_second": 2.0, "finished_at": "2026-11-24T02:00:00Z"}  # fmt: skip
    local.write("results/b1/summary.json", json.dumps(summary).encode())
    publish_run_summary(local, "manual__2026-11-24T02:00:00+00:00", [{"batch_id": "b1", "outcome": "passed"}],
                        [summary])  # fmt: skip
    data = history(local.uri)
    assert [point["champion"] for point in data["points"]] == ["v-by-uri"]
    assert data["bands"][0]["version"] == "v-by-uri" and data["bands"][0]["since"] is None


def test_broken_run_summaries_and_missing_batch_summaries_are_problems(tmp_path):
    """A run summary that is no JSON, or names a scored batch without summary.json: noted, the rest still drawn."""
    local = LocalStore(tmp_path)
    local.write("runs/scheduled__2026-11-23T02_00_00.json", b"{not json")
    publish_run_summary(local, "scheduled__2026-11-24T02:00:00+00:00", [], [{"batch_id": "gone", "status_counts": {}}])
    data = history(local.uri)
    assert len(data["points"]) == 1 and data["points"][0]["objects"] == 0
    assert any("scheduled__2026-11-23" in problem for problem in data["problems"])
    assert any("gone" in problem and "summary.json" in problem for problem in data["problems"])


def test_empty_store_has_no_points(tmp_path):
    """A store without runs gives no points and no bands, not an error."""
    data = history(str(tmp_path / "empty"))
    assert data["points"] == [] and data["bands"] == [] and data["problems"] == []


def test_each_document_is_one_read_not_a_check_and_a_read(store):
    """The trends checked each document's existence before reading it: two requests a document on S3, 2,300 for
    the 366 nights a page may show. A missing one is still a gap."""
    counting = CountingStore(store.root)
    data = history(counting)

    assert [call for call, _ in counting.calls if call == "exists"] == []
    reads = [key for call, key in counting.calls if call == "read" and key.startswith(("runs/", "results/"))]
    assert len(reads) == len(set(reads)) and len(data["points"]) == 4


def test_the_nights_are_read_side_by_side(store):
    """Night after night, one request after another: a night holds a batch or two, so the 366 nights a page may show
    were read one document at a time (22 s on moto S3, about a minute on S3)."""
    overlap = OverlapStore(store.root, lambda key: key.startswith("runs/"))

    assert len(history(overlap)["points"]) == 4
    assert overlap.most >= 2
