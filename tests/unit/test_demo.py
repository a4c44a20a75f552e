"""``make demo`` says what went wrong: missing ImageNet weights fail at once, in one line that says how to fix it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo.airflow_env import _error_line, _failures, _task_sections, airflow_environment, migrate
from demo.run import WEIGHTS_FILE, WeightsError, resolve_weights

PROJECT = Path(__file__).resolve().parents[2]


def test_demo_with_missing_weights_fails_at_once_naming_them(tmp_path):
    """CRACK_MODEL_WEIGHTS=/nonexistent: exit 2 before any Airflow work, one line naming the file and both fixes."""
    environment = {**os.environ, "CRACK_MODEL_WEIGHTS": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "-m", "demo.run", "--out", str(tmp_path / "demo")],
        cwd=PROJECT, env=environment, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "/nonexistent" in lines[0] and "does not exist" in lines[0]
    assert f"CRACK_MODEL_WEIGHTS=/path/to/{WEIGHTS_FILE}" in lines[0] and "CRACK_MODEL_WEIGHTS=imagenet" in lines[0]
    assert not (tmp_path / "demo").exists(), "nothing seeded, no Airflow home created"


def test_weights_that_are_no_hdf5_file_are_refused(tmp_path):
    """A file that is not HDF5 (a download error page, a text file) is refused with the same advice."""
    page = tmp_path / WEIGHTS_FILE
    page.write_text("<html>proxy login</html>")
    try:
        resolve_weights(str(page))
    except WeightsError as error:
        assert "is not an HDF5" in str(error) and "CRACK_MODEL_WEIGHTS=imagenet" in str(error)
    else:
        raise AssertionError("a non-HDF5 file was accepted")


def test_weights_file_is_passed_on_as_an_absolute_path(tmp_path, monkeypatch):
    """A relative path that exists is handed to the DAG as an absolute one (tasks may run elsewhere)."""
    (tmp_path / "w.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 16)
    monkeypatch.chdir(tmp_path)
    assert resolve_weights("w.h5")[0] == str(tmp_path / "w.h5")


def test_imagenet_without_cache_or_network_names_the_weights(tmp_path, monkeypatch):
    """imagenet, no Keras cache and an unreachable host: one line naming the file and how to supply it."""
    monkeypatch.setattr("demo.run.keras_caches", lambda: [tmp_path / "models"])
    monkeypatch.setattr("demo.run.WEIGHTS_URL", "http://127.0.0.1:9/" + WEIGHTS_FILE)  # discard port: refused
    try:
        resolve_weights("imagenet")
    except WeightsError as error:
        message = str(error)
        assert WEIGHTS_FILE in message and "cannot be downloaded" in message and "\n" not in message
    else:
        raise AssertionError("imagenet was accepted without cache or network")


def test_imagenet_in_the_keras_cache_needs_no_network(tmp_path, monkeypatch):
    """Weights already in $KERAS_HOME/models: accepted without asking the network."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / WEIGHTS_FILE).write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("demo.run.WEIGHTS_URL", "http://127.0.0.1:9/unused")
    weights, described = resolve_weights("imagenet")
    assert weights == "imagenet" and str(tmp_path) in described


LOG = """\
2026-11-30T10:56:51Z [warning  ] Plugin 'crack_ops' already registered, skipping [airflow.plugins_manager]
DAG-TEST-TASK validate_labeled_pool -1
DAG-TEST-TASK train_candidate -1
2026-11-30T10:57:12Z [error    ] Task failed with exception     [task] loc=task_runner.py:1676
Traceback (most recent call last):
  File "/work/main/crack_model/training/model.py", line 34, in resolve_base_weights
    raise CrackModelError(msg)
crack_model.core.errors.CrackModelError: weights file /x.h5 does not exist
2026-11-30T10:57:13Z [warning  ] No tasks to run. unrunnable tasks: {...} [airflow.sdk.definitions.dag] loc=dag.py:1424
DAG-TEST-TASK score_shard 1
shard 1 scored
"""


def test_a_failed_task_gets_its_own_log_and_error_line(tmp_path):
    """The run's log is cut per task at the markers; a failed task's part is saved with its exception line."""
    sections = _task_sections(LOG)
    assert set(sections) == {"validate_labeled_pool", "train_candidate", "score_shard[1]"}
    assert not any("No tasks to run" in line for line in sections["train_candidate"])
    assert _error_line(sections["train_candidate"]).endswith("weights file /x.h5 does not exist")
    states = {"validate_labeled_pool": "success", "train_candidate": "failed", "score_shard[1]": "upstream_failed"}
    (failure,) = _failures(LOG, states, tmp_path / "tasks", tmp_path / "run.log")
    assert failure["task"] == "train_candidate" and failure["state"] == "failed"
    assert Path(failure["log"]).read_text().startswith("2026-11-30T10:57:12Z [error")
    assert failure["tail"][-1].startswith("crack_model.core.errors.CrackModelError")


def test_a_relative_airflow_home_becomes_absolute(tmp_path, monkeypatch):
    """Airflow refuses a relative SQLite path (``bench.adaptation --work build/x --dag`` failed in db migrate)."""
    monkeypatch.chdir(tmp_path)
    environment = airflow_environment(Path("build/airflow"))
    home = tmp_path / "build" / "airflow"
    assert environment["AIRFLOW_HOME"] == str(home) and home.is_dir()
    assert environment["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(home / "plugins")


def test_a_refused_migration_says_airflows_reason(tmp_path):
    """Before, a failed ``airflow db migrate`` raised CalledProcessError with no reason at all."""
    environment = airflow_environment(tmp_path / "airflow",
                                      {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:///relative.db"})  # fmt: skip
    with pytest.raises(RuntimeError, match=r"(?s)airflow db migrate failed .*relative path"):
        migrate(environment)


def test_make_airflow_gives_the_store_as_the_default_a_variable_set_in_the_ui_overrides(tmp_path, monkeypatch):
    """It set AIRFLOW_VAR_CRACK_STORE, which Airflow reads before the metastore: a Variable crack_store set in the
    UI or CLI was ignored. It sets CRACK_STORE, read only when that Variable is unset."""
    from demo import standalone

    started: dict[str, dict[str, str]] = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_STORE", raising=False)
    monkeypatch.setenv("CRACK_STORE", "store")
    monkeypatch.setattr(standalone.os, "execve", lambda path, argv, environment: started.update(env=environment))

    standalone.main()

    assert started["env"]["CRACK_STORE"] == str(tmp_path / "store")
    assert "AIRFLOW_VAR_CRACK_STORE" not in started["env"]
