"""Versions against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import pytest

from crack_model.registry.naming import VersionNotFoundError
from crack_model.registry.versions import Registry
from tests.unit.registry.test_versions import _assert_one_winner, _race, registered

pytestmark = pytest.mark.integration


def test_concurrent_promotions_on_s3_have_one_winner(s3_bucket, tmp_path):
    """Threads promote through S3 conditional PUTs (loopback S3 server): one winner, a consistent log."""
    registry = Registry(f"s3://{s3_bucket}/registry")
    versions = registered(registry, tmp_path, *(f"v{index}" for index in range(7)))
    registry.promote("crack", "v0", expected_current=None, actor="ci", reason="first")
    won, lost = _race(registry, versions[1:], "v0")
    _assert_one_winner(registry, won, lost, versions[1:])


def s3_requests(registry: Registry) -> list[str]:
    """The S3 operations the registry's client sends from now on, in order (a botocore event hook)."""
    sent: list[str] = []
    client = registry.store.client  # type: ignore[attr-defined]
    client.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    return sent


def test_a_version_and_its_gate_report_are_read_with_one_get_each(s3_bucket, tmp_path):
    """Each read sent a HEAD before its GET (four requests a version for list_versions): now one GET each, with the
    same answers for a version or a report that is not there."""
    registry = Registry(f"s3://{s3_bucket}/registry")
    registered(registry, tmp_path, "v1")
    sent = s3_requests(registry)

    assert registry.read_version("crack", "v1")["version"] == "v1"
    assert registry.gate_report("crack", "v1") is None
    assert sent == ["GetObject", "GetObject"]

    sent.clear()
    with pytest.raises(VersionNotFoundError, match=r"model crack has no registered version v9 in .* \(latest: v1\)"):
        registry.read_version("crack", "v9")
    assert sent == ["GetObject", "ListObjectsV2", "HeadObject"]  # then the latest versions, for the message


def test_the_versions_are_found_from_a_listing_of_their_folders_not_of_every_file(s3_bucket, tmp_path):
    """version_names listed every file of every version (1,200 keys for 60 versions of 20 files): now one listing of
    the folders (one page) and a HEAD a folder; list_versions reads each version.json once, with no HEAD first."""
    import boto3

    registry = Registry(f"s3://{s3_bucket}/registry")
    registered(registry, tmp_path, "v1", "v2")
    client = boto3.client("s3")
    for index in range(1_200):  # more than a page of files in one version
        client.put_object(Bucket=s3_bucket, Key=f"registry/models/crack/versions/v2/logs/{index:04d}.txt", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="registry/models/crack/versions/v3/registration_claim.json", Body=b"{}")
    sent = s3_requests(registry)

    assert registry.version_names("crack") == ["v1", "v2"]
    assert sorted(sent) == ["HeadObject"] * 3 + ["ListObjectsV2"]

    sent.clear()
    registry.aliases("crack")
    by_aliases = list(sent)
    sent.clear()
    assert [summary["version"] for summary in registry.list_versions("crack")] == ["v1", "v2"]
    # v1, v2: version.json and gate_report.json (not there); v3: version.json (not there).
    assert sorted(sent) == sorted([*by_aliases, "ListObjectsV2", *["GetObject"] * 5])
