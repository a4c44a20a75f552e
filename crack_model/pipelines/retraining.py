"""Retraining: validate the labeled pool, train a candidate, register it as challenger, gate it.

The steps, written once: the ``crack_retraining`` DAG runs one per task and ``crack-model retrain``
runs them in a row.

1. ``validate_pool``: the training suite on ``labeled/<class>/...`` (``PoolValidationError`` if it fails);
2. ``train_and_register``: train on the validated pool and register the candidate as ``challenger``;
3. ``gate_candidate``: the holdout gate against the champion, promoting a passing candidate if asked;
   ``record_gate_notification`` keeps a decision someone must hear about.

The gate's holdout (``holdout/<class>/...``, or the one it is given) must never reach training (the training suite
rejects overlapping content hashes).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

from crack_model.core import layout
from crack_model.core.cache import cache_root
from crack_model.core.clock import utc_now
from crack_model.core.config import DataConfig, ModelConfig, TrainConfig
from crack_model.core.errors import CrackModelError
from crack_model.core.folder_lock import held_folder
from crack_model.core.log_lines import module_logger
from crack_model.core.model_card import SPLIT_NAME
from crack_model.core.object_keys import PreconditionFailedError
from crack_model.core.storage import open_store
from crack_model.evaluation.gate import run_gate
from crack_model.evaluation.holdout import load_holdout
from crack_model.evaluation.policy import load_policy
from crack_model.pipelines.candidates import candidate_summary, point_challenger, registered_candidate, version_of_run
from crack_model.pipelines.pool_copy import download_labeled, judged_photos, name_split_in_store, named_in_store
from crack_model.pipelines.stores import StoreLike, step_store
from crack_model.quality import drift
from crack_model.quality.batch_validation import PROFILE_NAME, load_hashes, validate_labeled
from crack_model.quality.profile import ProfileConfig, profile_labeled
from crack_model.registry.model_uri import fetch_version
from crack_model.registry.naming import GateReportExistsError, validate_name
from crack_model.registry.versions import Registry
from crack_model.training.model import check_pooled_layers, resolve_base_weights
from crack_model.training.train import train

log = module_logger(__name__)

LABELED = "labeled"
HOLDOUT = "holdout"


class PoolValidationError(CrackModelError):
    """The labeled pool failed the training suite: fixing the data helps, retrying does not."""


# gate_candidate's "gated before against another champion, policy or holdout", for callers outside the library.
GatedBeforeError = GateReportExistsError


class SettingsError(CrackModelError):
    """A retraining setting no training can run with (a base layer that does not exist): retrying does not help."""


def validate_pool(
    store: StoreLike, *, name: str = "labeled", holdout: str | None = None, write_reference_uri: str | None = None
) -> dict[str, Any]:
    """Step 1: the training suite on ``labeled/`` (holdout overlap checked).

    Args:
        holdout: the holdout the gate will read, a folder or store prefix (default: ``<store>/holdout``, if any).

    Raises:
        PoolValidationError: the pool failed validation (the report names every reason).
    """
    with step_store(store) as opened:
        # The gate's own holdout: checked against <store>/holdout alone, a photo of another one was trained on
        # and the gate refused that holdout only after the training.
        where = holdout or (opened.url(HOLDOUT).rstrip("/") if opened.folders(HOLDOUT) else None)
        holdout_hashes = load_hashes(where) if where else set()
        # A store that did not answer fails the step (retried) rather than leaving photos out of training.
        outcome = validate_labeled(opened.uri, LABELED, name=name, holdout_hashes=holdout_hashes,
                                   write_reference_uri=write_reference_uri,
                                   profile_config=ProfileConfig(retry_unanswered=True))  # fmt: skip
    for line in outcome.summary().splitlines():  # a line each: the log escapes a line break inside a value
        log.info("%s", line)
    if not outcome.passed:
        raise PoolValidationError(f"the labeled pool failed validation: {'; '.join(outcome.reasons)}")
    return {
        "outcome": outcome.outcome,
        "objects": outcome.counts.get("objects", 0),
        "quarantined": sorted(outcome.quarantined_keys),
        "reasons": list(outcome.reasons)[:10],
        "holdout_images": len(holdout_hashes),
        "left_out": len(outcome.left_out),
        # What the suite judged (keys and SHA-256): training takes exactly that, not a listing made later.
        "profile": layout.validation_key(name, PROFILE_NAME),
        "validated_at": outcome.validated_at,
    }


def require_holdout(pool: Mapping[str, Any]) -> None:
    """Refuse, before training, a pool whose store has no holdout when the gate will need it (it failed after)."""
    if not pool.get("holdout_images"):
        raise PoolValidationError(
            f"no holdout under {HOLDOUT}/<class>/ in the store: the gate judges a candidate on photos training never "
            "sees; put some there (or give the gate another holdout) before retraining"
        )


def train_and_register(
    store: StoreLike,
    pool: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    name: str = "crack",
    actor: str = "crack-model",
    run_id: str | None = None,
    work_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Step 2: train on the validated pool (its quarantined images left out) and register the candidate.

    Args:
        pool: what ``validate_pool`` returned.
        settings: DAG params or CLI options (``epochs``, ``fine_tune_layers``, ``target_recall``,
            ``weights``, ``slice_balance``, ``augmented_views``, ``anchor_weight``, ...; see ``retrain_config``;
            ``start_from_champion``, default true); other keys are ignored.
        work_dir: where the pool and the model are written (default: a temporary folder).

    Returns:
        The candidate's ``model_name``, ``version``, ``model_uri``, threshold and split metrics (XCom-sized).
    """
    data, model, training = check_settings(settings, name=name, store=store)
    with tempfile.TemporaryDirectory(prefix="crack-retrain-") as scratch:
        return train_candidate(
            store, work_dir or scratch, name=name, quarantined=list(pool["quarantined"]), data_config=data,
            model_config=model, train_config=training, feature_cache_dir=cache_root() / "features",
            actor=actor, run_id=run_id, augmented_views=_views(settings),
            start_from_champion=start_from_champion(settings), validated=pool,
        )  # fmt: skip


