"""Which alerts a night or a gate decision raises (crack_model.pipelines.alerts), and the once-per-run record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from crack_model.core import layout
from crack_model.core.documents import BatchSummary
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.alert_records import mark_alert_sent, record_alerts
from crack_model.pipelines.alerts import (
    BATCH_FAILED_VALIDATION,
    BATCH_RESCORED,
    BATCH_SETTLED,
    CANDIDATE_REJECTED,
    DRIFT,
    SCORING_ERRORS,
    UNREADABLE_DOCUMENT,
    UNUSABLE_BATCH_FOLDER,
    UNUSABLE_INCOMING,
    UPLOAD_OUTSIDE_BATCH,
    gate_alert,
    nightly_alerts,
    run_alerts,
)
from crack_model.pipelines.nightly import find_new_batches, publish_run_summary, validate_incoming
from crack_model.quality.outcome import ValidationOutcome
from tests.unit.pipelines.refusing_store import DENIED, RefusingStore

RUN = "scheduled__2026-11-24T02:00:00+00:00"


def validation(batch_id: str, outcome: str, reasons: list[str] | None = None) -> dict[str, Any]:
    """What validate_incoming hands to the run summary for one batch."""
    return {"batch_id": batch_id, "outcome": outcome, "reasons": reasons or [], "quarantined": 0, "objects": 40,
            "drifted": False}  # fmt: skip


def drift_report(psi: dict[str, float], threshold: float = 0.25, checked: bool = True) -> dict[str, Any]:
    over = sorted(name for name, value in psi.items() if value > threshold)
    return {"checked": checked, "drifted": bool(over) if checked else None, "psi": psi, "drifted_features": over,
            "threshold": threshold, "images": 400, "note": "measured"}  # fmt: skip


def outcome_document(batch_id: str, result: str, reasons: list[str], drift: dict[str, Any] | None) -> dict[str, Any]:
    return ValidationOutcome(batch_id, "incoming", result, reasons, [], {"objects": 40}, [], drift, {}).to_dict()


def batch_summary(batch_id: str, **status_counts: int) -> dict[str, Any]:
    return BatchSummary(
        batch_id=batch_id, model_version="20261101T020000Z-aaaa1111", runtime="keras", threshold=0.4,
        objects=sum(status_counts.values()), status_counts=status_counts, label_counts={}, crack_class="Positive",
        cracks=0, crack_rate=0.0, shards=1, scoring_seconds=1.0, throughput_images_per_second=10.0,
        finished_at="2026-11-24T03:00:00Z",
    ).as_dict()  # fmt: skip


@pytest.fixture()
def night(tmp_path) -> tuple[LocalStore, dict[str, Any], list[dict[str, Any]]]:
    """A night written by the workflow's writers: a failed batch, a drifted one, a released one, two scored."""
    store = LocalStore(tmp_path)
    outcomes = {
        "blank": outcome_document("blank", "failed", ["contrast_in_bounds: 12 of 12 fail"], None),
        "site-b": outcome_document("site-b", "passed", [], drift_report({"blur": 0.9, "contrast": 0.25})),
        "released": outcome_document("released", "failed", ["decodes: 9 of 40 fail"], None),
        "flaky": outcome_document("flaky", "passed", [], drift_report({"blur": 0.1})),
    }
    for batch_id, document in outcomes.items():
        store.write(layout.validation_key(batch_id, layout.OUTCOME), json.dumps(document).encode())
    validations = [validation(batch_id, document["outcome"], document["reasons"])
                   for batch_id, document in outcomes.items()]  # fmt: skip
    summaries = [batch_summary("site-b", ok=95, error=5), batch_summary("flaky", ok=90, error=10, quarantined=30),
                 batch_summary("released", ok=31, error=0, quarantined=9)]  # fmt: skip
    for summary in summaries:
        store.write(layout.results_key(summary["batch_id"], layout.SUMMARY), json.dumps(summary).encode())
    run_summary = publish_run_summary(store, RUN, validations, summaries, batch_ids=sorted(outcomes),
                                      planned=["flaky", "released", "site-b"], released=["released"])  # fmt: skip
    return store, run_summary, summaries


