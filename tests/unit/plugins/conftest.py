"""Airflow is imported with a private AIRFLOW_HOME (its config never lands in the user's home); no services."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(scope="session", autouse=True)
def airflow_home(tmp_path_factory):
    """A throwaway AIRFLOW_HOME for the first Airflow import of the session (later ones reuse the loaded config)."""
    with pytest.MonkeyPatch.context() as patch:
        if "airflow" not in sys.modules:
            patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
            patch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        yield


@pytest.fixture()
def local_store(tmp_path):
    """A local store with two upload batches, ``b1`` (scored: has _SUCCESS) and ``b2`` (not yet)."""
    for batch_id in ("b1", "b2"):
        folder = tmp_path / "incoming" / batch_id
        folder.mkdir(parents=True)
        (folder / "0001.jpg").write_bytes(b"\xff\xd8 not really a photo")
    (tmp_path / "results" / "b1").mkdir(parents=True)
    (tmp_path / "results" / "b1" / "_SUCCESS").write_bytes(b"")
    return tmp_path
