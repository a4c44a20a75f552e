"""Nightly steps on a real local store: the shard planner, release of failed batches, the run summary, new batches."""

from __future__ import annotations

import pytest

from crack_model.core import layout
from crack_model.core.documents import BatchSummary, RunSummary
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.nightly import (
    batches_to_score,
    find_new_batches,
    plan_shards,
    publish_run_summary,
    validate_incoming,
)
from tests.unit.pipelines.refusing_store import DENIED, RefusingStore


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


def test_failed_batches_are_scored_only_when_released():
    """A batch that failed validation is left out unless the operator names it in release_batches."""
    validations = [{"batch_id": "a", "outcome": "passed"}, {"batch_id": "b", "outcome": "failed"},
                   {"batch_id": "c", "outcome": "passed_with_quarantine"}]  # fmt: skip

    assert batches_to_score(validations) == ["a", "c"]
    assert batches_to_score(validations, ["b"]) == ["a", "b", "c"]


def test_the_run_summary_names_every_failed_batch_and_why(tmp_path):
    """Crashed validation, unfinished scoring, a failed suite and a release each appear, and the file is written."""
    store = LocalStore(tmp_path)
    validations = [
        {"batch_id": "good", "outcome": "passed", "reasons": []},
        {"batch_id": "blank", "outcome": "failed", "reasons": ["every image is blank"]},
        {"batch_id": "stuck", "outcome": "passed", "reasons": []},
        {"batch_id": "odd", "outcome": "failed", "reasons": ["12 objects do not decode"]},
    ]
    summaries = [
        {"batch_id": "good", "status_counts": {"ok": 3, "quarantined": 1}, "cracks": 2},
        {"batch_id": "odd", "status_counts": {"ok": 1, "error": 12}, "cracks": 0},
    ]

    summary = publish_run_summary(store, "scheduled__2026-11-24T02:00:00+00:00", validations, summaries,
                                  batch_ids=["good", "blank", "stuck", "odd", "crashed"],
                                  planned=["good", "stuck", "odd"], released=["odd"])  # fmt: skip

    assert set(summary["failed_batches"]) == {"blank", "stuck", "crashed"}
    assert "every image is blank" in summary["failed_batches"]["blank"]
    assert summary["failed_batches"]["crashed"].startswith("validation did not finish")
    assert summary["failed_batches"]["stuck"].startswith("scoring did not finish")
    assert summary["incomplete_batches"] == ["crashed", "stuck"]
    assert summary["batches_released"] == ["odd"] and summary["objects_scored"] == 3 + 13
    stored = RunSummary.read(store, layout.run_summary_key("scheduled__2026-11-24T02:00:00+00:00"))
    assert stored is not None and stored.failed_batches == summary["failed_batches"]


def test_the_run_summary_names_the_batches_the_next_night_scores_again(tmp_path):
    """A batch merged with uploads late, replaced after validation or gone: the run said only "scored"."""
    validations = [{"batch_id": batch_id, "outcome": "passed", "reasons": []} for batch_id in ("done", "open")]
    summaries = [
        {"batch_id": "done", "status_counts": {"ok": 3}, "late_objects": 0},
        {"batch_id": "open", "status_counts": {"ok": 2, "changed": 1}, "late_objects": 2},
    ]

    summary = publish_run_summary(LocalStore(tmp_path), "manual__1", validations, summaries,
                                  batch_ids=["done", "open"], planned=["done", "open"])  # fmt: skip

    assert summary["batches_scored"] == ["done", "open"] and list(summary["batches_reopened"]) == ["open"]
    assert "2 late, 1 changed" in summary["batches_reopened"]["open"]
    assert "next night validates the batch again" in summary["batches_reopened"]["open"]


def test_a_night_without_a_pinned_model_blames_the_model_not_validation(tmp_path):
    """resolve_model failed, so no batch was validated: each found batch's reason says so and where to look."""
    summary = publish_run_summary(LocalStore(tmp_path), "manual__1", [], [], batch_ids=["a", "b"], planned=[],
                                  model_pinned=False)  # fmt: skip

    assert summary["incomplete_batches"] == ["a", "b"]
    for reason in summary["failed_batches"].values():
        assert reason.startswith("not validated or scored: no model was pinned") and "resolve_model" in reason


