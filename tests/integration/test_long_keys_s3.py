"""Uploads whose keys are near S3's 1,024-byte limit, on S3 over real HTTP (moto's server on loopback): the held-back
one gets its quarantine copy, the crack one its overlay, each under a name from the digest of its key."""

from __future__ import annotations

import pytest

from crack_model.core import layout
from crack_model.core.documents import QuarantineManifest
from crack_model.core.storage import open_store
from crack_model.pipelines.overlays import draw_overlays, overlay_for_key
from crack_model.quality import batch_validation
from crack_model.quality.batch_validation import validate_batch
from crack_model.serving.batch import score_shard
from crack_model.serving.scorer import load_scorer
from tests.unit.core.test_layout import upload_key_of

pytestmark = pytest.mark.integration


def test_long_keys_get_their_copy_and_overlay_on_s3(s3_bucket, metu_sample, trained_model, monkeypatch):
    """Validate, score the nightly way, draw overlays twice: nothing fails, and every key is within S3's limit."""
    import boto3

    monkeypatch.setattr(batch_validation, "write_data_docs", lambda *args, **kwargs: {"index": None})
    client = boto3.client("s3")
    for index, path in enumerate(sorted((metu_sample / "Negative").glob("*.jpg"))[:40]):
        client.put_object(Bucket=s3_bucket, Key=f"incoming/b1/photo-{index:02d}.jpg", Body=path.read_bytes())
    crack, held = upload_key_of(1020, "crack.jpg"), upload_key_of(1020, "cut.jpg")
    photo = sorted((metu_sample / "Positive").glob("*.jpg"))[0].read_bytes()
    client.put_object(Bucket=s3_bucket, Key=crack, Body=photo)
    client.put_object(Bucket=s3_bucket, Key=held, Body=photo[:1000])  # truncated: held back
    store = open_store(f"s3://{s3_bucket}")

    validate_batch(store.uri, "b1")
    scorer = load_scorer(str(trained_model.output_dir))
    scorer.card.photo_threshold, scorer.card.threshold = None, 0.0  # every image a crack
    score_shard(store.uri, "b1", scorer)
    first, second = draw_overlays(store.uri, "b1"), draw_overlays(store.uri, "b1")

    manifest = QuarantineManifest.read(store, layout.quarantine_key("b1", layout.QUARANTINE_MANIFEST))
    copy_key = layout.quarantine_copy_key("b1", layout.relative_to_batch(held, "b1"))
    assert [(entry.key, entry.quarantine_key) for entry in manifest.entries] == [(held, copy_key)]
    assert client.get_object(Bucket=s3_bucket, Key=copy_key)["Body"].read() == photo[:1000]
    assert (first.drawn, first.failed, second.drawn, second.kept, second.failed) == (41, 0, 0, 41, 0)
    overlay = layout.overlay_key("b1", crack)
    assert overlay.startswith("results/b1/overlays/long-keys.png/")
    assert client.get_object(Bucket=s3_bucket, Key=overlay)["Body"].read().startswith(b"\x89PNG")
    client.delete_object(Bucket=s3_bucket, Key=overlay)
    assert overlay_for_key(store.uri, overlay) == client.get_object(Bucket=s3_bucket, Key=overlay)["Body"].read()
