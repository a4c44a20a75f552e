"""The candidate a retraining registers: ``challenger`` pointed at it, and the summary its task hands on.

A retried training task finds the version an earlier try of its run registered (``version_of_run``) and hands
that on (``registered_candidate``) instead of training and registering a second one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.registry.versions import Registry

log = module_logger(__name__)


def version_of_run(registry: Registry, name: str, run_id: str, validated_at: str | None = None) -> str | None:
    """The newest version of ``name`` that the run ``run_id`` registered (its ``version.json`` says so) from the
    pool validation of ``validated_at`` (its ``metrics.json``'s ``pool_validated_at``), or None.

    A run cleared in Airflow keeps its id: once its pool is validated again (the operator fixed it), the version
    an earlier try trained on the old pool is not this try's to hand on.
    """
    for version in reversed(registry.version_names(name)):
        try:
            document = registry.read_version(name, version)
            if document.get("run_id") != run_id:
                continue
            metrics = json.loads(registry.store.read(registry.version_key(name, version, "metrics.json")))
        except (CrackModelError, OSError, ValueError) as error:  # damaged: another run's, or not one to hand on
            log.warning("%s", error)
            continue
        if validated_at is None or metrics.get("pool_validated_at") == validated_at:
            return version
        log.info("run %s registered %s on the pool as validated at %s; validated again since (%s): training again",
                 run_id, version, metrics.get("pool_validated_at"), validated_at)  # fmt: skip
    return None


def registered_candidate(registry: Registry, name: str, version: str, *, actor: str, run_id: str) -> dict[str, Any]:
    """What ``train_candidate`` returns, for the version a try of this run registered before it died: training
    again registered a second version of the same run, and the first was left ungated. ``challenger`` is pointed
    at it if the try died before it was (and it is not gated yet)."""
    log.warning("run %s registered %s version %s already: handing it on, not training again", run_id, name, version)
    if registry.aliases(name).get("challenger") != version and registry.gate_report(name, version) is None:
        point_challenger(registry, name, version, actor=actor, run_id=run_id)
    card = registry.read_version(name, version)["card"]
    metrics = json.loads(registry.store.read(registry.version_key(name, version, "metrics.json")))
    return candidate_summary(registry, name, version, card["threshold"], card["approved_runtimes"], metrics)


def point_challenger(registry: Registry, name: str, version: str, *, actor: str, run_id: str | None) -> None:
    """Point ``challenger`` at the newly registered ``version`` (compare-and-swap on where it pointed)."""
    current = registry.aliases(name).get("challenger")
    registry.promote(name, version, "challenger", expected_current=current, actor=actor, run_id=run_id,
                     reason="newly trained candidate, awaiting the gate")  # fmt: skip


def candidate_summary(
    registry: Registry, name: str, version: str, threshold: float, runtimes: list[str], metrics: Mapping[str, Any]
) -> dict[str, Any]:
    """The registered candidate for XCom: its threshold, runtimes, split metrics (``metrics.json``) and URI."""
    test = metrics.get("test") or metrics["validation"]
    return {
        "model_name": name,
        "version": version,
        "threshold": threshold,
        "approved_runtimes": runtimes,
        "split_crack_recall": test["crack_recall"],
        "split_accuracy": test["accuracy"],
        "split_per_slice": (metrics.get("per_slice") or {}).get("test", {}),
        "model_uri": registry.version_url(name, version),
        "started_from": metrics.get("started_from"),
    }
