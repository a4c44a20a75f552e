"""Retraining: assemble the labeled pool, validate it, train a candidate, register it as challenger.

The pool is ``labeled/<class>/...`` in the store; the gate's holdout is ``holdout/<class>/...``
and must never reach training (the training suite rejects overlapping content hashes). The
candidate is then judged by the gate (crack_model.evaluation.gate.run_gate).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from crack_model.core import layout
from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.storage import join_key, open_store
from crack_model.pipelines.nightly import download_labeled
from crack_model.quality import drift
from crack_model.quality.profile import profile_labeled
from crack_model.quality.validation import load_hashes, validate_labeled
from crack_model.registry.versions import Registry
from crack_model.training.train import train

log = logging.getLogger(__name__)

LABELED = "labeled"
HOLDOUT = "holdout"


def validate_pool(store_uri: str, *, name: str = "labeled", write_reference_uri: str | None = None) -> dict[str, Any]:
    """The training suite on ``labeled/`` (holdout overlap checked); raises if the pool failed."""

    store = open_store(store_uri)
    holdout = set() if not store.folders(HOLDOUT) else load_hashes(store.url(HOLDOUT).rstrip("/"))
    outcome = validate_labeled(
        store_uri, LABELED, name=name, holdout_hashes=holdout, write_reference_uri=write_reference_uri
    )
    log.info("%s", outcome.summary())
    if not outcome.passed:
        raise CrackModelError(f"the labeled pool failed validation: {'; '.join(outcome.reasons)}")
    return {
        "outcome": outcome.outcome,
        "objects": outcome.counts.get("objects", 0),
        "quarantined": sorted(outcome.quarantined_keys),
        "reasons": list(outcome.reasons)[:10],
        "holdout_images": len(holdout),
    }


def train_candidate(
    store_uri: str,
    work_dir: str | Path,
    *,
    name: str = "crack",
    quarantined: list[str] | None = None,
    data_config: DataConfig | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    feature_cache_dir: str | Path | None = None,
    actor: str = "crack-model",
    run_id: str | None = None,
) -> dict[str, Any]:
    """Download the pool, train (feature-cached unless disabled), register, point ``challenger`` at it."""

    data_config = data_config or DataConfig()
    work_dir = Path(work_dir)
    pool = download_labeled(store_uri, LABELED, work_dir / "pool", list(data_config.class_names))
    for key in quarantined or []:  # held back by validation: never trained on
        (pool / Path(*key.split("/")[1:])).unlink(missing_ok=True)
    drift_reference = work_dir / "drift_reference.json"
    has_reference = write_drift_reference(pool, drift_reference)
    run = train(
        pool, work_dir / "model", data_config, model_config, train_config, verbose=2,
        feature_cache_dir=feature_cache_dir,
    )  # fmt: skip
    registry = Registry(store_uri)
    version = registry.register(
        run.output_dir, name, drift_reference=drift_reference if has_reference else None, actor=actor, run_id=run_id
    )
    current = registry.aliases(name).get("challenger")
    registry.promote(name, version, "challenger", expected_current=current, actor=actor, run_id=run_id,
                     reason="newly trained candidate, awaiting the gate")  # fmt: skip
    test = run.metrics.get("test") or run.metrics["validation"]
    return {
        "version": version,
        "threshold": run.card.threshold,
        "approved_runtimes": run.card.approved_runtimes,
        "split_crack_recall": test["crack_recall"],
        "split_accuracy": test["accuracy"],
        "model_uri": registry.version_url(name, version),
    }


def write_drift_reference(pool: Path, destination: Path) -> bool:
    """Write the drift reference profile of the training images (kept with the model version)."""

    profile = profile_labeled(str(pool), "")
    drift.save_reference(drift.build_reference(profile), str(destination))
    return destination.is_file()


def retrain_config(params: dict[str, Any]) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """Configs from DAG params / CLI options (missing keys keep the defaults)."""
    data = DataConfig()
    model = ModelConfig()
    training = TrainConfig()
    if params.get("image_size"):
        data = replace(data, image_size=int(params["image_size"]))
    if params.get("weights"):
        model = replace(model, weights=str(params["weights"]))
    counts: dict[str, Any] = {
        key: int(params[key])
        for key in ("epochs", "fine_tune_layers", "fine_tune_epochs")
        if params.get(key) is not None
    }
    training = replace(training, **counts)
    if params.get("target_recall") is not None:
        training = replace(training, target_recall=float(params["target_recall"]))
    return data, model, training


def pool_digest(store_uri: str) -> str:
    """A digest of the labeled pool's listing (keys, sizes, ETags): changes when the pool does."""
    import hashlib

    digest = hashlib.sha256()
    for info in open_store(store_uri).list(LABELED + "/"):
        if not layout.is_marker(info.key):
            digest.update(f"{info.key}\t{info.size}\t{info.etag or ''}\n".encode())
    return digest.hexdigest()


POOL_DIGEST_KEY = join_key(LABELED, "_DIGEST")


def labeled_pool_changed(store_uri: str) -> str | None:
    """The new digest if the pool changed since the last call (and record it), else None."""
    store = open_store(store_uri)
    current = pool_digest(store_uri)
    previous = store.read(POOL_DIGEST_KEY).decode().strip() if store.exists(POOL_DIGEST_KEY) else None
    if current == previous:
        return None
    store.write(POOL_DIGEST_KEY, current.encode())
    return current
