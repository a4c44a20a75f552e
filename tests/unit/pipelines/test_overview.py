"""The ops overview (crack_model.pipelines.overview) on a store the workflow's writers filled (see ops_store)."""

from __future__ import annotations

import pytest

from crack_model.core.documents import RunSummary
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines import ops_files
from crack_model.pipelines import overview as ops
from tests.unit.pipelines.ops_store import (
    CHAMPION,
    EARLY,
    EXACT,
    REJECTED,
    ROLLBACK_ACTOR,
    ROLLBACK_REASON,
    SCORED,
    SECOND,
)

# ----------------------------------------------------------------------------- crack_model.pipelines.overview


def test_champion_shows_holdout_metrics_with_both_intervals_and_who_made_it_champion(store):
    """The champion card: holdout figures with bootstrap and exact intervals, runtimes, the rollback behind it."""
    champion = ops.overview(store.uri)["champion"]
    assert champion["version"] == CHAMPION
    assert champion["metrics"]["crack_recall"] == {
        "value": 0.99, "low": 0.975, "high": 1.0, "exact_low": EXACT["crack_recall"][0],
        "exact_high": EXACT["crack_recall"][1],
    }  # fmt: skip
    assert champion["metrics"]["crack_precision"]["exact_low"] == EXACT["crack_precision"][0]
    assert champion["metrics"]["accuracy"]["value"] == 0.98
    assert champion["confidence"] == 0.9
    assert champion["missed_cracks"] == 2
    assert "holdout, 400 images" in champion["metrics_source"]
    assert champion["approved_runtimes"] == ["litert-int8", "keras"]
    assert champion["promoted_by"] == ROLLBACK_ACTOR and champion["promotion_event"] == "rollback"
    assert champion["promoted_at"] == "2026-11-22T09:00:00Z" and champion["promotion_reason"] == ROLLBACK_REASON
    assert champion["previous_champion"] == SECOND
    assert champion["threshold"] == 0.42
    assert champion["links"]["gate_report"] == f"models/crack/versions/{CHAMPION}/gate_report.html"


def test_candidates_are_newest_first_with_gate_decisions_and_failed_checks(store):
    """Candidates: newest first; the rejected one with its failed checks and the champion it was compared with."""
    data = ops.overview(store.uri)
    assert [c["version"] for c in data["candidates"]] == [SECOND, REJECTED, CHAMPION]
    second, rejected, champion = data["candidates"]
    assert second["aliases"] == [] and second["gate_decision"] == "promote"
    assert rejected["gate_decision"] == "reject"
    assert rejected["failed_checks"] == ["floor:crack_recall"]
    assert rejected["compared_with"] == CHAMPION
    assert champion["aliases"] == ["champion"] and champion["gate_decision"] == "promote"
    assert data["challenger"] is None and data["versions_total"] == 3
    assert ops.overview(store.uri, limit=1)["candidates"][0]["version"] == SECOND


def test_batches_in_every_state(store):
    """Scored, failed validation, validated, half scored and new batches each get a row; training reports do not."""
    data = ops.overview(store.uri)
    batches = {batch["batch_id"]: batch for batch in data["batches"]}
    assert set(batches) == {SCORED, "blank-frames", "2026-11-23", "2026-11-22", "2026-11-25", EARLY}
    assert data["batches_total"] == 6
    assert {batch_id: batch["state"] for batch_id, batch in batches.items()} == {
        SCORED: "scored",
        EARLY: "scored",
        "blank-frames": "failed validation",
        "2026-11-23": "validated",
        "2026-11-22": "scoring",
        "2026-11-25": "waiting",
    }
    assert batches["2026-11-25"]["objects"] == 3  # counted from incoming/, the _READY marker left out
    assert batches["2026-11-25"]["validation"] is None and batches["2026-11-25"]["outcome"] is None
    assert data["problems"] == []