def test_a_night_raises_failed_validation_drift_and_scoring_error_alerts(night):
    """One alert per failed (not released) batch, per drifted batch, per batch above the error rate, in that order."""
    store, run_summary, summaries = night
    alerts = run_alerts(store, run_summary, summaries, error_rate_alert=0.05)
    assert [(alert.kind, alert.subject) for alert in alerts] == [
        (BATCH_FAILED_VALIDATION, "blank"),
        (DRIFT, "site-b"),
        (SCORING_ERRORS, "flaky"),
    ]
    failed, drifted, errors = alerts
    assert failed.details["reasons"] == ["contrast_in_bounds: 12 of 12 fail"]
    assert failed.details["report"] == "validation/blank/report.html" and "contrast_in_bounds" in failed.title
    assert drifted.details["psi"] == {"blur": 0.9} and drifted.details["threshold"] == 0.25
    assert (errors.details["errors"], errors.details["ok"], errors.details["error_rate"]) == (10, 90, 0.1)


def test_a_folder_no_night_scores_raises_an_alert_naming_it(night):
    """Uploads under incoming/<a name that is not a batch id>/ would wait unseen: every run names the folder."""
    store, run_summary, summaries = night
    store.write("incoming/site 7 (north)/photo.jpg", b"x")
    store.write("incoming/2026-11-24/photo.jpg", b"x")
    alerts = run_alerts(store, run_summary, summaries, error_rate_alert=0.05)
    [unusable] = [alert for alert in alerts if alert.kind == UNUSABLE_BATCH_FOLDER]
    assert unusable.subject == "site 7 (north)" and unusable.details["folder"] == "incoming/site 7 (north)/"
    assert "invalid batch id" in unusable.title and "move its uploads" in unusable.title
    assert alerts[-1] is unusable  # after the night's own alerts, which stay as they were
    assert [alert.kind for alert in alerts[:-1]] == [BATCH_FAILED_VALIDATION, DRIFT, SCORING_ERRORS]


def test_uploads_in_no_batch_folder_and_hidden_folders_raise_alerts(night):
    """Photos put straight into incoming/ (one alert for all) and a folder whose name starts with a dot are named."""
    store, run_summary, summaries = night
    store.write("incoming/_READY", b"")
    store.write("incoming/.hidden-batch/photo.jpg", b"x")
    for index in range(30):
        store.write(f"incoming/loose photo {index:02d}.jpg", b"x")
    alerts = run_alerts(store, run_summary, summaries, error_rate_alert=0.05)
    assert [alert.subject for alert in alerts if alert.kind == UNUSABLE_BATCH_FOLDER] == [".hidden-batch"]
    [outside] = [alert for alert in alerts if alert.kind == UPLOAD_OUTSIDE_BATCH]  # one, not 30: on-call reads it
    assert outside.subject == "incoming/" and outside.details["count"] == 30
    assert outside.title.startswith("30 upload(s) in no batch folder, so no night scores them (incoming/loose photo 00")
    assert "move them into incoming/<batch_id>/" in outside.title and len(outside.details["keys"]) == 10


def test_an_incoming_that_is_a_symbolic_link_raises_an_alert_every_run(tmp_path, night):
    """The local store never follows the link: its listing looked like a quiet night, and nobody heard of it."""
    store, run_summary, summaries = night
    disk = tmp_path.parent / f"{tmp_path.name}-upload-disk"
    (disk / "2026-11-24").mkdir(parents=True)
    (store.root / "incoming").symlink_to(disk)
    alerts = run_alerts(store, run_summary, summaries, error_rate_alert=0.05)
    [unusable] = [alert for alert in alerts if alert.kind == UNUSABLE_INCOMING]
    assert unusable.subject == "incoming/" and unusable.title.startswith("no night finds a batch under incoming/: ")
    assert "is a symbolic link" in unusable.details["reason"]
    assert [alert.kind for alert in alerts[:-1]] == [BATCH_FAILED_VALIDATION, DRIFT, SCORING_ERRORS]


