"""A retried train_candidate after its candidate was registered: handed on, not trained and registered again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crack_model.core.model_card import ModelCard
from crack_model.pipelines.retraining import train_candidate
from crack_model.registry.versions import Registry

METRICS = {"test": {"crack_recall": 0.97, "accuracy": 0.95}, "per_slice": {"test": {"metu": {"images": 8}}},
           "started_from": None}  # fmt: skip


def registered(tmp_path: Path, run_id: str, **metrics: object) -> tuple[Registry, str]:
    """A version registered by ``run_id`` as train_candidate registers one (a card, a model, metrics.json)."""
    folder = tmp_path / "model"
    folder.mkdir()
    ModelCard(version="20261124T030000Z-abcd1234", threshold=0.42, approved_runtimes=["keras"]).save(folder)
    (folder / "model.keras").write_bytes(b"weights")
    (folder / "metrics.json").write_text(json.dumps({**METRICS, **metrics}))
    registry = Registry(tmp_path / "store")
    return registry, registry.register(folder, "crack", actor="airflow:crack_retraining", run_id=run_id)


@pytest.fixture()
def trainings(monkeypatch) -> list[str]:
    """Every download of the pool for a training (none must happen for a run that registered its candidate)."""
    started: list[str] = []

    def download(*args, **kwargs):
        started.append("download")
        raise RuntimeError("training started")

    monkeypatch.setattr("crack_model.pipelines.retraining.download_labeled", download)
    return started


@pytest.mark.parametrize("challenger_moved", [False, True])
def test_a_retry_hands_on_the_version_its_run_registered(tmp_path, trainings, challenger_moved):
    """The try that died after registering (before or after pointing challenger) is not trained again: one run, one
    version, and challenger on it."""
    registry, version = registered(tmp_path, "manual__2026-11-24")
    if challenger_moved:
        registry.promote("crack", version, "challenger", expected_current=None, actor="t", reason="the first try")
    result = train_candidate(tmp_path / "store", tmp_path / "work", run_id="manual__2026-11-24",
                             actor="airflow:crack_retraining")  # fmt: skip
    assert trainings == []
    assert registry.version_names("crack") == [version]
    assert registry.aliases("crack").get("challenger") == version
    assert result == {"model_name": "crack", "version": version, "threshold": 0.42, "approved_runtimes": ["keras"],
                      "split_crack_recall": 0.97, "split_accuracy": 0.95, "split_per_slice": {"metu": {"images": 8}},
                      "model_uri": registry.version_url("crack", version), "started_from": None}  # fmt: skip


def test_another_run_trains_its_own_candidate(tmp_path, trainings):
    """Only the run that registered a version finds it; the CLI (no run id) always trains."""
    registered(tmp_path, "manual__2026-11-24")
    for run_id in ("scheduled__2026-11-25", None):
        with pytest.raises(RuntimeError, match="training started"):
            train_candidate(tmp_path / "store", tmp_path / "work", run_id=run_id)
    assert trainings == ["download", "download"]


def test_a_cleared_run_whose_pool_was_validated_again_trains_anew(tmp_path, trainings):
    """Clearing a run in Airflow keeps its id: the retry handed on the version trained on the pool before the
    operator fixed it. Only a try of the same pool validation hands it on."""
    _, version = registered(tmp_path, "manual__2026-11-24", pool_validated_at="2026-11-24T02:00:00Z")
    same = {"profile": None, "validated_at": "2026-11-24T02:00:00Z"}
    again = {"profile": None, "validated_at": "2026-11-24T09:30:00Z"}
    assert train_candidate(tmp_path / "store", tmp_path / "work", run_id="manual__2026-11-24",
                           validated=same)["version"] == version  # fmt: skip
    with pytest.raises(RuntimeError, match="training started"):
        train_candidate(tmp_path / "store", tmp_path / "work", run_id="manual__2026-11-24", validated=again)
    assert trainings == ["download"]
