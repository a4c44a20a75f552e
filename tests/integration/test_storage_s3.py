"""Storage against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import hashlib

import pytest

from crack_model.core import s3_store
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import PreconditionFailedError
from crack_model.core.storage import open_store
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
    listing = aws_cli(s3_env, "s3", "ls", "--recursive", f"s3://{s3_bucket}/root/")
    assert "root/incoming/b1/a photo ü.jpg" in listing
    aws_cli(s3_env, "s3", "cp", f"s3://{s3_bucket}/root/incoming/b1/a photo ü.jpg", str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == b"abc"


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