def test_scored_batch_has_counts_rate_drift_throughput_and_links(store):
    """A scored batch: status counts, crack count and rate, max PSI, throughput and links to its files."""
    batch = next(b for b in ops.overview(store.uri, overlays=2)["batches"] if b["batch_id"] == SCORED)
    assert batch["outcome"] == "passed_with_quarantine"
    assert batch["objects"] == 5 and batch["quarantined"] == 1
    assert batch["status_counts"] == {"error": 1, "ok": 3, "quarantined": 1}
    assert batch["cracks"] == 2 and batch["crack_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert batch["drift"]["max_psi"] == 0.11 and batch["drift"]["drifted"] is False
    assert batch["throughput_images_per_second"] == 8.0
    assert batch["model_version"] == CHAMPION
    assert batch["links"]["predictions"] == f"results/{SCORED}/predictions.csv"
    assert batch["links"]["validation_report"] == f"validation/{SCORED}/report.html"
    assert batch["links"]["quarantine"] == f"quarantine/{SCORED}/quarantine.json"
    assert batch["links"]["overlays"] == [f"results/{SCORED}/overlays/site a/photo-0.jpg.png",
                                          f"results/{SCORED}/overlays/site a/photo-1.jpg.png"]  # fmt: skip
    assert all(ops_files.viewable(key) for key in (batch["links"]["predictions"], *batch["links"]["overlays"]))


def test_failed_batch_has_reasons_and_drift_but_no_results(store):
    """A batch that failed validation: outcome failed, its reasons, drifted with the worst PSI, nothing scored."""
    batch = next(b for b in ops.overview(store.uri)["batches"] if b["batch_id"] == "blank-frames")
    assert batch["outcome"] == "failed"
    assert batch["validation"]["reasons"] == ["contrast_in_bounds: 12 of 12 fail"]
    expected = {"checked": True, "drifted": True, "max_psi": 1.7, "drifted_features": ["blur", "contrast"],
                "threshold": 0.25, "note": "drifted"}  # fmt: skip
    assert batch["drift"] == expected
    assert batch["crack_rate"] is None and batch["links"]["predictions"] is None and batch["links"]["overlays"] == []


def test_nightly_runs_newest_first(store):
    """runs/*.json: the last runs, newest first, limited."""
    runs = ops.overview(store.uri)["runs"]
    assert [run["run_id"] for run in runs] == [
        "scheduled__2026-11-24T02:00:00+00:00",
        "scheduled__2026-11-23T02:00:00+00:00",
        "scheduled__2026-11-22T02:00:00+00:00",
        "scheduled__2026-11-21T02:00:00+00:00",
    ]
    assert runs[0]["batches_failed_validation"] == ["blank-frames"] and runs[0]["cracks"] == 2
    assert len(ops.overview(store.uri, runs=1)["runs"]) == 1


def test_empty_store_and_store_without_registry(tmp_path):
    """A fresh store (no registry, no batches, no runs) gives an empty overview, not an error."""
    data = ops.overview(str(tmp_path / "nothing-here"))
    assert data["champion"] is None and data["candidates"] == [] and data["batches"] == [] and data["runs"] == []
    assert data["problems"] == []
    LocalStore(tmp_path / "uploads-only").write("incoming/b1/x.jpg", b"x")
    only = ops.overview(str(tmp_path / "uploads-only"))
    assert [(b["batch_id"], b["state"], b["objects"]) for b in only["batches"]] == [("b1", "waiting", 1)]


def test_broken_documents_are_problems_not_errors(tmp_path):
    """An unreadable outcome.json or aliases.json is listed under problems; the rest still shows."""
    store = LocalStore(tmp_path)
    store.write("validation/b1/outcome.json", b"{not json")
    store.write("incoming/b1/x.jpg", b"x")
    store.write("models/crack/aliases.json", b"[]")
    data = ops.overview(store.uri)
    assert [b["batch_id"] for b in data["batches"]] == ["b1"]
    assert data["batches"][0]["validation"] is None
    assert any("validation/b1/outcome.json" in problem for problem in data["problems"])
    assert any("aliases" in problem for problem in data["problems"])


def test_overview_rejects_nonsense_limits(tmp_path):
    """limit below 1 is a user error with a message."""
    with pytest.raises(CrackModelError, match="limit"):
        ops.overview(str(tmp_path), limit=0)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("results/b1/predictions.csv", ("text/csv; charset=utf-8", True)),
        ("results/b1/overlays/a b.jpg.png", ("image/png", True)),
        ("validation/b1/report.html", ("text/html; charset=utf-8", True)),
        ("validation/b1/outcome.json", ("application/json", True)),
        ("quarantine/b1/site/broken.jpg", ("image/jpeg", True)),
        ("quarantine/b1/evil.html", ("application/octet-stream", False)),  # uploaded HTML is never rendered
        ("results/b1/nested/page.html", ("application/octet-stream", False)),
        ("models/crack/versions/v1/gate_report.html", ("text/html; charset=utf-8", True)),
        ("models/crack/versions/v1/gate_report.json", None),
        ("models/crack/versions/v1/model.keras", None),
        ("models/crack/aliases.json", None),
        ("incoming/b1/x.jpg", None),
        ("labeled/Positive/x.jpg", None),
        ("runs/x.json", None),
        ("results", None),
        ("results/../models/crack/aliases.json", None),
        ("/etc/passwd", None),
        ("results//x.csv", None),
        ("", None),
    ],
)
def test_viewable_keys(key, expected):
    """Only reports, results and quarantine copies are served; HTML inline only for the workflow's reports."""
    assert ops_files.viewable(key) == expected