def test_a_batch_that_passed_validation_but_was_never_planned_is_named(tmp_path):
    """plan_shards failed for good (the store did not answer): the batches it should have planned are not done."""
    validations = [{"batch_id": "a", "outcome": "passed", "reasons": []},
                   {"batch_id": "b", "outcome": "failed", "reasons": ["blank"]},
                   {"batch_id": "c", "outcome": "failed", "reasons": ["blank"]}]  # fmt: skip

    summary = publish_run_summary(LocalStore(tmp_path), "manual__1", validations, [], batch_ids=["a", "b", "c"],
                                  planned=[], released=["c"])  # fmt: skip

    assert summary["incomplete_batches"] == ["a", "c"]
    assert summary["failed_batches"]["a"].startswith("scoring did not finish: see the plan_shards")
    assert summary["failed_batches"]["b"].startswith("failed validation")


def test_a_batch_merged_before_finalizing_failed_counts_as_scored(tmp_path):
    """finalize_batches failed for good after merging some batches: their _SUCCESS says they are done."""
    store = LocalStore(tmp_path)
    merged = BatchSummary(
        batch_id="merged", model_version="V1", runtime="keras", threshold=0.5, objects=3, status_counts={"ok": 3},
        label_counts={}, crack_class="Positive", cracks=1, crack_rate=1 / 3, shards=1, scoring_seconds=1.0,
        throughput_images_per_second=3.0, finished_at="2026-11-24T03:00:00Z",
    )  # fmt: skip
    for name in (layout.SUMMARY, layout.SUCCESS):
        merged.write(store, layout.results_key("merged", name))
    validations = [{"batch_id": b, "outcome": "passed", "reasons": []} for b in ("merged", "unmerged")]

    summary = publish_run_summary(store, "manual__1", validations, [], batch_ids=["merged", "unmerged"],
                                  planned=["merged", "unmerged"])  # fmt: skip

    assert summary["batches_scored"] == ["merged"] and summary["cracks"] == 1
    assert summary["incomplete_batches"] == ["unmerged"]


def test_a_run_cleared_and_run_again_adds_to_its_summary(tmp_path):
    """The second try's sensor finds only what the first left (c1 is complete): its summary used to replace the
    first's, and the night lost c1's objects from the trends."""
    store = LocalStore(tmp_path)
    c1 = BatchSummary(
        batch_id="c1", model_version="V1", runtime="keras", threshold=0.5, objects=2, status_counts={"ok": 2},
        label_counts={}, crack_class="Positive", cracks=1, crack_rate=0.5, shards=1, scoring_seconds=1.0,
        throughput_images_per_second=2.0, finished_at="2026-12-01T03:00:00Z",
    )  # fmt: skip
    for name in (layout.SUMMARY, layout.SUCCESS):
        c1.write(store, layout.results_key("c1", name))
    run = "manual__2026-12-01T02:00:00+00:00"
    passed = {"outcome": "passed", "reasons": []}
    publish_run_summary(store, run, [{"batch_id": "c1", **passed}, {"batch_id": "blank", "outcome": "failed",
                        "reasons": ["every image is blank"]}], [c1.as_dict()], batch_ids=["c1", "blank", "crashed"],
                        planned=["c1"])  # fmt: skip

    again = publish_run_summary(store, run, [{"batch_id": "late", **passed}], [], batch_ids=["late"], planned=["late"])

    assert again["batches_scored"] == ["c1"] and again["objects_scored"] == 2 and again["cracks"] == 1
    assert again["batches_validated"] == 3
    assert set(again["failed_batches"]) == {"blank", "crashed", "late"}
    assert again["failed_batches"]["blank"] == "failed validation: every image is blank"
    assert again["incomplete_batches"] == ["crashed", "late"]
    assert RunSummary.read(store, layout.run_summary_key(run)).batches_scored == ["c1"]


