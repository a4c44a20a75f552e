"""Retraining starts the candidate from the registry's champion, and the CLI can turn that off."""

from __future__ import annotations

import csv
import io
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.pipelines import retraining
from crack_model.pipelines.retraining import train_candidate
from crack_model.registry.versions import Registry
from crack_model.training.train import train


def store_with_champion(root: Path, pool: Path, model_dir: Path) -> tuple[Path, Registry, str]:
    """A local store whose labeled/ is ``pool`` and whose champion is the model in ``model_dir``."""
    store = root / "store"
    shutil.copytree(pool, store / "labeled")
    registry = Registry(store)
    champion = registry.register(model_dir, "crack", actor="tester")
    registry.promote("crack", champion, expected_current=None, actor="tester", reason="the first model")
    return store, registry, champion


def train_small(store: Path, root: Path, recipe: TrainConfig, **options: Any) -> dict[str, Any]:
    """train_candidate with the trained_model fixture's network (64 px, random base seeded alike), without the
    LiteRT exports (most of a small training's time; where a candidate starts has nothing to do with them)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retraining, "train", partial(train, export_runtimes=False))
        return train_candidate(store, root / "work", data_config=DataConfig(image_size=64, batch_size=16),
                               model_config=ModelConfig(weights="none", alpha=0.35), train_config=recipe,
                               feature_cache_dir=root / "cache", **options)  # fmt: skip


@pytest.mark.parametrize("from_champion", [True, False])
def test_the_candidate_starts_from_the_champions_head_unless_told_not_to(trained_model, synth_data, tmp_path,
                                                                          monkeypatch, from_champion):  # fmt: skip
    """The champion's serving files are fetched from the registry and its head is the start, as recorded."""
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "model-cache"))  # fetched versions are cached
    store, registry, champion = store_with_champion(tmp_path, synth_data, trained_model.output_dir)
    result = train_small(store, tmp_path, TrainConfig(epochs=1, anchor_weight=0.3), start_from_champion=from_champion)
    started = result["started_from"]
    if from_champion:
        # The pool is what the champion trained on: its train images, read from its registered split.csv, stay there.
        with open(trained_model.output_dir / "split.csv", newline="", encoding="utf-8") as handle:
            trained_on = sum(row["split"] == "train" for row in csv.DictReader(handle))
        assert started == {"model": registry.version_url("crack", champion), "version": champion, "used": True,
                           "anchor_weight": 0.3, "kept_in_train": trained_on}  # fmt: skip
        assert trained_on > 0
    else:
        assert started is None
    assert registry.read_version("crack", result["version"])["started_from"] == started  # what the model page reads
    # The version names what it learned from as the store has it, not as the deleted local copy did.
    uris = [row["uri"] for row in csv.DictReader(io.StringIO(registry.store.read(
        registry.version_key("crack", result["version"], "split.csv")).decode()))]  # fmt: skip
    assert uris and all(uri.startswith(f"{store / 'labeled'}/") for uri in uris)


def registered_champion(tmp_path: Path, monkeypatch) -> tuple[Registry, str, Path]:
    """A registered version (a card, a model.keras and a split.csv; no TensorFlow) and its folder in the store."""
    from crack_model.core.model_card import ModelCard

    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "cache"))  # fetched copies are cached per version
    folder = tmp_path / "model"
    folder.mkdir()
    ModelCard(version="20261101T020000Z-aaaa1111").save(folder)
    (folder / "model.keras").write_bytes(b"weights as registered")
    (folder / "split.csv").write_text("uri,label,sha256,split,slice\na.jpg,Positive,aaa,train,metu\n")
    registry = Registry(tmp_path / "store")
    version = registry.register(folder, "crack", actor="tester")
    return registry, version, tmp_path / "store" / "models" / "crack" / "versions" / version


def test_a_champion_whose_split_csv_cannot_be_had_is_still_the_start(tmp_path, caplog, monkeypatch):
    """Its split.csv only keeps what it trained on in train: without it the start stands, with a warning."""
    from crack_model.pipelines.retraining import champion_start

    registry, version, stored = registered_champion(tmp_path, monkeypatch)
    (stored / "split.csv").write_text("changed since")
    with caplog.at_level("WARNING"):
        folder, record = champion_start(registry, "crack", version)
    assert folder is not None and (folder / "model.keras").is_file() and record is None
    assert not (folder / "split.csv").exists() and "split.csv cannot be fetched" in caplog.text


def test_a_champion_whose_files_fail_their_hashes_is_no_start(tmp_path, caplog, monkeypatch):
    """Retraining goes on afresh, with a warning naming the champion: a new candidate can still replace it."""
    from crack_model.pipelines.retraining import champion_start

    registry, version, stored = registered_champion(tmp_path, monkeypatch)
    (stored / "model.keras").write_bytes(b"changed since")
    with caplog.at_level("WARNING"):
        folder, record = champion_start(registry, "crack", version)
    assert folder is None and f"cannot fetch champion {version}" in caplog.text
    assert record["version"] == version and record["used"] is False and "cannot be fetched" in record["reason"]


def test_a_champion_that_cannot_be_fetched_leaves_a_candidate_trained_afresh_and_why(
    trained_model, synth_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("CRACK_MODEL_CACHE", str(tmp_path / "model-cache"))  # fetched versions are cached
    store, registry, champion = store_with_champion(tmp_path, synth_data, trained_model.output_dir)
    (store / "models" / "crack" / "versions" / champion / "model.keras").write_bytes(b"changed since")
    result = train_small(store, tmp_path, TrainConfig(epochs=1))
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
