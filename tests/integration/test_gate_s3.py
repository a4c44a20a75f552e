"""Gate against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import pytest

from crack_model.evaluation.gate import run_gate
from crack_model.evaluation.gate_checks import PROMOTE
from crack_model.registry.versions import Registry
from crack_model.serving.scorer import load_scorer
from tests.unit.evaluation.test_gate import policy

pytestmark = pytest.mark.integration


def test_gate_on_s3_with_the_store_holdout(s3_bucket, detector, holdout, tmp_path):
    """On S3 the holdout defaults to <store>/holdout/, versions download through the cache, the report lands."""
    from crack_model.core.storage import open_store

    store_uri = f"s3://{s3_bucket}/prod"
    store = open_store(store_uri)
    for path in sorted(holdout.rglob("*.jpg")):
        store.write(f"holdout/{path.relative_to(holdout).as_posix()}", path.read_bytes())
    registry = Registry(store_uri)
    registry.register(detector, "crack")
    report = run_gate(store_uri, "crack", "det-1", None, policy(), promote=True)
    assert report.decision == PROMOTE and report.promoted
    assert report.document["holdout"]["images"] == 60
    assert report.document["holdout"]["uri"] == f"{store_uri}/holdout"
    assert store.exists("models/crack/versions/det-1/gate_report.html")
    assert load_scorer("models:/crack@champion", registry=store_uri).version == "det-1"