def test_finalizing_retries_a_store_that_did_not_answer_but_not_a_batch_that_cannot_finish(tmp_path, monkeypatch):
    """A batch whose shards failed is left for the run summary; a store error is raised after the other batches,
    so Airflow retries the task (merging again is idempotent)."""
    from crack_model.pipelines import nightly
    from crack_model.serving.batch_results import ShardsIncompleteError

    merged = []

    def finalize_one(store, batch_id, reports):
        if batch_id == "b":
            raise ConnectionError("the store did not answer")
        if batch_id == "c":
            raise ShardsIncompleteError("shard 0/1 of batch c has not finished")
        if batch_id == "e":
            raise KeyError("a damaged part: retrying will not mend it")
        merged.append(batch_id)
        return {"batch_id": batch_id}

    monkeypatch.setattr(nightly, "_finalize_one", finalize_one)
    reports = [{"batch_id": batch_id, "shard": "0/1"} for batch_id in ("a", "b", "c", "d", "e")]
    with pytest.raises(ConnectionError, match="did not answer"):
        nightly.finalize_batches(LocalStore(tmp_path), reports)
    assert merged == ["a", "d"]
    assert nightly.finalize_batches(LocalStore(tmp_path), [r for r in reports if r["batch_id"] != "b"]) == [
        {"batch_id": "a"},
        {"batch_id": "d"},
    ]
    monkeypatch.setattr(nightly, "_finalize_one", lambda store, batch_id, reports: {"batch_id": batch_id})
    assert nightly.finalize_batches(LocalStore(tmp_path), reports) == [{"batch_id": b} for b in "abcde"]


def test_the_last_try_of_finalizing_returns_the_batches_it_merged_despite_a_store_that_did_not_answer(
    tmp_path, monkeypatch
):
    """A lasting 503 on one batch's summary.json failed every try after merging the others: the task never returned,
    so the batches it merged were never announced. The last try logs that batch and returns the others."""
    from crack_model.pipelines import nightly

    def finalize_one(store, batch_id, reports):
        if batch_id == "c":
            raise ConnectionError("the store did not answer for results/c/summary.json")
        return {"batch_id": batch_id}

    monkeypatch.setattr(nightly, "_finalize_one", finalize_one)
    reports = [{"batch_id": batch_id, "shard": "0/1"} for batch_id in ("a", "c", "d")]
    with pytest.raises(ConnectionError):
        nightly.finalize_batches(LocalStore(tmp_path), reports)
    merged = nightly.finalize_batches(LocalStore(tmp_path), reports, retry_unanswered=False)
    assert merged == [{"batch_id": "a"}, {"batch_id": "d"}]


def test_batches_that_failed_validation_before_do_not_hold_new_ones_back(tmp_path):
    """Failed batches stay new night after night; past the limit, those never validated are taken first."""
    store = uploads(LocalStore(tmp_path), {"2026-01-01": 1, "2026-01-02": 1, "2026-03-01": 1, "2026-03-02": 1})
    for old in ("2026-01-01", "2026-01-02"):
        store.write(f"validation/{old}/outcome.json", b'{"outcome": "failed"}')

    assert find_new_batches(store, limit=2) == ["2026-03-01", "2026-03-02"]
    assert find_new_batches(store, limit=3) == ["2026-01-01", "2026-03-01", "2026-03-02"]
    assert find_new_batches(store) == ["2026-01-01", "2026-01-02", "2026-03-01", "2026-03-02"]