def gate_candidate(
    store: StoreLike,
    name: str,
    candidate_version: str,
    *,
    holdout: str | None = None,
    policy: str | None = None,
    promote: bool = False,
    actor: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Step 3: gate a registered candidate against the champion on the holdout; promote it if asked and passing.

    Args:
        holdout: a folder or store prefix (default: ``<store>/holdout``).
        policy: a gate policy JSON (default: the versioned one).

    Returns:
        The decision summary (``decision``, ``failed_checks``, ``promoted``, report links, ...).

    Raises:
        SettingsError: the policy cannot be read (no retry mends it).
    """
    try:
        gate_policy = load_policy(policy)
    except CrackModelError as error:
        raise SettingsError(f"gate settings: {error}") from None
    with step_store(store) as opened:
        report = run_gate(
            Registry(opened), name, candidate_version, holdout, gate_policy, promote=promote, actor=actor,
            run_id=run_id,
        )  # fmt: skip
    return report.summary()


def record_gate_notification(
    store: StoreLike, decision: Mapping[str, Any], run_id: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Keep a gate decision under ``models/<name>/notifications/``, once per run and candidate version.

    Returns the stored message and whether it still has to be sent: False when a retried task finds
    the notice of this run and version already sent, so nobody hears about one rejection twice.
    """
    opened = open_store(store)
    key = layout.notification_key(decision["name"], decision["candidate_version"], run_id or "manual")
    message = {**decision, "run_id": run_id, "notified_at": utc_now(), "sent": False}
    try:
        opened.write_if_match(key, _json(message), None)
        return message, True
    except PreconditionFailedError:  # an earlier try of this run recorded it
        stored = dict(json.loads(opened.read(key)))
        return stored, not stored.get("sent")


def mark_notification_channel(store: StoreLike, message: Mapping[str, Any], channel: str) -> dict[str, Any]:
    """Record that the notice went out through one channel (``sent_via``): a retry sends it only through the others."""
    updated = {**message, "sent_via": {**(message.get("sent_via") or {}), channel: utc_now()}}
    open_store(store).write(_notice_key(message), _json(updated), content_type="application/json")
    return updated


def mark_notification_sent(store: StoreLike, message: Mapping[str, Any], **details: Any) -> dict[str, Any]:
    """Record that the notice went out (so a retry does not send it again)."""
    sent = {**message, **details, "sent": True, "sent_at": utc_now()}
    open_store(store).write(_notice_key(message), _json(sent), content_type="application/json")
    return sent


def _notice_key(message: Mapping[str, Any]) -> str:
    return layout.notification_key(message["name"], message["candidate_version"], message.get("run_id") or "manual")


def _json(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def train_candidate(
    store: StoreLike,
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
    augmented_views: int = 1,
    start_from_champion: bool = True,
    validated: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Download the pool, train (feature-cached unless disabled), register, point ``challenger`` at it.

    ``validated`` (what ``validate_pool`` returned: its ``profile.csv`` and time): only the photos the training
    suite judged, with the bytes it judged, are trained on. The registered version names each photo by its
    store URL.

    Slices (``labeled/<class>/<slice>/``) are kept: training balances them and the threshold must
    reach the target recall on each big-enough validation slice (see ``train``). With
    ``start_from_champion`` and a champion, the candidate's head starts from the champion's
    (training/warm_start.py: fewer false alarms, and fewer candidates that miss more than the champion).
    """
    data_config = data_config or DataConfig()
    work_dir = Path(work_dir)
    with step_store(store) as opened, held_folder(work_dir, "retraining"):
        registry = Registry(opened)
        validated_at = (validated or {}).get("validated_at")
        if run_id is not None and (registered := version_of_run(registry, name, run_id, validated_at)) is not None:
            return registered_candidate(registry, name, registered, actor=actor, run_id=run_id)
        judged = None
        if validated and validated.get("profile"):  # a pool validated before the profile was handed over: none
            judged = judged_photos(opened, validated["profile"], validated.get("validated_at"))
        pool = download_labeled(opened, LABELED, work_dir / "pool", list(data_config.class_names), judged)
        for key in quarantined or []:  # held back by validation: never trained on
            (pool / Path(*key.split("/")[1:])).unlink(missing_ok=True)
        drift_reference = work_dir / "drift_reference.json"
        has_reference = write_drift_reference(pool, drift_reference)
        champion = registry.aliases(name).get("champion") if start_from_champion else None
        start, unfetched = champion_start(registry, name, champion) if champion else (None, None)
        run = train(
            pool, work_dir / "model", data_config, model_config, train_config, verbose=2,
            feature_cache_dir=feature_cache_dir, augmented_views=augmented_views, start_from=start,
            start_label=registry.version_url(name, champion) if champion else None,
        )  # fmt: skip
        if unfetched is not None:  # train() saw no start: the record names the champion that could not be one
            run.metrics["started_from"] = unfetched
        run.metrics = named_in_store(run.metrics, f"{pool}/", opened.url(LABELED).rstrip("/") + "/")
        run.metrics["pool_validated_at"] = validated_at  # which validation of the pool: see version_of_run
        run.artifacts["metrics"].write_text(json.dumps(run.metrics, indent=2) + "\n", encoding="utf-8")
        name_split_in_store(run.output_dir / SPLIT_NAME, f"{pool}/", opened.url(LABELED).rstrip("/") + "/")
        version = registry.register(
            run.output_dir, name, drift_reference=drift_reference if has_reference else None, actor=actor,
            run_id=run_id,
        )  # fmt: skip
        point_challenger(registry, name, version, actor=actor, run_id=run_id)
    return candidate_summary(registry, name, version, run.card.threshold, run.card.approved_runtimes, run.metrics)


def champion_start(registry: Registry, name: str, version: str) -> tuple[Path | None, dict[str, Any] | None]:
    """The champion's local folder to start training from; or None and a ``started_from`` record of why not.

    Whatever keeps its files from being had (a failed hash, an object gone from the bucket, an unreadable
    version.json) must not stop a new candidate from being trained (afresh, with a warning); the gate
    judges the champion again when it scores it.
    """
    try:
        folder = fetch_version(registry, name, version)
    except Exception as error:  # the start is optional: any failure to fetch it means training afresh
        log.warning("training afresh: cannot fetch champion %s to start from (%s)", version, error)
        reason = f"its files cannot be fetched ({str(error).splitlines()[0][:200]})"
        return None, {"model": registry.version_url(name, version), "version": version, "used": False,
                      "reason": reason}  # fmt: skip
    try:  # what it trained on stays in the candidate's train split (warm_start.trained_images)
        fetch_version(registry, name, version, also=(SPLIT_NAME,))
    except Exception as error:  # without it the start still stands; the split is then drawn as afresh
        log.warning("champion %s's %s cannot be fetched (%s)", version, SPLIT_NAME, error)
    return folder, None


def write_drift_reference(pool: Path, destination: Path) -> bool:
    """Write the drift reference profile of the training images (kept with the model version)."""

    profile = profile_labeled(str(pool), "")
    drift.save_reference(drift.build_reference(profile), str(destination))
    return destination.is_file()


def retrain_config(params: Mapping[str, Any]) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """Configs from DAG params / CLI options (missing keys keep the defaults)."""
    data = DataConfig()
    model = ModelConfig()
    training = TrainConfig()
    if params.get("image_size"):
        data = replace(data, image_size=int(params["image_size"]))
    # No weights param: the worker's $CRACK_MODEL_WEIGHTS, as for the CLI (an air-gapped image mounts the file).
    weights = params.get("weights") or os.environ.get("CRACK_MODEL_WEIGHTS", "").strip()
    if weights:
        model = replace(model, weights=str(weights))
    if params.get("zoom_factor") is not None:  # 0 turns zoom off: a surface that zoom costs (README "Augmentation")
        model = replace(model, zoom_factor=float(params["zoom_factor"]))
    if params.get("pooled_layers") is not None:  # []: the last layer alone
        names = (str(name).strip() for name in params["pooled_layers"])
        model = replace(model, pooled_layers=tuple(name for name in names if name))
    counts: dict[str, Any] = {
        key: int(params[key])
        for key in ("epochs", "fine_tune_layers", "fine_tune_epochs")
        if params.get(key) is not None
    }
    training = replace(training, **counts)
    fractions: dict[str, Any] = {
        key: float(params[key])
        for key in ("target_recall", "slice_balance", "label_smoothing", "crack_weight", "seam_share", "anchor_weight")
        if params.get(key) is not None
    }
    training = replace(training, **fractions)
    return data, model, training


def check_settings(
    settings: Mapping[str, Any], *, name: str | None = None, store: StoreLike | None = None
) -> tuple[DataConfig, ModelConfig, TrainConfig]:
    """``retrain_config``'s configs, or SettingsError for a setting no retry can mend (before any download):
    numbers out of range, a pooled layer the base lacks, a weights file that is not there, a model ``name``
    the registry refuses, a gate ``policy`` that cannot be read, a given ``holdout`` without images of every class
    (opened with ``store``'s credentials; found after the training, each cost the whole training, three times
    with retries)."""
    try:
        if name is not None:
            validate_name(name)
        configs = retrain_config(settings)
        resolve_base_weights(configs[1].weights)
        check_pooled_layers(configs[1])
        if _views(settings) < 0:
            raise ValueError(f"augmented_views must be 0 (none) or more, got {_views(settings)}")
        load_policy(settings.get("policy") or None)
        if settings.get("holdout"):  # the default, <store>/holdout, is validate_pool's and require_holdout's
            with step_store(store) if store is not None else nullcontext():
                load_holdout(str(settings["holdout"]), configs[0].class_names)
    except (ValueError, CrackModelError) as error:
        raise SettingsError(f"retraining settings: {error}") from None
    return configs


def start_from_champion(settings: Mapping[str, Any]) -> bool:
    """The ``start_from_champion`` setting (default true); a pull without a start is ignored, with a warning."""
    start = settings.get("start_from_champion") is not False
    if not start and float(settings.get("anchor_weight") or 0) > 0:
        log.warning("anchor_weight %s is ignored: start_from_champion is false, so there is nothing to pull toward",
                    settings["anchor_weight"])  # fmt: skip
    return start


def _views(settings: Mapping[str, Any]) -> int:
    value = settings.get("augmented_views")
    return 2 if value is None else int(value)
