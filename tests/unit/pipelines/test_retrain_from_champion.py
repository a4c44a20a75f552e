"""Retraining starts the candidate from the registry's champion, and the CLI can turn that off."""

from __future__ import annotations

import shutil

import pytest

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.pipelines.retraining import train_candidate
from crack_model.registry.versions import Registry


@pytest.mark.parametrize("from_champion", [True, False])
def test_the_candidate_starts_from_the_champions_head_unless_told_not_to(trained_model, synth_data, tmp_path,
                                                                          monkeypatch, from_champion):  # fmt: skip
    """The champion's serving files are fetched from the registry and its head is the start, as recorded."""
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "model-cache"))
    store = tmp_path / "store"
    shutil.copytree(synth_data, store / "labeled")
    registry = Registry(store)
    champion = registry.register(trained_model.output_dir, "crack", actor="tester")
    registry.promote("crack", champion, expected_current=None, actor="tester", reason="the first model")
    result = train_candidate(
        store, tmp_path / "work", data_config=DataConfig(image_size=64, batch_size=16),
        model_config=ModelConfig(weights="none", alpha=0.35), train_config=TrainConfig(epochs=1, anchor_weight=0.3),
        feature_cache_dir=tmp_path / "cache", start_from_champion=from_champion,
    )  # fmt: skip
    started = result["started_from"]
    if from_champion:
        assert started == {"model": registry.version_url("crack", champion), "version": champion, "used": True,
                           "anchor_weight": 0.3}  # fmt: skip
    else:
        assert started is None
    assert registry.read_version("crack", result["version"])["started_from"] == started  # what the model page reads


def test_a_champion_whose_files_fail_their_hashes_is_no_start(tmp_path, caplog, monkeypatch):
    """Retraining goes on afresh, with a warning naming the champion: a new candidate can still replace it."""
    from crack_model.core.model_card import ModelCard
    from crack_model.pipelines.retraining import champion_start

    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "cache"))  # fetched copies are cached per version
    folder = tmp_path / "model"
    folder.mkdir()
    ModelCard(version="20261101T020000Z-aaaa1111").save(folder)
    (folder / "model.keras").write_bytes(b"weights as registered")
    registry = Registry(tmp_path / "store")
    version = registry.register(folder, "crack", actor="tester")
    (tmp_path / "store" / "models" / "crack" / "versions" / version / "model.keras").write_bytes(b"changed since")
    with caplog.at_level("WARNING"):
        folder, record = champion_start(registry, "crack", version)
    assert folder is None and f"cannot fetch champion {version}" in caplog.text
    assert record["version"] == version and record["used"] is False and "cannot be fetched" in record["reason"]


def test_a_champion_that_cannot_be_fetched_leaves_a_candidate_trained_afresh_and_why(
    trained_model, synth_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "model-cache"))
    store = tmp_path / "store"
    shutil.copytree(synth_data, store / "labeled")
    registry = Registry(store)
    champion = registry.register(trained_model.output_dir, "crack", actor="tester")
    registry.promote("crack", champion, expected_current=None, actor="tester", reason="the first model")
    (store / "models" / "crack" / "versions" / champion / "model.keras").write_bytes(b"changed since")
    result = train_candidate(
        store, tmp_path / "work", data_config=DataConfig(image_size=64, batch_size=16),
        model_config=ModelConfig(weights="none", alpha=0.35), train_config=TrainConfig(epochs=1),
        feature_cache_dir=tmp_path / "cache",
    )  # fmt: skip
    recorded = registry.read_version("crack", result["version"])["started_from"]
    assert recorded == result["started_from"]
    assert (recorded["version"], recorded["used"]) == (champion, False) and "cannot be fetched" in recorded["reason"]


def test_the_retrain_command_passes_fresh_and_the_anchor_weight():
    from crack_model.cli.main import build_parser
    from crack_model.cli.retrain_command import retrain_settings

    parse = build_parser().parse_args
    default = retrain_settings(parse(["retrain", "--store", "s"]))
    assert (default["start_from_champion"], default["anchor_weight"]) == (True, TrainConfig.anchor_weight)
    chosen = retrain_settings(parse(["retrain", "--store", "s", "--fresh", "--anchor-weight", "0.5"]))
    assert (chosen["start_from_champion"], chosen["anchor_weight"]) == (False, 0.5)