def test_a_batch_whose_state_cannot_be_read_is_left_out_with_an_error_and_the_others_found(tmp_path, caplog):
    """A bucket policy denying results/b/ (403 on the HEAD of its _SUCCESS) raised out of the sensor: no batch was
    scored that night, and the log named neither batch nor key. Beyond the limit, the same for its outcome.json."""
    uploads(LocalStore(tmp_path), {"a": 1, "b": 1, "c": 1, "d": 1})
    denied = RefusingStore(tmp_path, {layout.results_key("b", layout.SUCCESS)}, DENIED)

    assert find_new_batches(denied) == ["a", "c", "d"]
    assert (
        f"batch b is left out tonight: could not read {denied.url('results/b/_SUCCESS')} (ClientError: " in caplog.text
    )
    assert "AccessDenied" in caplog.text
    denied.refused = {layout.validation_key("c", layout.OUTCOME)}
    assert find_new_batches(denied, limit=2) == ["a", "b"]
    assert find_new_batches(denied, limit=3) == ["a", "b", "d"]
    assert f"could not read {denied.url('validation/c/outcome.json')}" in caplog.text


def test_a_run_summary_is_written_when_a_batch_state_cannot_be_read(tmp_path):
    """publish_run_summary looks for batches merged before finalizing failed: one unreadable _SUCCESS raised, and
    the night had no summary. That batch stays unfinished; the others are counted."""
    store = LocalStore(tmp_path)
    merged = BatchSummary(
        batch_id="merged", model_version="V1", runtime="keras", threshold=0.5, objects=3, status_counts={"ok": 3},
        label_counts={}, crack_class="Positive", cracks=1, crack_rate=1 / 3, shards=1, scoring_seconds=1.0,
        throughput_images_per_second=3.0, finished_at="2026-11-24T03:00:00Z",
    )  # fmt: skip
    for batch_id in ("merged", "denied"):
        for name in (layout.SUMMARY, layout.SUCCESS):
            merged.write(store, layout.results_key(batch_id, name))
    denied = RefusingStore(tmp_path, {layout.results_key("denied", layout.SUCCESS)}, DENIED)
    validations = [{"batch_id": b, "outcome": "passed", "reasons": []} for b in ("merged", "denied")]

    summary = publish_run_summary(denied, "manual__1", validations, [], batch_ids=["merged", "denied"])

    assert summary["batches_scored"] == ["merged"] and summary["incomplete_batches"] == ["denied"]


def test_a_complete_batch_with_late_uploads_is_new_again(tmp_path):
    """Batches without _SUCCESS are new; a complete one is new again only if uploads came after its validation."""
    store = uploads(LocalStore(tmp_path), {"done": 1, "late": 1, "open": 1})
    for batch_id, late in (("done", 0), ("late", 2)):
        summary = {"batch_id": batch_id, "model_version": "v1", "runtime": "keras", "threshold": 0.5, "objects": 1,
                   "status_counts": {"ok": 1}, "label_counts": {}, "crack_class": "Positive", "cracks": 0,
                   "crack_rate": 0.0, "shards": 1, "scoring_seconds": 0.1, "throughput_images_per_second": 10.0,
                   "finished_at": "2026-11-24T02:00:00Z", "late_objects": late}  # fmt: skip
        BatchSummary.from_dict(summary).write(store, f"results/{batch_id}/_SUCCESS")

    assert find_new_batches(store) == ["late", "open"]


def merged_with_missing_rows(store: LocalStore, batch_id: str) -> None:
    """Results of a batch merged with one ``missing`` row (its upload was gone when scored)."""
    summary = BatchSummary(batch_id=batch_id, model_version="v1", runtime="keras", threshold=0.5, objects=1,
                           status_counts={"missing": 1}, label_counts={}, crack_class="Positive", cracks=0,
                           crack_rate=0.0, shards=1, scoring_seconds=1.0, throughput_images_per_second=1.0,
                           finished_at="2026-11-24T03:00:00Z")  # fmt: skip
    rows = f'"key","status"\r\n"incoming/{batch_id}/0.jpg","missing"\r\n'.encode()
    store.write(layout.results_key(batch_id, layout.PREDICTIONS), rows)
    for name in (layout.SUMMARY, layout.SUCCESS):
        summary.write(store, layout.results_key(batch_id, name))


