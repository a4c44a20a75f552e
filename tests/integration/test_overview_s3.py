"""Overview against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import pytest

from crack_model.pipelines import ops_files
from crack_model.pipelines import overview as ops
from tests.unit.pipelines.ops_store import outcome, write_validation

pytestmark = pytest.mark.integration


def test_overview_and_streaming_on_s3(s3_bucket):
    """On an S3 store (a real HTTP endpoint): batches from common prefixes, objects streamed in chunks."""
    from crack_model.core.storage import open_store

    store = open_store(f"s3://{s3_bucket}/inspections")
    store.write("incoming/b1/site/a.jpg", b"jpeg")
    write_validation(store, outcome("b1", "failed", ["too dark"], 1, None))
    store.write("results/b2/predictions.csv", b"y" * 2500)
    data = ops.overview(store.uri)
    assert {(b["batch_id"], b["state"]) for b in data["batches"]} == {("b1", "failed validation"), ("b2", "scoring")}
    assert data["champion"] is None and data["problems"] == []
    chunks = list(ops_files.iter_object(store, "results/b2/predictions.csv", chunk_size=1000))
    assert b"".join(chunks) == b"y" * 2500 and len(chunks) == 3
