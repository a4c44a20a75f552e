"""The promotion gate's policy: floors, regression limits, slices, runtimes, photos, bootstrap settings.

A versioned JSON file (the default ships as ``crack_model/evaluation/policies/gate.json``); each gate
report records the policy it applied and a digest of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.evaluation.intervals import BOOTSTRAP_METRICS

# Metrics a policy may set limits on; the first four get bootstrap intervals.
GATED_METRICS = ("crack_recall", "crack_precision", "accuracy", "crack_f1", "roc_auc", "pr_auc")
# Floors on the holdout mosaics (gate_photo.py): the share of crack photos found, of clean photos left clean.
PHOTO_METRICS = ("photo_crack_recall", "photo_specificity")
ALL_SLICES = "*"
_TOP_LEVEL = {
    "policy_version", "description", "floors", "no_regression", "slice_floors", "slice_no_regression",
    "min_slice_images", "min_holdout_images", "min_runtime_agreement", "photo_floors", "bootstrap",
}  # fmt: skip
_BOOTSTRAP = {"resamples", "confidence", "seed"}


@dataclass(frozen=True)
class GatePolicy:
    """What a candidate must reach to replace the champion.

    Attributes:
        floors: metric -> minimum on the whole holdout (absolute; apply with or without a champion),
            less the new surfaces: slices the candidate trained on and the champion did not, on which the
            champion is below that floor (gate_scope.new_surfaces).
        max_drop: metric -> how far the candidate may fall below the champion ("no_regression" in JSON).
        slice_floors: slice name, or "*" for every slice -> metric -> minimum on that slice.
        slice_max_drop: metric -> how far the candidate may fall below the champion on any one slice
            ("slice_no_regression" in JSON): a new site's gain must not hide an old site's loss.
        min_slice_images: slices smaller than this are reported but not gated (floors and regression).
        min_holdout_images: images each class of the holdout needs, or the candidate is rejected: on 2 images
            every floor passes or fails by luck (1: no such check, policies from before it).
        min_runtime_agreement: share of holdout labels an export must share with Keras.
        photo_floors: metric (PHOTO_METRICS) -> minimum on mosaics of holdout patches, labeled by the
            candidate's photo rule with the runtime it will serve: a rule that cannot find crack photos
            (a threshold above what the runtime scores) must not reach production.
    """

    policy_version: str
    floors: Mapping[str, float] = field(default_factory=dict)
    max_drop: Mapping[str, float] = field(default_factory=dict)
    slice_floors: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    slice_max_drop: Mapping[str, float] = field(default_factory=dict)
    min_slice_images: int = 30
    min_holdout_images: int = 1
    min_runtime_agreement: float = 0.995
    photo_floors: Mapping[str, float] = field(default_factory=dict)
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        where = f"gate policy {self.policy_version!r}"
        for section, limits in (("floors", self.floors), ("no_regression", self.max_drop)):
            _check_limits(limits, f"{where} {section}")
        for slice_name, limits in self.slice_floors.items():
            _check_limits(limits, f"{where} slice_floors[{slice_name!r}]", BOOTSTRAP_METRICS)
        _check_limits(self.slice_max_drop, f"{where} slice_no_regression", BOOTSTRAP_METRICS)
        _check_limits(self.photo_floors, f"{where} photo_floors", PHOTO_METRICS)
        if not 0 < self.min_runtime_agreement <= 1:
            raise CrackModelError(f"{where}: min_runtime_agreement must be in (0, 1], got {self.min_runtime_agreement}")
        if self.bootstrap_resamples < 100:
            raise CrackModelError(f"{where}: bootstrap resamples must be at least 100, got {self.bootstrap_resamples}")
        if not 0.5 <= self.confidence < 1:
            raise CrackModelError(f"{where}: bootstrap confidence must be in [0.5, 1), got {self.confidence}")
        if self.min_slice_images < 1:
            raise CrackModelError(f"{where}: min_slice_images must be at least 1, got {self.min_slice_images}")
        if self.min_holdout_images < 1:
            raise CrackModelError(f"{where}: min_holdout_images must be at least 1, got {self.min_holdout_images}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "policy") -> GatePolicy:
        unknown = sorted(set(values) - _TOP_LEVEL)
        if unknown:
            raise CrackModelError(f"{source}: unknown key(s) {unknown}; known keys are {sorted(_TOP_LEVEL)}")
        if "policy_version" not in values:
            raise CrackModelError(f"{source}: 'policy_version' is missing; every gate policy is versioned")
        if not isinstance(values.get("bootstrap") or {}, Mapping):
            raise CrackModelError(f"{source}: bootstrap must be an object with {sorted(_BOOTSTRAP)}")
        if not isinstance(values["policy_version"], str | int) or not str(values["policy_version"]).strip():
            raise CrackModelError(
                f"{source}: 'policy_version' must be a name or a number, got {values['policy_version']!r}"
            )
        bootstrap = dict(values.get("bootstrap") or {})
        unknown = sorted(set(bootstrap) - _BOOTSTRAP)
        if unknown:
            raise CrackModelError(f"{source}: unknown bootstrap key(s) {unknown}; known: {sorted(_BOOTSTRAP)}")
        try:
            return cls(
                policy_version=str(values["policy_version"]),
                description=str(values.get("description", "")),
                floors={key: float(value) for key, value in (values.get("floors") or {}).items()},
                max_drop={key: float(value) for key, value in (values.get("no_regression") or {}).items()},
                slice_floors={
                    str(name): {key: float(value) for key, value in limits.items()}
                    for name, limits in (values.get("slice_floors") or {}).items()
                },
                slice_max_drop={key: float(value) for key, value in (values.get("slice_no_regression") or {}).items()},
                min_slice_images=_whole(values.get("min_slice_images", 30), "min_slice_images", 10**9),
                min_holdout_images=_whole(values.get("min_holdout_images", 1), "min_holdout_images", 10**9),
                min_runtime_agreement=float(values.get("min_runtime_agreement", 0.995)),
                photo_floors={key: float(value) for key, value in (values.get("photo_floors") or {}).items()},
                bootstrap_resamples=_whole(bootstrap.get("resamples", 1000), "bootstrap resamples", 100_000),
                confidence=float(bootstrap.get("confidence", 0.95)),
                seed=_whole(bootstrap.get("seed", 0), "bootstrap seed", 2**32 - 1),
            )
        except (TypeError, ValueError, AttributeError, OverflowError) as error:
            raise CrackModelError(f"{source}: {error}") from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy_version": self.policy_version,
            "description": self.description,
            "floors": dict(self.floors),
            "no_regression": dict(self.max_drop),
            "slice_floors": {name: dict(limits) for name, limits in self.slice_floors.items()},
            "slice_no_regression": dict(self.slice_max_drop),
            "min_slice_images": self.min_slice_images,
            # only when set, as photo_floors: a policy without it keeps the digest its stored gate reports recorded
            **({"min_holdout_images": self.min_holdout_images} if self.min_holdout_images > 1 else {}),
            "min_runtime_agreement": self.min_runtime_agreement,
            # only when set: a policy without them keeps the digest its stored gate reports recorded
            **({"photo_floors": dict(self.photo_floors)} if self.photo_floors else {}),
            "bootstrap": {"resamples": self.bootstrap_resamples, "confidence": self.confidence, "seed": self.seed},
        }

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def floors_for_slice(self, slice_name: str) -> dict[str, float]:
        """Floors that apply to one slice: the "*" floors, overridden by the slice's own."""
        return {**self.slice_floors.get(ALL_SLICES, {}), **self.slice_floors.get(slice_name, {})}