@pytest.mark.parametrize("folder_left", [True, False], ids=["local-folder-stays", "s3-folder-gone"])
def test_a_merged_batch_whose_uploads_are_all_gone_settles_once(tmp_path, folder_left):
    """Its validation failed batch_not_empty every night, nothing merged, its ``missing`` rows stayed and an alert
    went out each night (a local folder stays); on S3, where the folder goes, it was never found and kept them.
    The night settles it with no rows, neither scored nor failed, and the next night does not find it."""
    store = uploads(LocalStore(tmp_path), {"keep": 1})
    if folder_left:
        (tmp_path / "incoming" / "b1").mkdir()
    merged_with_missing_rows(store, "b1")

    assert find_new_batches(store) == ["b1", "keep"]
    validation = validate_incoming(store, "b1")

    assert validation["outcome"] == "settled" and "uploads are all gone" in validation["reasons"][0]
    assert batches_to_score([validation]) == []
    summary = BatchSummary.read(store, layout.results_key("b1", layout.SUMMARY))
    assert summary.objects == 0 and summary.status_counts == {} and not summary.awaits_revalidation
    assert store.read(layout.results_key("b1", layout.PREDICTIONS)).decode().count("\n") == 1  # the header alone
    assert not store.exists(layout.validation_key("b1", layout.OUTCOME))
    assert find_new_batches(store) == ["keep"]
    store.write("incoming/b1/0.jpg", b"jpeg")  # the folder moved away to be checked, put back a night late
    assert find_new_batches(store) == ["b1", "keep"]  # it was settled for good: its photos never scored again
    from crack_model.serving.batch import _is_complete

    # Nor may scoring take the settled marker for a finished batch (the same photos validate to the same manifest).
    assert not _is_complete(store, "b1", summary.validated_manifest or "any")


def test_a_night_scores_with_the_runtime_named_only_if_the_version_is_approved_for_it(tmp_path, trained_model,
                                                                                      synth_data):  # fmt: skip
    """The nightly DAG's ``runtime`` param: pinned once, checked against the gate's list, loaded by every shard."""
    import csv
    import io

    from crack_model.core import layout
    from crack_model.pipelines.nightly import finalize_batches, pin_model, score_work_item
    from crack_model.registry.versions import Registry

    store = LocalStore(tmp_path / "store")
    registry = Registry(store)
    version = registry.register(trained_model.output_dir, "crack", actor="tester")
    registry.add_gate_result("crack", version, report={"decision": "promote"}, html="<p>gate</p>",
                             approved_runtimes=["litert-fp32", "keras"])  # fmt: skip
    uri = f"models:/crack/{version}"
    with pytest.raises(CrackModelError, match=r"runtime litert-int8 is not approved .*litert-fp32, keras"):
        pin_model(store, uri, "litert-int8")
    assert pin_model(store, uri)["runtime"] == "auto"
    pinned = pin_model(store, uri, "keras")
    assert (pinned["uri"], pinned["runtime"]) == (uri, "keras")

    for path in sorted((synth_data / "Positive").glob("*.jpg"))[:3]:
        store.write(f"incoming/b1/{path.name}", path.read_bytes())
    report = score_work_item(store, {"batch_id": "b1", "shard": "0/1"}, pinned["uri"], runtime=pinned["runtime"])
    finalize_batches(store, [report])
    rows = list(csv.DictReader(io.StringIO(store.read(layout.results_key("b1", layout.PREDICTIONS)).decode())))
    assert len(rows) == 3 and {row["runtime"] for row in rows} == {"keras"}  # auto would take litert-fp32


@pytest.mark.parametrize("kind", ["link", "file"])
def test_an_incoming_that_cannot_be_listed_is_refused_not_taken_for_an_empty_one(tmp_path, kind):
    """incoming/ as a symbolic link to the upload disk listed as empty: every night found nothing and said nothing."""
    disk = uploads(LocalStore(tmp_path / "disk"), {"2026-11-24": 2}).root / "incoming"
    store = LocalStore(tmp_path / "store")
    store.write("models/crack/aliases.json", b"{}")
    if kind == "link":
        (store.root / "incoming").symlink_to(disk)
    else:
        (store.root / "incoming").write_bytes(b"not a folder")

    said = "symbolic link" if kind == "link" else f"{store.root / 'incoming'} is a file, not a folder"
    with pytest.raises(CrackModelError, match=f"no batch can be found: .*{said}"):
        find_new_batches(store)


