"""Retraining starts the candidate from the registry's champion, and the CLI can turn that off."""

from __future__ import annotations

import shutil

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.pipelines.retraining import train_candidate
from crack_model.registry.versions import Registry


def test_the_candidate_starts_from_the_champions_head(trained_model, synth_data, tmp_path):
    """The champion's serving files are fetched from the registry and its head is the start, as recorded."""
    store = tmp_path / "store"
    shutil.copytree(synth_data, store / "labeled")
    registry = Registry(store)
    champion = registry.register(trained_model.output_dir, "crack", actor="tester")
    registry.promote("crack", champion, expected_current=None, actor="tester", reason="the first model")
    result = train_candidate(
        store, tmp_path / "work", data_config=DataConfig(image_size=64, batch_size=16),
        model_config=ModelConfig(weights="none", alpha=0.35), train_config=TrainConfig(epochs=1, anchor_weight=0.3),
        feature_cache_dir=tmp_path / "cache",
    )  # fmt: skip
    started = result["started_from"]
    assert (started["version"], started["used"], started["anchor_weight"]) == (champion, True, 0.3)
    assert result["version"] != champion


def test_the_retrain_command_passes_fresh_and_the_anchor_weight():
    from crack_model.cli.main import build_parser
    from crack_model.cli.retrain_command import retrain_settings

    parse = build_parser().parse_args
    default = retrain_settings(parse(["retrain", "--store", "s"]))
    assert (default["start_from_champion"], default["anchor_weight"]) == (True, TrainConfig.anchor_weight)
    chosen = retrain_settings(parse(["retrain", "--store", "s", "--fresh", "--anchor-weight", "0.5"]))
    assert (chosen["start_from_champion"], chosen["anchor_weight"]) == (False, 0.5)
