"""Shared fixtures: synthetic data, the offline ImageNet weights, a briefly trained model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
SHARED_WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
METU_SAMPLE = SHARED / "data" / "metu-sample"
DEMO_SAMPLE = PROJECT / "demo" / "sample"

# The longest modules (minutes each, measured with --durations), handed out first: `make test` runs files on two
# processes (pytest-xdist, --dist loadfile) in collection order, and one of these started last would leave the
# other process idle for minutes at the end. A stale list costs only that balance.
LONGEST_FIRST = (
    "integration/test_dag_runs.py",
    "integration/test_real_sample.py",
    "integration/test_distributed.py",
    "integration/test_ops_browser.py",
    "integration/test_cli.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0].removeprefix("tests/")  # the node id is relative to the project
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def model_cache_of_this_run(tmp_path_factory: pytest.TempPathFactory):
    """Fetched models and cached features go to this run's temporary folder (each test process its own), never to
    the user's ``~/.cache/crack-model``: a test must not pass thanks to an earlier run, nor leave files there.
    Subprocesses (DAG runs, servers, workers) inherit it; a test may still set its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRACK_MODEL_CACHE", str(tmp_path_factory.mktemp("crack-model-cache")))
        yield


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
    from crack_model.data.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 40, size=64, seed=1)
    return root


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, synth_data: Path):
    """A model trained for two epochs on synthetic data at 64 px (random-init base: no download)."""
    from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
    from crack_model.training.train import train

    output = tmp_path_factory.mktemp("model")
    return train(
        synth_data,
        output,
        DataConfig(image_size=64, batch_size=16),
        ModelConfig(weights="none", alpha=0.35),
        TrainConfig(epochs=2),
        verbose=0,
    )


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 HTTP endpoint on loopback (moto's server); boto3 and the AWS CLI talk to it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def loaded_keys(monkeypatch) -> list[str]:
    """Keys whose whole bytes a ``LocalStore`` read returned or a download wrote, in order. A read refused by
    its size limit (``max_bytes``) loads nothing and is not one (``test_local_store`` checks that it loads nothing).
    """
    from crack_model.core.local_store import LocalStore

    loaded: list[str] = []
    real_read, real_download = LocalStore.read, LocalStore.download

    def read(self: LocalStore, key: str, **options: Any) -> bytes:
        data = real_read(self, key, **options)
        loaded.append(key)
        return data

    def download(self: LocalStore, key: str, path: Path) -> None:
        real_download(self, key, path)
        loaded.append(key)

    monkeypatch.setattr(LocalStore, "read", read)
    monkeypatch.setattr(LocalStore, "download", download)
    return loaded


@pytest.fixture()
def s3_env(s3_endpoint, monkeypatch):
    """Point boto3 (and subprocesses) at the loopback endpoint with dummy credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


@pytest.fixture()
def s3_bucket(s3_env):
    """A fresh, empty bucket for one test."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def aws_cli(endpoint: str, *args: str) -> str:
    """Run the independent AWS CLI against the endpoint and return its output."""
    import subprocess
    import sys

    aws = Path(sys.executable).with_name("aws")
    result = subprocess.run(
        [str(aws), "--endpoint-url", endpoint, *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m crack_model <args>`` in a child process, as a user would."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "crack_model", *args],
        capture_output=True,
        text=True,
        cwd=cwd or PROJECT,
        env=env,
        # retrain trains, calibrates the photo rule on mosaics (minutes on 2 busy cores, more on a slow CPU) and gates.
        timeout=1800,
        check=False,
    )