def test_validation_measures_at_the_scale_the_batch_is_scored_at(tmp_path, monkeypatch):
    """Blur and contrast are measured on the tiles scoring cuts: within the run's budget, not always 512 (a 50 MP
    photo scored at its own scale was measured shrunk, where it reads sharper); a budget out of range is refused."""
    from types import SimpleNamespace

    from crack_model.pipelines import nightly

    configs = []

    def validate_batch(uri, batch_id, suite, *, reference, profile_config):
        configs.append(profile_config)
        return SimpleNamespace(outcome="passed", reasons=[], quarantined=[], counts={}, drift=None, summary=str)

    monkeypatch.setattr(nightly, "validate_batch", validate_batch)
    nightly.validate_incoming(str(tmp_path), "b1", max_tiles=2048)
    nightly.validate_incoming(str(tmp_path), "b1")
    assert [config.tiles.max_tiles for config in configs] == [2048, 512]
    with pytest.raises(CrackModelError, match="from 64 to 2048 tiles per photo, got 4096"):
        nightly.validate_incoming(str(tmp_path), "b1", max_tiles=4096)


def test_a_whole_max_tiles_param_is_taken_and_a_wrong_one_is_refused_naming_the_param():
    """A triggered run's conf {"max_tiles": 1000.0} passed the param's schema, then failed: "must be a whole number of
    tiles, got 1000.0", which it is, and without naming the param."""
    from crack_model.pipelines.nightly import chosen_tile_budget

    assert chosen_tile_budget(1000.0) == 1000 and type(chosen_tile_budget(1000.0)) is int
    said = (r"param max_tiles is 1000\.5: the tile budget must be an integer from 64 to 2048 tiles per photo, got "
            r"1000\.5 .*; trigger the run with an integer number of tiles, or null for the default \(Variable "
            r"crack_max_tiles, else 512\)")  # fmt: skip
    with pytest.raises(CrackModelError, match=said):
        chosen_tile_budget(1000.5, variable_name="crack_max_tiles")
    with pytest.raises(CrackModelError, match=r"^Variable crack_max_tiles is '1e3': .*must be an integer from 64"):
        chosen_tile_budget(None, "1e3", "crack_max_tiles")


def test_a_store_that_holds_nothing_is_named_as_such_not_as_a_model_without_champion(tmp_path):
    """A mistyped store param or Variable crack_store: resolve_model said "model crack has no champion in ...: promote
    a version first", sending the operator to the registry instead of to the setting; a store with a registry and no
    champion still says so."""
    from crack_model.pipelines.nightly import pin_model

    with pytest.raises(CrackModelError, match=r"the store .*nowhere holds nothing at all: check the store's path"):
        pin_model(str(tmp_path / "nowhere"), "models:/crack@champion")
    LocalStore(tmp_path / "store").write("incoming/b1/a.jpg", b"jpeg")
    with pytest.raises(CrackModelError, match="has no champion"):
        pin_model(str(tmp_path / "store"), "models:/crack@champion")


def test_a_new_store_that_holds_nothing_yet_is_told_what_fills_it(tmp_path):
    """Compose creates the bucket empty: the first night of a deployment said only "check the store's path or
    bucket", of a store rightly set, and not that a new store needs a champion trained from labeled photos."""
    from crack_model.pipelines.nightly import pin_model

    (tmp_path / "new").mkdir()
    with pytest.raises(CrackModelError, match=r"if it is a new store, put labeled photos under labeled/<class>/ and "
                       r"train a champion \(the crack_retraining DAG\)"):  # fmt: skip
        pin_model(str(tmp_path / "new"), "models:/crack@champion")
