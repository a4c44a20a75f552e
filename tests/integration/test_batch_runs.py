"""Batch scoring end to end: a real SIGKILL and resume, and scoring from S3 over real HTTP (moto on loopback)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crack_model.core.local_store import LocalStore
from crack_model.core.storage import open_store
from tests import imagefiles
from tests.conftest import PROJECT, aws_cli
from tests.unit.serving.test_batch import (
    comparable,
    large_photo,
    read_predictions,
    upload_synth,
)

pytestmark = pytest.mark.integration


def test_killed_process_resumes(tmp_path, synth_data, model_dir):
    """SIGKILL a scoring process midway, run it again: same rows as an uninterrupted run."""
    reference, killed = tmp_path / "ref", tmp_path / "killed"
    for root in (reference, killed):
        store = LocalStore(root)
        for index in range(40):
            store.write(f"incoming/b1/photo-{index:03d}.jpg", large_photo(index, (900, 700)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "crack_model", "-q", "score", "--model", model_dir, "--runtime", "keras",
               "--part-rows", "2", "--batch-size", "16", "--workers", "2", "--no-overlays"]  # fmt: skip
    subprocess.run([*command, "--batch", f"{reference}/incoming/b1"], check=True, env=env, cwd=PROJECT, timeout=600)

    process = subprocess.Popen([*command, "--batch", f"{killed}/incoming/b1"], env=env, cwd=PROJECT)
    parts = killed / "results" / "b1" / "_parts"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.rglob("part-*.csv"))) < 2:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "results" / "b1" / "_SUCCESS").exists(), "the process finished before it was killed"
    assert not list(parts.rglob("_DONE"))
    subprocess.run([*command, "--batch", f"{killed}/incoming/b1"], check=True, env=env, cwd=PROJECT, timeout=600)
    resumed = comparable(read_predictions(LocalStore(killed)))
    expected = comparable(read_predictions(LocalStore(reference)))
    assert [r["key"] for r in resumed] == [r["key"] for r in expected]
    assert len({r["key"] for r in resumed}) == 40
    for a, b in zip(resumed, expected, strict=True):
        assert a["label"] == b["label"]
        assert float(a["crack_probability"]) == pytest.approx(float(b["crack_probability"]), abs=1e-4)


def test_scoring_from_s3_over_http(s3_bucket, s3_env, synth_data, model_dir, tmp_path):
    """The CLI scores an S3 batch over HTTP with an S3-hosted model; the AWS CLI sees the results."""
    store = open_store(f"s3://{s3_bucket}")
    upload_synth(store, synth_data, count=5)
    store.write("incoming/b1/bad file ü.jpg", imagefiles.truncated_jpeg())
    for path in Path(model_dir).iterdir():
        if path.is_file():
            store.upload(path, f"models/synth/{path.name}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CRACK_MODEL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-m", "crack_model", "-q", "score", "--batch", f"s3://{s3_bucket}/incoming/b1",
         "--model", f"s3://{s3_bucket}/models/synth", "--shard", "0/1"],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listing = aws_cli(s3_env, "s3", "ls", "--recursive", f"s3://{s3_bucket}/results/b1/")
    for name in ("predictions.csv", "summary.json", "_SUCCESS"):
        assert f"results/b1/{name}" in listing
    aws_cli(s3_env, "s3", "cp", f"s3://{s3_bucket}/results/b1/predictions.csv", str(tmp_path / "p.csv"))
    with open(tmp_path / "p.csv", newline="") as handle:
        rows = {row["key"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 11
    assert rows["incoming/b1/bad file ü.jpg"]["status"] == "error"
    assert sum(row["status"] == "ok" for row in rows.values()) == 10
