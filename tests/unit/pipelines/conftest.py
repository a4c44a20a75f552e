"""The ops view's store (tests/unit/pipelines/ops_store.py), for the overview, history and page tests."""

from __future__ import annotations

import pytest

from crack_model.core.local_store import LocalStore
from tests.unit.pipelines.ops_store import build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """Four nights written by the workflow's own writers (one store per test module: tests may add to it)."""
    with pytest.MonkeyPatch.context() as patch:
        return build_store(tmp_path_factory.mktemp("ops-store"), patch)