def test_one_batchs_unreadable_document_is_an_alert_of_its_own_not_the_end_of_every_alert(tmp_path, night):
    """A 503 on one summary.json, or a damaged outcome.json, raised out of run_alerts: no alert of the night went
    out, on every retry, and the error named neither batch nor key. The others' alerts still go out."""
    store, run_summary, _ = night
    store.write(layout.validation_key("site-b", layout.OUTCOME), b'{"outcome": "pass')
    faulty = RefusingStore(store.root, {layout.results_key("released", layout.SUMMARY)})

    alerts = run_alerts(faulty, run_summary, None, error_rate_alert=0.05)

    assert [(alert.kind, alert.subject) for alert in alerts] == [
        (BATCH_FAILED_VALIDATION, "blank"),
        (SCORING_ERRORS, "flaky"),
        (UNREADABLE_DOCUMENT, "validation/site-b/outcome.json"),
        (UNREADABLE_DOCUMENT, "results/released/summary.json"),
    ]
    damaged, unanswered = alerts[2:]
    assert damaged.details["batch_id"] == "site-b" and "JSONDecodeError" in damaged.details["error"]
    assert damaged.title.startswith(f"batch site-b: could not read {store.url('validation/site-b/outcome.json')}")
    assert "ServiceUnavailable" in unanswered.title and "scoring-error alert was not decided" in unanswered.title
    store.write(layout.validation_key("blank", layout.OUTCOME), b"[]")  # parses, but is no document
    not_objects, _ = [alert for alert in run_alerts(store, run_summary, None) if alert.kind == UNREADABLE_DOCUMENT]
    assert not_objects.subject == "validation/blank/outcome.json" and "not a JSON object" in not_objects.title


def test_a_batch_whose_success_marker_cannot_be_read_is_named_every_run(night):
    """The sensor leaves such a batch out, night after night: the run's alerts name the batch, the key and the error."""
    store, run_summary, summaries = night
    store.write("incoming/site-c/photo.jpg", b"x")
    store.write("incoming/site-d/photo.jpg", b"x")
    denied = RefusingStore(store.root, {layout.results_key("site-c", layout.SUCCESS)}, DENIED)

    alerts = run_alerts(denied, run_summary, summaries, error_rate_alert=0.05)

    [unreadable] = [alert for alert in alerts if alert.kind == UNREADABLE_DOCUMENT]
    assert unreadable.subject == "results/site-c/_SUCCESS" and unreadable.details["batch_id"] == "site-c"
    assert unreadable.title.startswith(
        f"batch site-c is left out tonight: could not read {store.url('results/site-c/_SUCCESS')}"
    )
    assert "AccessDenied" in unreadable.title and "bucket policy" in unreadable.title
    assert [alert.kind for alert in alerts[:3]] == [BATCH_FAILED_VALIDATION, DRIFT, SCORING_ERRORS]


def test_a_batch_left_out_beyond_max_batches_for_its_unreadable_outcome_is_named(night):
    """Beyond max_batches the sensor reads a new batch's outcome.json and leaves the batch out when it cannot: the
    alerts checked only _SUCCESS, so it was left out every night and named nowhere. A batch the night validated is
    not named again."""
    store, run_summary, summaries = night
    for batch_id in ("blank", "site-c", "site-d"):  # blank: validated tonight, not found again
        store.write(f"incoming/{batch_id}/photo.jpg", b"x")
    refused = {layout.validation_key(batch_id, layout.OUTCOME) for batch_id in ("site-c", "blank")}
    denied = RefusingStore(store.root, refused, DENIED)
    assert "site-c" not in find_new_batches(denied, limit=1)

    alerts = run_alerts(denied, run_summary, summaries, error_rate_alert=0.05)

    named = [alert for alert in alerts if alert.kind == UNREADABLE_DOCUMENT]
    assert [alert.subject for alert in named] == ["validation/blank/outcome.json", "validation/site-c/outcome.json"]
    assert named[1].details["batch_id"] == "site-c" and named[1].title.startswith("batch site-c is left out tonight")