def _whole(value: Any, name: str, most: int) -> int:
    """A count or seed as written: a whole number (2.9 is not 2, true is not 1) from 0 up to ``most``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())
    ):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not 0 <= value <= most:
        raise ValueError(f"{name} must be from 0 to {most}, got {value!r}")
    return int(value)


def _check_limits(limits: Mapping[str, float], where: str, allowed: tuple[str, ...] = GATED_METRICS) -> None:
    for metric, value in limits.items():
        if metric not in allowed:
            raise CrackModelError(f"{where}: unknown metric {metric!r}; use one of {', '.join(allowed)}")
        if not 0 <= value <= 1:
            raise CrackModelError(f"{where}: {metric} must be in [0, 1], got {value}")


def load_policy(path: str | Path | None = None) -> GatePolicy:
    """Read a gate policy JSON file; None reads the packaged default (policies/gate.json)."""
    if path is None:
        text = resources.files("crack_model.evaluation").joinpath("policies", "gate.json").read_text(encoding="utf-8")
        source = "crack_model/evaluation/policies/gate.json"
    else:
        file = Path(path)
        if not file.is_file():
            raise CrackModelError(
                f"gate policy {file} does not exist: pass a JSON file like crack_model/evaluation/policies/gate.json"
            )
        text, source = file.read_text(encoding="utf-8"), str(file)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise CrackModelError(f"gate policy {source} is not valid JSON: {error}") from None
    if not isinstance(values, dict):
        raise CrackModelError(f"gate policy {source} must be a JSON object")
    return GatePolicy.from_dict(values, source)
