"""Versions against S3 over real HTTP (moto's server on loopback)."""

from __future__ import annotations

import pytest

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