def test_a_summary_read_for_the_alerts_is_named_by_its_folder_not_its_own_batch_id(night):
    """A summary.json whose batch_id differs from its folder's (copied from another batch, edited by hand) named
    the other batch in the alerts; the folder it sits in says whose it is."""
    store, run_summary, _ = night
    copied = {**batch_summary("site-b", ok=95, error=5), "batch_id": "elsewhere"}
    store.write(layout.results_key("site-b", layout.SUMMARY), json.dumps(copied).encode())

    alerts = run_alerts(store, run_summary, None, error_rate_alert=0.01)

    assert {alert.subject for alert in alerts if alert.kind == SCORING_ERRORS} == {"site-b", "flaky"}


def test_the_error_rate_counts_ok_and_error_rows_only_and_alerts_strictly_above(night):
    """5 errors in 100 scored rows is 5 %: no alert at 0.05, an alert at 0.04; quarantined rows never count."""
    _, run_summary, summaries = night
    at_rate = nightly_alerts(run_summary, summaries, {}, error_rate_alert=0.05)
    assert [alert.subject for alert in at_rate if alert.kind == SCORING_ERRORS] == ["flaky"]
    below = nightly_alerts(run_summary, summaries, {}, error_rate_alert=0.04)
    assert [alert.subject for alert in below if alert.kind == SCORING_ERRORS] == ["flaky", "site-b"]
    nothing_scored = nightly_alerts(run_summary, [batch_summary("empty", quarantined=4)], {}, error_rate_alert=0.0)
    assert [alert for alert in nothing_scored if alert.kind == SCORING_ERRORS] == []


def test_a_batch_scored_again_whole_by_a_new_model_raises_an_alert_naming_both_versions(night):
    """After a promotion one late upload had the whole batch scored again, its published rows replaced silently."""
    _, run_summary, _ = night
    rescored = {**batch_summary("site-b", ok=40), "rescored_from": "20261020T020000Z-bbbb2222", "rows_rescored": 39,
                "labels_flipped": 3}  # fmt: skip

    alerts = nightly_alerts(run_summary, [rescored, batch_summary("steady", ok=5)], {})

    [alert] = [alert for alert in alerts if alert.kind == BATCH_RESCORED]
    assert alert.subject == "site-b" and alerts[-1] is alert
    assert alert.title == ("batch site-b was scored again whole with model 20261101T020000Z-aaaa1111: 3 of the 39 "
                           "labels of 20261020T020000Z-bbbb2222 it replaced flipped")  # fmt: skip
    assert alert.details["previous_rows"] == "results/site-b/_parts/20261020T020000Z-bbbb2222/"


def test_a_batch_scored_again_whole_at_another_tile_budget_raises_an_alert_naming_both_budgets(night):
    """The same model, a new tile budget and a late upload: every row was scored again at the new scale."""
    _, run_summary, _ = night
    version = batch_summary("site-b", ok=40)["model_version"]
    rescored = {**batch_summary("site-b", ok=40), "rescored_from": version, "rescored_from_max_tiles": 512,
                "max_tiles": 2048, "rows_rescored": 39, "labels_flipped": 3}  # fmt: skip

    [alert] = [alert for alert in nightly_alerts(run_summary, [rescored], {}) if alert.kind == BATCH_RESCORED]

    assert alert.title == (f"batch site-b was scored again whole with model {version} at 2048 tiles per photo: 3 of "
                           f"the 39 labels of {version} at 512 tiles per photo it replaced flipped")  # fmt: skip
    assert alert.details["previous_max_tiles"] == 512 and alert.details["max_tiles"] == 2048
    assert alert.details["previous_rows"] is None  # the shard started over: its parts hold the new rows only
    assert "a tile budget change" in alert.details["why"] and "promotion" not in alert.details["why"]


