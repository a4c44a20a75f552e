"""Storage against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import hashlib
from unittest.mock import patch

import pytest

from crack_model.core import s3_store, uploads
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectTooLargeError, PreconditionFailedError
from crack_model.core.storage import open_store
from crack_model.core.uploads import UnservableObjectError
from crack_model.registry.versions import Registry
from tests.conftest import aws_cli

pytestmark = pytest.mark.integration


def test_s3_round_trip_over_http(s3_bucket, s3_env, tmp_path):
    """Write, list, head, read on S3 over HTTP; the AWS CLI sees the same objects."""
    store = open_store(f"s3://{s3_bucket}/root")
    store.write("incoming/b1/a photo ü.jpg", b"abc", content_type="image/jpeg")
    store.write("incoming/b10/other.jpg", b"zzz")
    assert [info.key for info in store.list("incoming/b1")] == ["incoming/b1/a photo ü.jpg"]
    assert store.read("incoming/b1/a photo ü.jpg") == b"abc"
    assert store.head("incoming/b1/a photo ü.jpg").size == 3
    assert store.head("missing.jpg") is None
    with pytest.raises(CrackModelError, match="object not found"):
        store.read("missing.jpg")
    assert store.folders("incoming") == ["b1", "b10"]
    store.client.put_object(Bucket=s3_bucket, Key="root/incoming/", Body=b"")  # a console's folder marker
    store.write("incoming/loose?.jpg", b"x")
    assert store.files("incoming") == ["loose?.jpg"] and store.folders("incoming") == ["b1", "b10"]
    listing = aws_cli(s3_env, "s3", "ls", "--recursive", f"s3://{s3_bucket}/root/")
    assert "root/incoming/b1/a photo ü.jpg" in listing
    aws_cli(s3_env, "s3", "cp", f"s3://{s3_bucket}/root/incoming/b1/a photo ü.jpg", str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == b"abc"


def test_s3_a_mistyped_bucket_is_not_read_as_a_missing_object(s3_bucket, s3_env):
    """A HEAD's 404 does not say whether the key or the bucket is missing: "no champion" would be the wrong hint."""
    with pytest.raises(CrackModelError, match=f"bucket {s3_bucket}-typo at .* does not exist: check the store URI"):
        open_store(f"s3://{s3_bucket}-typo/root").head("models/crack/aliases.json")
    with pytest.raises(CrackModelError, match="does not exist: check the store URI"):
        Registry(f"s3://{s3_bucket}-typo").aliases("crack")
    store = open_store(f"s3://{s3_bucket}/root")
    assert store.head("models/crack/aliases.json") is None and store.head("other.json") is None


def test_s3_a_read_within_a_limit_refuses_a_larger_object_by_its_content_length(s3_bucket, s3_env):
    """GetObject's ContentLength is the size of what the read gets: over the limit, the body is never read."""
    store = open_store(f"s3://{s3_bucket}")
    store.write("incoming/b1/scan.tif", b"x" * 2048)
    with pytest.raises(ObjectTooLargeError, match=r"scan\.tif is 2,048 bytes, over the 2,047") as refused:
        store.read("incoming/b1/scan.tif", max_bytes=2047)
    assert refused.value.size == 2048
    assert store.read("incoming/b1/scan.tif", max_bytes=2048) == b"x" * 2048
    with (
        patch.object(uploads, "MAX_UPLOAD_BYTES", 2047),
        pytest.raises(UnservableObjectError, match="too large: 2,048 bytes, over the limit"),
    ):
        uploads.read_upload(store, "incoming/b1/scan.tif")


def test_s3_uploads_named_like_a_local_stores_own_files_are_uploads(s3_bucket, s3_env):
    """Only _SUCCESS, _DONE, _READY and results' _parts/ are bookkeeping in a bucket: an upload named like the local
    store's temporary or side files is an upload, with a row."""
    store = open_store(f"s3://{s3_bucket}")
    for name in [".tmp-scan.jpg", f".tmp-{'a' * 32}", ".longname-0123456789abcdef", "_READY", "a.jpg"]:
        store.write(f"incoming/b1/{name}", b"x")
    assert [info.key.rpartition("/")[2] for info in uploads.list_uploads(store, "b1")] == [
        ".longname-0123456789abcdef",
        f".tmp-{'a' * 32}",
        ".tmp-scan.jpg",
        "a.jpg",
    ]


