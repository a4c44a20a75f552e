"""The real DAGs end to end with dag.test(), against S3 over HTTP (moto's server on loopback).

Credentials reach the tasks only through an Airflow connection (with MinIO-style endpoint_url),
never through AWS_* variables: this proves the hook path operators will use.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from crack_model.core import layout
from crack_model.core.storage import open_store
from crack_model.registry.versions import Registry
from demo.airflow_env import airflow_environment, migrate, run_dag
from demo.seed import seed_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NIGHT = "2026-11-24"


@pytest.fixture(scope="module")
def world(tmp_path_factory, s3_endpoint, imagenet_weights):
    """A seeded bucket, then: retrain (promoted), retrain badly (rejected), score the night."""
    import uuid

    import boto3

    saved = {key: os.environ.get(key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                                  "AWS_ENDPOINT_URL")}  # fmt: skip
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=s3_endpoint)  # fmt: skip
    bucket = f"dags-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    store = f"s3://{bucket}"
    seed_store(store)
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    environment = airflow_environment(
        tmp_path_factory.mktemp("airflow-home"),
        {"AIRFLOW_CONN_CRACK_S3": json.dumps(connection),
         "CRACK_MODEL_CACHE": str(tmp_path_factory.mktemp("model-cache")),
         # A deployment's lasting runtime: scheduled nights carry no runtime param (README, Runtimes).
         # Keras, which auto takes only when no LiteRT export is approved: its rows can come only from here.
         "AIRFLOW_VAR_CRACK_RUNTIME": "keras"},
    )  # fmt: skip
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        environment.pop(key, None)
    migrate(environment)
    common = {"store": store, "aws_conn_id": "crack_s3"}
    runs = {"good": run_dag("crack_retraining", {**common, "weights": imagenet_weights}, environment)}
    runs["champion_after_good"] = Registry(store).resolve("crack")
    # A random-init, one-epoch candidate at 96 px: as bad as at 224, and its export, photo rule and gate
    # cost about a fifth (the base's compute grows with the input's area).
    bad = {**common, "weights": "none", "epochs": 1, "image_size": 96}
    runs["bad"] = run_dag("crack_retraining", bad, environment)
    # A night whose model version does not exist fails at resolve_model and scores nothing (the batches stay new).
    missing = {**common, "model": "models:/crack/20991231T000000Z-deadbeef"}
    runs["no_model"] = run_dag("crack_nightly_scoring", missing, environment)
    runs["scoring"] = run_dag("crack_nightly_scoring", common, environment)
    # The pool watch on S3, where every object has an ETag (its recorded digest's too): announced once, then quiet.
    runs["watch"] = [run_dag("crack_labeled_pool_watch", common, environment) for _ in range(2)]
    runs["store"] = store
    yield runs
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_first_model_passes_the_floors_and_becomes_champion(world):
    """With no champion, the gate applies the floors only, promotes, and emits the model asset."""
    assert world["good"]["state"] == "success"
    assert world["good"]["tasks"]["announce_promotion"] == "success"
    assert world["good"]["tasks"]["announce_rejection"] == "skipped"
    registry = Registry(world["store"])
    report = registry.gate_report("crack", world["champion_after_good"])
    assert report["decision"] == "promote"


def test_a_worse_candidate_is_rejected_and_the_champion_untouched(world):
    """A random-init, one-epoch candidate is rejected; the run still succeeds; the champion stays."""
    assert world["bad"]["state"] == "success"
    assert world["bad"]["tasks"]["announce_rejection"] == "success"
    assert world["bad"]["tasks"]["announce_promotion"] == "skipped"
    registry = Registry(world["store"])
    assert registry.resolve("crack") == world["champion_after_good"]
    challenger = registry.resolve("crack", "challenger")
    report = registry.gate_report("crack", challenger)
    assert report["decision"] == "reject" and report["failed_checks"]
    notifications = list(open_store(world["store"]).list("models/crack/notifications/"))
    assert len(notifications) == 1


def test_nightly_scoring_scores_the_good_batch_with_the_champion(world):
    """The night's batch is validated (2 quarantined), scored in shards and finalized with _SUCCESS."""
    assert world["scoring"]["state"] == "success"
    store = open_store(world["store"])
    assert store.exists(f"results/{NIGHT}/_SUCCESS")
    rows = list(csv.DictReader(io.StringIO(store.read(f"results/{NIGHT}/predictions.csv").decode())))
    assert len(rows) == 62
    statuses = {row["status"] for row in rows}
    assert statuses == {"ok", "quarantined"}
    assert sum(row["status"] == "quarantined" for row in rows) == 2
    assert {row["model_version"] for row in rows} == {world["champion_after_good"]}
    approved = Registry(world["store"]).gate_report("crack", world["champion_after_good"])["approved_runtimes"]
    assert {"litert-int8", "litert-fp32"} & set(approved), approved  # so auto would not have taken Keras
    assert {row["runtime"] for row in rows if row["status"] == "ok"} == {"keras"}  # the Variable crack_runtime
    summary = json.loads(store.read(f"results/{NIGHT}/summary.json"))
    assert summary["crack_rate"] == pytest.approx(0.5, abs=0.1)


def test_a_batch_that_fails_validation_is_not_scored(world):
    """blank-frames fails the incoming suite: a report, no results, the run still succeeds."""
    store = open_store(world["store"])
    outcome = json.loads(store.read("validation/blank-frames/outcome.json"))
    assert outcome["outcome"] == "failed"
    assert store.exists("validation/blank-frames/report.html")
    assert not store.exists("results/blank-frames/_SUCCESS")
    run_summaries = [json.loads(store.read(info.key)) for info in store.list("runs/")]
    assert any("blank-frames" in summary["batches_failed_validation"] for summary in run_summaries)


def test_a_night_without_a_model_names_the_cause_for_every_batch(world):
    """resolve_model fails without retries; the run summary blames it, not validation, and the run shows failed."""
    run = world["no_model"]
    assert run["state"] == "failed"
    assert run["tasks"]["resolve_model"] == "failed"
    assert run["tasks"]["publish_run_summary"] == "failed"  # the summary is written, then the run turns red
    store = open_store(world["store"])
    summary = json.loads(store.read(layout.run_summary_key(run["run_id"])))
    assert set(summary["incomplete_batches"]) >= {NIGHT, "blank-frames"}
    for reason in summary["failed_batches"].values():
        assert reason.startswith("not validated or scored: no model was pinned"), reason
    assert summary["batches_scored"] == [] and summary["batches_validated"] == 0
    resolve_log = next(failure["log"] for failure in run["failures"] if failure["task"] == "resolve_model")
    assert "no registered version 20991231T000000Z-deadbeef" in Path(resolve_log).read_text()


def test_the_pool_watch_announces_a_pool_once(world):
    """First look: the pool is new, the Asset event goes out, then the digest is recorded; next look: no change."""
    first, again = world["watch"]
    assert first["state"] == again["state"] == "success"
    assert first["tasks"] == {"detect_pool_change": "success", "record_pool_digest": "success"}
    assert again["tasks"] == {"detect_pool_change": "skipped", "record_pool_digest": "skipped"}