def test_a_batch_settled_because_its_uploads_are_all_gone_raises_an_alert_naming_it(tmp_path):
    """Its merged rows awaited uploads gone when scored, and the uploads never came back: the night dropped its rows
    and settled it, and only its log said so; the rows an operator saw were gone without a word."""
    store = LocalStore(tmp_path)
    merged = {**batch_summary("b1", ok=1, missing=2), "late_objects": 0}
    for name in (layout.SUMMARY, layout.SUCCESS):
        store.write(layout.results_key("b1", name), json.dumps(merged).encode())
    store.write(layout.results_key("b1", layout.PREDICTIONS), b'"key","status"\r\n"incoming/b1/0.jpg","ok"\r\n')
    settled = validate_incoming(store, "b1")
    run_summary = publish_run_summary(store, RUN, [settled], [], batch_ids=["b1"])

    [alert] = [alert for alert in run_alerts(store, run_summary) if alert.kind == BATCH_SETTLED]

    assert alert.subject == "b1" and alert.details["rows_dropped"] == 3 and alert.details["uploads"] == "incoming/b1/"
    assert alert.title.startswith("batch b1: its uploads are all gone from incoming/b1/")
    assert "3 result row(s) were dropped" in alert.title and "put back there are scored the next night" in alert.title


def test_drift_needs_a_feature_above_the_threshold_of_a_checked_batch():
    """PSI equal to the threshold, or a batch too small to judge, raises nothing; the validation's threshold rules."""
    summary = {"validations": [validation(name, "passed") for name in ("equal", "small", "strict")]}
    outcomes = {
        "equal": outcome_document("equal", "passed", [], drift_report({"blur": 0.25})),
        "small": outcome_document("small", "passed", [], drift_report({"blur": 3.0}, checked=False)),
        "strict": outcome_document("strict", "passed", [], drift_report({"blur": 0.15}, threshold=0.1)),
    }
    alerts = nightly_alerts(summary, [], outcomes)
    found = [(alert.kind, alert.subject, alert.details["psi"]) for alert in alerts]
    assert found == [(DRIFT, "strict", {"blur": 0.15})]


def test_only_a_rejection_raises_a_gate_alert():
    """reject -> one alert naming the failed checks; a pass that was not promoted -> none."""
    decision = {"name": "crack", "candidate_version": "V2", "champion_version": "V1", "decision": "reject",
                "failed_checks": ["floor.crack_recall", "no_regression.accuracy"], "promoted": False}  # fmt: skip
    alert = gate_alert(decision)
    assert alert is not None and (alert.kind, alert.subject) == (CANDIDATE_REJECTED, "crack/V2")
    assert "floor.crack_recall, no_regression.accuracy" in alert.title and alert.details == decision
    assert gate_alert({**decision, "decision": "promote", "failed_checks": []}) is None


def test_a_bad_error_rate_is_refused_with_the_parameter_named():
    """error_rate_alert outside [0, 1) is an error that says what to pass."""
    with pytest.raises(CrackModelError, match=r"error_rate_alert .*\[0, 1\)"):
        nightly_alerts({"validations": []}, [], {}, error_rate_alert=5)


def test_alerts_are_recorded_once_per_run_with_the_channels_they_went_out_through(night):
    """Recording again keeps the first record; a channel marked sent stays marked; another run starts afresh."""
    store, run_summary, summaries = night
    alerts = run_alerts(store, run_summary, summaries)
    first = record_alerts(store, RUN, alerts)
    assert [record["sent_via"] for record in first] == [{}, {}, {}]
    mark_alert_sent(store, RUN, first[0]["id"], "http")

    again = record_alerts(store, RUN, alerts)
    assert [record["raised_at"] for record in again] == [record["raised_at"] for record in first]
    assert list(again[0]["sent_via"]) == ["http"] and again[1]["sent_via"] == {}
    assert store.exists(layout.alerts_key(RUN)) and not layout.alerts_key(RUN).startswith(layout.RUNS + "/")
    assert [record["sent_via"] for record in record_alerts(store, "manual__other", alerts)] == [{}, {}, {}]
    with pytest.raises(CrackModelError, match="record_alerts first"):
        mark_alert_sent(store, RUN, "drift:never-raised", "http")