def test_iter_object_streams_in_chunks(tmp_path):
    """A local object comes back in chunks of the requested size; a missing one is a CrackModelError."""
    store = LocalStore(tmp_path)
    store.write("results/b1/predictions.csv", b"x" * 2500)
    assert [len(chunk) for chunk in ops_files.iter_object(store, "results/b1/predictions.csv", chunk_size=1000)] == [
        1000,
        1000,
        500,
    ]
    with pytest.raises(CrackModelError, match="not found"):
        list(ops_files.iter_object(store, "results/b1/missing.csv"))


def test_the_batches_of_the_last_runs_are_shown_whatever_their_names(tmp_path):
    """25 batches named site-7_run-N rank above date ids by name: the batch the last night failed is still shown,
    and run-10 comes after run-9 (digits compared as numbers)."""
    store = LocalStore(tmp_path)
    for number in range(1, 26):
        store.write(f"incoming/site-7_run-{number}/a.jpg", b"x")
    store.write("incoming/2026-12-07/a.jpg", b"x")
    night = RunSummary("scheduled__2026-12-07T02:00:00+00:00", "2026-12-07T02:30:00Z", 1, ["2026-12-07"], [], [],
                       0, 0, [{"batch_id": "2026-12-07", "outcome": "failed"}])  # fmt: skip
    night.write(store, "runs/scheduled__2026-12-07.json")
    data = ops.overview(store.uri, limit=5)
    shown = [batch["batch_id"] for batch in data["batches"]]
    assert "2026-12-07" in shown and len(shown) == 5 and data["batches_total"] == 26
    assert set(shown) - {"2026-12-07"} == {f"site-7_run-{number}" for number in (25, 24, 23, 22)}
    assert ops.natural_order("site-7_run-10") > ops.natural_order("site-7_run-9")
    assert ops.natural_order("2026-12-07") > ops.natural_order("2026-11-30")


def test_a_batch_uploaded_since_the_last_run_is_shown_beside_what_the_runs_touched(tmp_path):
    """Five nights of five batches each fill no more than half the rows: today's upload, not run yet, is shown.
    Ids whose digits tie (run-7, run-07) keep one order."""
    store = LocalStore(tmp_path)
    for night in range(1, 6):
        names = [f"2026-12-0{night}_site-{site}" for site in range(5)]
        for batch_id in names:
            store.write(f"incoming/{batch_id}/a.jpg", b"x")
        run = RunSummary(f"scheduled__2026-12-0{night}", f"2026-12-0{night}T03:00:00Z", 5, [], [], names, 5, 0,
                         [{"batch_id": name} for name in names])  # fmt: skip
        run.write(store, f"runs/scheduled__2026-12-0{night}.json")
    store.write("incoming/2026-12-06_site-1/a.jpg", b"x")
    shown = {batch["batch_id"] for batch in ops.overview(store.uri, limit=8)["batches"]}
    assert "2026-12-06_site-1" in shown and len(shown) == 8
    assert {f"2026-12-05_site-{site}" for site in range(4)} <= shown  # the last night's, in half the rows
    for name in ("run-7", "run-07", "run-007"):
        store.write(f"incoming/{name}/a.jpg", b"x")
    ties = [batch_id for batch_id in ops._batch_ids(ops.StoreReader(store)) if batch_id.endswith("7")]
    assert ties == ["run-7", "run-07", "run-007"]


def test_a_run_id_someone_chose_is_ordered_by_when_it_finished(tmp_path):
    """A January run triggered as "rerun-site7" sorted after every date: it stayed among the last runs for good."""
    store = LocalStore(tmp_path)
    for day in (27, 28, 29, 30):
        RunSummary(f"scheduled__2026-11-{day}T02:00:00+00:00", f"2026-11-{day}T02:30:00Z", 0, [], [], [], 0, 0,
                   []).write(store, f"runs/scheduled__2026-11-{day}T02_00_00_00_00.json")  # fmt: skip
    RunSummary("rerun-site7", "2026-01-12T09:00:00Z", 0, [], [], [], 0, 0, []).write(store, "runs/rerun-site7.json")
    RunSummary("rerun-today", "2026-11-30T09:00:00Z", 0, [], [], [], 0, 0, []).write(store, "runs/rerun-today.json")
    shown = [run["run_id"] for run in ops.overview(store.uri, runs=3)["runs"]]
    assert shown == ["rerun-today", "scheduled__2026-11-30T02:00:00+00:00", "scheduled__2026-11-29T02:00:00+00:00"]
