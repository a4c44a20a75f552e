"""Shared fixtures: synthetic data, the offline ImageNet weights, a briefly trained model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
METU_SAMPLE = SHARED / "data" / "metu-sample"
DEMO_SAMPLE = PROJECT / "demo" / "sample"


@pytest.fixture(scope="session")
def imagenet_weights() -> str:
    """The offline ImageNet weights file (tests that need real features skip without it)."""
    env = os.environ.get("CRACK_MODEL_WEIGHTS", "")
    if env and Path(env).is_file():
        return env
    if not SHARED_WEIGHTS.is_file():
        pytest.skip(f"no offline ImageNet weights at {SHARED_WEIGHTS} and no internet to download them")
    return str(SHARED_WEIGHTS)


@pytest.fixture(scope="session")
def metu_sample() -> Path:
    if not METU_SAMPLE.is_dir():
        pytest.skip(f"real sample {METU_SAMPLE} is not on this machine")
    return METU_SAMPLE


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic images per class at 64x64."""
    from crack_model.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 40, size=64, seed=1)
    return root


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, synth_data: Path):
    """A model trained for two epochs on synthetic data at 64 px (random-init base: no download)."""
    from crack_model.config import DataConfig, ModelConfig, TrainConfig
    from crack_model.train import train

    output = tmp_path_factory.mktemp("model")
    return train(
        synth_data,
        output,
        DataConfig(image_size=64, batch_size=16),
        ModelConfig(weights="none", alpha=0.35),
        TrainConfig(epochs=2),
        verbose=0,
    )