def test_s3_a_kept_training_pool_copies_again_only_what_changed(s3_bucket, s3_env, tmp_path, monkeypatch):
    """A pool kept between retraining runs is checked against each object's MD5 ETag: an unchanged photo is not
    downloaded again, one replaced by another of the same size is."""
    from crack_model.core.s3_store import S3Store
    from crack_model.pipelines.pool_copy import download_labeled

    store = open_store(f"s3://{s3_bucket}")
    store.write("labeled/Positive/a.bmp", b"crack one")
    store.write("labeled/Negative/b.bmp", b"clean one")
    pool = download_labeled(store, "labeled", tmp_path / "pool", ["Negative", "Positive"])
    downloaded = []
    real_download = S3Store.download
    monkeypatch.setattr(
        S3Store, "download", lambda self, key, path: downloaded.append(key) or real_download(self, key, path)
    )
    store.write("labeled/Positive/a.bmp", b"crack two")

    download_labeled(store, "labeled", pool, ["Negative", "Positive"])

    assert downloaded == ["labeled/Positive/a.bmp"] and (pool / "Positive" / "a.bmp").read_bytes() == b"crack two"


def test_s3_multipart_upload_of_a_large_object(s3_bucket, s3_env, monkeypatch, tmp_path):
    """Objects above the threshold go up in parts and come back byte-identical (checked with the CLI)."""
    monkeypatch.setattr(s3_store, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    data = bytes(range(256)) * (12 * 1024 * 1024 // 256)
    store = open_store(f"s3://{s3_bucket}")
    store.write("models/big.bin", data)
    head = store.head("models/big.bin")
    assert head.size == len(data)
    assert "-" in head.etag  # multipart ETags are "<md5 of part md5s>-<parts>"
    aws_cli(s3_env, "s3", "cp", f"s3://{s3_bucket}/models/big.bin", str(tmp_path / "big.bin"))
    assert hashlib.sha256((tmp_path / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()


def test_s3_conditional_write(s3_bucket, s3_env):
    """If-None-Match creates once; If-Match with a stale ETag loses."""
    store = open_store(f"s3://{s3_bucket}")
    store.write_if_match("models/aliases.json", b"v1", None)
    with pytest.raises(PreconditionFailedError):
        store.write_if_match("models/aliases.json", b"again", None)
    etag = store.head("models/aliases.json").etag
    store.write_if_match("models/aliases.json", b"v2", etag)
    with pytest.raises(PreconditionFailedError):
        store.write_if_match("models/aliases.json", b"v3", etag)
    assert store.read("models/aliases.json") == b"v2"


def test_s3_keys_that_are_not_valid_keys_are_listed_with_a_problem(s3_bucket, s3_env):
    """Uploads named a/../b, a//b, ./b or with a backslash list with a reason instead of failing downstream."""
    import boto3

    odd = [
        "incoming/b1/sub/../evil.jpg",
        "incoming/b1//double.jpg",
        "incoming/b1/./dot.jpg",
        "incoming/b1/site\\north.jpg",
    ]
    client = boto3.client("s3")
    for key in [*odd, "incoming/b1/_DSC1234.JPG"]:
        client.put_object(Bucket=s3_bucket, Key=f"root/{key}", Body=b"x")
    store = open_store(f"s3://{s3_bucket}/root")
    found = {info.key: info.problem for info in store.list("incoming/b1/")}
    assert sorted(found) == sorted([*odd, "incoming/b1/_DSC1234.JPG"])
    assert found["incoming/b1/_DSC1234.JPG"] is None
    assert "'..' segments" in found["incoming/b1/sub/../evil.jpg"]
    assert "'//'" in found["incoming/b1//double.jpg"]
    assert "'..' segments" in found["incoming/b1/./dot.jpg"]
    assert "backslash" in found["incoming/b1/site\\north.jpg"]


def test_s3_an_object_whose_key_ends_in_a_slash_is_listed_unless_it_is_an_empty_folder_marker(s3_bucket, s3_env):
    """A console's empty folder marker is no upload; bytes under a key ending in '/' are one, with a reason."""
    import boto3

    client = boto3.client("s3")
    for key, body in [
        ("incoming/b1/sub/", b""),
        ("incoming/b1/photo.jpg/", b"jpeg bytes"),
        ("incoming/b1/ok.jpg", b"x"),
    ]:
        client.put_object(Bucket=s3_bucket, Key=f"root/{key}", Body=body)
    store = open_store(f"s3://{s3_bucket}/root")
    found = {info.key: info.problem for info in store.list("incoming/b1/")}
    assert sorted(found) == ["incoming/b1/ok.jpg", "incoming/b1/photo.jpg/"]
    assert found["incoming/b1/ok.jpg"] is None
    assert "trailing '/'" in found["incoming/b1/photo.jpg/"]


def test_s3_a_key_ending_in_a_slash_is_validated_as_itself_and_its_quarantine_copy_is_refused(
    s3_bucket, s3_env, metu_sample
):
    """S3 serves "photo.jpg/" as "photo.jpg" once the slash is dropped: its quarantine entry says why it is not
    copied, and nothing is written to the quarantine key "photo.jpg" would have."""
    import json

    import boto3

    from crack_model.quality.batch_validation import validate_batch
    from crack_model.quality.thresholds import ValidationThresholds

    client = boto3.client("s3")
    photos = sorted((metu_sample / "Negative").glob("*.jpg"))[:4]
    for path in photos:
        client.put_object(Bucket=s3_bucket, Key=f"root/incoming/b1/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=s3_bucket, Key=f"root/incoming/b1/{photos[0].name}/", Body=b"other bytes")
    validate_batch(f"s3://{s3_bucket}/root", "b1", thresholds=ValidationThresholds(max_bad_fraction=0.5))
    store = open_store(f"s3://{s3_bucket}/root")
    [held] = json.loads(store.read("quarantine/b1/quarantine.json"))["objects"]
    assert held["key"] == f"incoming/b1/{photos[0].name}/"
    assert "trailing '/'" in held["quarantine_error"] and "quarantine_key" not in held
    assert [info.key for info in store.list("quarantine/b1/")] == ["quarantine/b1/quarantine.json"]


def test_s3_decomposed_unicode_keys_read_back_as_listed(s3_bucket, s3_env):
    """S3 keys are exact bytes: an NFD key an uploader wrote lists, reads and heads by that key."""
    import unicodedata

    import boto3

    decomposed = unicodedata.normalize("NFD", "incoming/b1/Übergang.jpg")
    boto3.client("s3").put_object(Bucket=s3_bucket, Key=decomposed, Body=b"mac")
    store = open_store(f"s3://{s3_bucket}")
    [info] = store.list("incoming/b1/")
    assert (info.key, info.problem) == (decomposed, None)
    assert store.read(info.key) == b"mac"
    assert store.head(info.key).size == 3


def test_s3_composed_and_decomposed_twins_each_keep_their_own_overlay(s3_bucket, s3_env):
    """On S3 an NFC and an NFD key are two uploads with two overlays: a merge keeps each by its own row."""
    import unicodedata

    from crack_model.core import layout
    from crack_model.serving.batch_results import _drop_overlays_of_unscored

    store = open_store(f"s3://{s3_bucket}")
    composed, decomposed = (unicodedata.normalize(form, "incoming/b1/Übergang.jpg") for form in ("NFC", "NFD"))
    for key in (composed, decomposed):
        store.write(layout.overlay_key("b1", key), b"png")
    overlays = {layout.overlay_key("b1", key) for key in (composed, decomposed)}

    _drop_overlays_of_unscored(store, "b1", {composed: {"status": "ok"}, decomposed: {"status": "ok"}})
    assert {info.key for info in store.list("results/b1/overlays/")} == overlays
    _drop_overlays_of_unscored(store, "b1", {composed: {"status": "ok"}, decomposed: {"status": "quarantined"}})
    assert [info.key for info in store.list("results/b1/overlays/")] == [layout.overlay_key("b1", composed)]


def test_s3_url_of_a_folder_still_works_now_that_object_keys_refuse_a_trailing_slash(s3_bucket, s3_env):
    """url("incoming/b1/") names the batch folder (validation records it as its source) and does not raise."""
    store = open_store(f"s3://{s3_bucket}/root")
    assert store.url("incoming/b1/") == f"s3://{s3_bucket}/root/incoming/b1"


def test_s3_an_unchanged_labeled_pool_is_announced_once(s3_bucket, s3_env):
    """On S3 every object has an ETag, the recorded digest's too: recording it must not make the pool look changed."""
    from crack_model.pipelines.pool_watch import labeled_pool_changed, record_pool_digest

    store = open_store(f"s3://{s3_bucket}/watch")
    store.write("labeled/Positive/a.jpg", b"crack")
    store.write("labeled/Negative/b.jpg", b"clean")
    digest = labeled_pool_changed(store)
    assert digest is not None
    record_pool_digest(store, digest)
    assert [labeled_pool_changed(store) for _ in range(3)] == [None, None, None]
    store.write("labeled/Negative/b.jpg", b"cleaN")  # the same size, other bytes: only the ETag tells
    assert labeled_pool_changed(store) not in (None, digest)
