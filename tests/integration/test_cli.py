"""The command line as a process: fast help, one-line errors with non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import imagefiles
from tests.conftest import run_cli

PROJECT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("crack-model: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.parametrize(
    "command", ["train", "evaluate", "predict", "synth", "score", "export", "validate", "retrain", "gate", "registry"]
)
def test_every_command_has_help_without_loading_tensorflow(command):
    """--help works for each subcommand and does not import TensorFlow (it stays fast)."""
    code = (
        "import sys, contextlib, io\n"
        "from crack_model.cli.main import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    main(['{command}', '--help'])\n"
        "assert 'usage: crack-model' in out.getvalue(), out.getvalue()\n"
        "assert 'tensorflow' not in sys.modules, 'help imported tensorflow'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT, timeout=60)


def test_train_on_missing_folder(tmp_path):
    """A missing data folder: one line naming it, exit 1."""
    result = run_cli("train", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "m"), "--weights", "none")
    assert_one_line_error(result, "absent", "does not exist")


def test_train_on_empty_class(tmp_path):
    """An empty class folder is named."""
    (tmp_path / "Positive").mkdir()
    (tmp_path / "Negative").mkdir()
    (tmp_path / "Positive" / "a.jpg").write_bytes(imagefiles.jpeg())
    result = run_cli("train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--weights", "none")
    assert_one_line_error(result, "Negative has no images")


def test_train_on_unreadable_image(tmp_path, synth_data):
    """A corrupt image in the training data is named, with the way out (--skip-unreadable)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "Positive" / "broken.jpg").write_bytes(imagefiles.truncated_jpeg())
    result = run_cli("train", "--data", str(data), "--out", str(tmp_path / "m"), "--weights", "none")
    assert_one_line_error(result, "broken.jpg", "--skip-unreadable")


def test_train_with_wrong_weights_file(tmp_path, synth_data):
    """A weights file that is not MobileNetV2 weights is named."""
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"nope")
    result = run_cli(
        "train", "--data", str(synth_data), "--out", str(tmp_path / "m"), "--weights", str(bogus), "--image-size", "64"
    )
    assert_one_line_error(result, "bogus.h5")


def test_train_with_missing_weights_file(tmp_path, synth_data):
    result = run_cli("train", "--data", str(synth_data), "--out", str(tmp_path / "m"), "--weights", "/no/such.h5")
    assert_one_line_error(result, "/no/such.h5", "does not exist")


def test_bad_flag_values_are_usage_errors(tmp_path):
    """Invalid option values are rejected by the parser (exit 2) before any work."""
    result = run_cli("train", "--data", ".", "--out", str(tmp_path), "--epochs", "0")
    assert result.returncode == 2 and "positive integer" in result.stderr
    result = run_cli("train", "--data", ".", "--out", str(tmp_path), "--crack-class", "Crack")
    assert_one_line_error(result, "Crack")


def test_predict_with_missing_model(tmp_path):
    (tmp_path / "a.jpg").write_bytes(imagefiles.jpeg())
    result = run_cli("predict", str(tmp_path), "--model", str(tmp_path / "no-model"))
    assert_one_line_error(result, "no-model", "does not exist")


def test_predict_with_missing_input(tmp_path, trained_model):
    result = run_cli("predict", str(tmp_path / "nothing-here"), "--model", str(trained_model.output_dir))
    assert_one_line_error(result, "nothing-here", "does not exist")


def test_synth_writes_class_folders(tmp_path):
    """synth writes the requested count per class."""
    result = run_cli("synth", "--out", str(tmp_path), "--count", "3", "--size", "40")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "Positive").glob("*.jpg"))) == 3
    assert len(list((tmp_path / "Negative").glob("*.jpg"))) == 3


@pytest.mark.slow
def test_retrain_cli_trains_gates_and_promotes(tmp_path, imagenet_weights):
    """retrain --gate --promote on a seeded store: the candidate passes the floors and becomes champion."""
    from crack_model.registry.versions import Registry
    from demo.seed import seed_store

    store = tmp_path / "store"
    seed_store(str(store))
    env_weights = ["--weights", imagenet_weights]
    result = run_cli("retrain", "--store", str(store), *env_weights, "--epochs", "5", "--gate", "--promote")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "gate: promote" in result.stdout
    assert "trained afresh\n" in result.stdout  # the store's first model: no champion to start from
    registry = Registry(str(store))
    assert registry.resolve("crack") == registry.resolve("crack", "challenger")


def test_retrain_cli_on_a_store_without_a_pool(tmp_path):
    """No labeled/ in the store: one line naming the problem."""
    result = run_cli("retrain", "--store", str(tmp_path), "--weights", "none")
    assert_one_line_error(result)
