"""Has a batch drifted away from the training data? Population stability index per feature.

A *reference profile* summarises the training images: for each feature (brightness,
contrast, blur, file size by default) the inner edges of ``bins`` quantile bins of the
training values, and the share of training images in each bin, overall and per class
(the outer bins are open, so any value falls somewhere). It is a small JSON file saved
next to the model; a score distribution (``crack_probability``) can be added to it the
same way once a model has scored its own holdout, and is then compared like any other feature.

For a batch, each feature's values are binned with the reference edges and compared with

    PSI = sum over bins of (batch share - reference share) * ln(batch share / reference share)

(counts smoothed by adding ``pseudo_count`` to every bin of both sides, so a bin that is
empty by chance in a small sample neither divides by zero nor dominates). Rule of thumb:
below 0.1 no change, 0.1 to 0.25 some change, above 0.25 a different population; a batch
is *drifted* when any feature's PSI exceeds ``psi_threshold``.

Crack prevalence is not drift. Cracked and uncracked surfaces differ in contrast and blur
(a batch of only uncracked walls has a contrast PSI near 3 against a 50/50 training set),
and a nightly batch's share of cracks is whatever the inspectors photographed. So the
reference share of each bin is taken as the mix of the per-class shares that fits the
batch best (one mix for all features at once, searched on a 5 % grid), and the PSI is
measured against that: a change in lighting, surface, camera or resolution cannot be
explained by any mix of the training classes and still shows. The unadjusted PSI
(against the training mix) is reported too.

With few images the index is noisy: with no change at all its expected value is about
``(bins - 1) * (1 / batch images + 1 / reference images)``, 0.24 for 50 images against 150
per class. So batches smaller than ``min_images`` (100) are not judged.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from crack_model.core.clock import utc_now
from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.core.storage import read_uri, split_uri

if TYPE_CHECKING:
    import pandas as pd

log = module_logger(__name__)

REFERENCE_FORMAT = "crack-model-drift-reference/1"
REFERENCE_NAME = "drift_reference.json"
DEFAULT_FEATURES = ("brightness", "contrast", "blur", "size_bytes")


@dataclass(frozen=True)
class DriftConfig:
    """How drift is measured and judged.

    Attributes:
        features: profile columns compared (others in the reference, e.g. ``crack_probability``,
            are compared too when the batch has them).
        bins: quantile bins per feature in the reference.
        psi_threshold: a feature whose PSI exceeds this has drifted (0.25 is the usual "significant shift").
        min_images: batches with fewer decodable images are not judged (PSI is noisy on small samples).
        pseudo_count: added to each bin's count on both sides before comparing (additive smoothing).
    """

    features: tuple[str, ...] = DEFAULT_FEATURES
    bins: int = 10
    psi_threshold: float = 0.25
    min_images: int = 100
    pseudo_count: float = 0.5

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise CrackModelError(f"drift bins must be at least 2, got {self.bins}")
        if self.pseudo_count <= 0:
            raise CrackModelError(f"drift pseudo_count must be positive, got {self.pseudo_count}")
        if self.psi_threshold <= 0:
            raise CrackModelError(f"drift PSI threshold must be positive, got {self.psi_threshold}")


def feature_reference(
    values: Iterable[float], bins: int, by_label: Mapping[str, Iterable[float]] | None = None
) -> dict[str, Any]:
    """Quantile bin edges (inner ones) and the share of ``values`` in each bin, overall and per class."""
    array = _finite(values)
    if array.size == 0:
        raise CrackModelError("cannot build a drift reference from zero values")
    quantiles = np.quantile(array, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    reference: dict[str, Any] = {
        "edges": [float(edge) for edge in edges],
        "proportions": _rounded(bin_proportions(array, edges)),
        "count": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std()),
    }
    if by_label:
        reference["by_label"] = {label: _rounded(bin_proportions(group, edges)) for label, group in by_label.items()}
    return reference


def _rounded(shares: np.ndarray) -> list[float]:
    return [round(float(share), 8) for share in shares]


def bin_proportions(values: Iterable[float] | np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Share of values in each of the ``len(edges) + 1`` bins (open outer bins; a value on an edge goes right)."""
    array = _finite(values)
    indices = np.searchsorted(np.asarray(edges, dtype=np.float64), array, side="right")
    return np.bincount(indices, minlength=len(edges) + 1) / max(array.size, 1)


def population_stability_index(
    reference: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, epsilon: float = 1e-4
) -> float:
    """PSI between two distributions over the same bins (each a sequence of shares)."""
    expected = np.clip(np.asarray(reference, dtype=np.float64), epsilon, None)
    observed = np.clip(np.asarray(actual, dtype=np.float64), epsilon, None)
    if expected.shape != observed.shape:
        raise ValueError(f"PSI needs the same bins: {expected.shape} vs {observed.shape}")
    return float(np.sum((observed - expected) * np.log(observed / expected)))


def build_reference(
    profile: pd.DataFrame,
    config: DriftConfig | None = None,
    *,
    source: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The reference profile (a JSON-ready dict) of training images' profile rows (decodable ones)."""
    config = config or DriftConfig()
    usable = profile[profile["decodable"].astype(bool)] if "decodable" in profile else profile
    if usable.empty:
        raise CrackModelError("cannot build a drift reference: no decodable images in the profile")
    missing = [name for name in config.features if name not in usable.columns]
    if missing:
        raise CrackModelError(f"profile has no column(s) {missing} for the drift reference")
    labeled = usable.dropna(subset=["label"]) if "label" in usable else usable.iloc[0:0]
    label_counts = {str(name): int(count) for name, count in labeled["label"].value_counts().sort_index().items()}
    features = {}
    for name in config.features:
        groups = {label: labeled.loc[labeled["label"] == label, name] for label in label_counts}
        features[name] = feature_reference(usable[name], config.bins, groups if len(groups) >= 2 else None)
    return {
        "format": REFERENCE_FORMAT,
        "created_at": utc_now(),
        "source": source,
        "images": len(usable),
        "label_counts": label_counts,
        "bins": config.bins,
        "features": features,
        **dict(extra or {}),
    }


def add_feature(reference: dict[str, Any], name: str, values: Iterable[float]) -> dict[str, Any]:
    """Add a feature (e.g. ``crack_probability`` of the holdout) to a reference profile."""
    bins = int(reference.get("bins", DriftConfig().bins))
    return {**reference, "features": {**reference["features"], name: feature_reference(values, bins)}}


def save_reference(reference: Mapping[str, Any], uri: str) -> None:
    """Write a reference profile to a local path or an ``s3://`` object."""
    store, key = split_uri(uri)
    data = (json.dumps(reference, indent=2, sort_keys=True) + "\n").encode()
    store.write(key, data, content_type="application/json")


class DamagedReferenceError(CrackModelError):
    """A drift reference that is not one, or not whole: drift cannot be measured against it."""


def load_reference(uri: str) -> dict[str, Any]:
    """Read a reference profile, checking it is one, whole (``DamagedReferenceError`` if not)."""
    try:
        reference = json.loads(read_uri(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedReferenceError(
            f"drift reference {uri} is not JSON ({error}): build it with drift.build_reference"
        ) from None
    if not isinstance(reference, dict) or reference.get("format") != REFERENCE_FORMAT:
        raise DamagedReferenceError(f"{uri} is not a drift reference profile (expected format {REFERENCE_FORMAT})")
    if problem := reference_problem(reference):
        raise DamagedReferenceError(f"drift reference {uri} is damaged: {problem}; build it again (register the model "
                                    "again, or drift.build_reference) or restore it from a backup")  # fmt: skip
    return reference


def reference_problem(reference: Mapping[str, Any]) -> str | None:
    """What keeps ``compare`` from reading a reference profile (None: nothing)."""
    features, label_counts = reference.get("features"), reference.get("label_counts", {})
    if not isinstance(features, dict):
        return "'features' is not an object of features"
    if not isinstance(label_counts, dict) or not all(_is_count(count) for count in label_counts.values()):
        return "'label_counts' is not an object of image counts"
    for name, spec in features.items():
        edges = spec.get("edges") if isinstance(spec, dict) else None
        if not _numbers(edges) or any(later <= earlier for earlier, later in itertools.pairwise(edges)):
            return f"feature {name}: 'edges' is not a list of increasing numbers"
        if not _numbers(spec.get("proportions")) or len(spec["proportions"]) != len(edges) + 1:
            return f"feature {name}: 'proportions' is not a list of {len(edges) + 1} numbers (one per bin)"
        if not _is_count(spec.get("count")) or not spec["count"]:
            return f"feature {name}: 'count' is not a positive number of images"
        by_label = spec.get("by_label", {})
        if not isinstance(by_label, dict) or not all(
            _numbers(shares) and len(shares) == len(edges) + 1 for shares in by_label.values()
        ):
            return f"feature {name}: 'by_label' does not give each class {len(edges) + 1} shares"
    return None


def _numbers(values: Any) -> TypeGuard[list[float]]:
    return isinstance(values, list) and all(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) for value in values
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def compare(profile: pd.DataFrame, reference: Mapping[str, Any], config: DriftConfig | None = None) -> dict[str, Any]:
    """PSI per feature of a batch's profile against a reference; ``drifted`` is None when not judged.

    Returns:
        ``{"checked", "drifted", "psi", "psi_unadjusted", "class_mix", "drifted_features", "threshold",
        "images", "reference_images", "note"}``; ``psi`` is measured against the best-fitting class mix.
    """
    config = config or DriftConfig()
    usable = profile[profile["decodable"].astype(bool)] if "decodable" in profile else profile
    report = not_judged("", config, images=len(usable), reference_images=reference.get("images"))
    if len(usable) < config.min_images:
        report["note"] = (
            f"not judged: {len(usable)} decodable image(s), fewer than the {config.min_images} "
            "a population stability index needs to be meaningful"
        )
        return report
    features = {name: spec for name, spec in reference.get("features", {}).items() if name in usable.columns}
    if not features:
        report["note"] = "not judged: the batch profile has none of the reference's features"
        return report
    pseudo = config.pseudo_count
    observed = {}
    for name, spec in features.items():
        values = _finite(usable[name])
        observed[name] = smooth(bin_proportions(values, spec["edges"]), values.size, pseudo)
    report["psi_unadjusted"] = {
        name: round(population_stability_index(smooth(spec["proportions"], spec["count"], pseudo), observed[name]), 6)
        for name, spec in features.items()
    }
    label_counts = reference.get("label_counts", {})
    best_total, best_mix, best_psi = math.inf, {}, dict(report["psi_unadjusted"])
    for mix in _class_mixes(list(label_counts), label_counts):
        psi = {name: _mixed_psi(spec, observed[name], mix, label_counts, pseudo) for name, spec in features.items()}
        total = sum(psi.values())
        if total < best_total:
            best_total, best_mix, best_psi = total, mix, psi
    report["psi"] = {name: round(value, 6) for name, value in best_psi.items()}
    report["class_mix"] = {label: round(weight, 4) for label, weight in best_mix.items()}
    drifted = sorted(name for name, value in report["psi"].items() if value > config.psi_threshold)
    report.update(checked=True, drifted=bool(drifted), drifted_features=drifted)
    if drifted:
        shown = ", ".join(f"{name} PSI {report['psi'][name]:.2f}" for name in drifted)
        report["note"] = (
            f"drifted from the training data ({shown} > {config.psi_threshold}, whatever the share of cracks): "
            "the photos differ from what the model was trained on (surface, lighting, camera or resolution); "
            "review the scores and consider labeling some of these images for retraining"
        )
    else:
        report["note"] = f"no drift: every feature's PSI is at most {config.psi_threshold}"
    log.info("drift: %s", report["note"])
    return report


def not_judged(
    note: str, config: DriftConfig | None = None, *, images: int = 0, reference_images: int | None = None
) -> dict[str, Any]:
    """A drift report (as ``compare`` returns) that judged nothing, saying why in ``note``."""
    return {
        "checked": False,
        "drifted": None,
        "psi": {},
        "psi_unadjusted": {},
        "class_mix": {},
        "drifted_features": [],
        "threshold": (config or DriftConfig()).psi_threshold,
        "images": images,
        "reference_images": reference_images,
        "note": note,
    }


def _class_mixes(labels: Sequence[str], counts: Mapping[str, int], step: float = 0.05) -> Iterator[dict[str, float]]:
    """Candidate class mixes: the training mix, then a grid over the simplex (two or three classes)."""
    total = sum(counts.values())
    if total:
        yield {label: counts[label] / total for label in labels}
    if not 2 <= len(labels) <= 3:
        return
    steps = round(1 / step)
    for weights in itertools.product(range(steps + 1), repeat=len(labels) - 1):
        if sum(weights) <= steps:
            shares = [weight / steps for weight in weights]
            yield dict(zip(labels, [*shares, 1 - sum(shares)], strict=True))


def smooth(shares: Sequence[float] | np.ndarray, count: int, pseudo_count: float) -> np.ndarray:
    """Shares of ``count`` values with ``pseudo_count`` added to every bin."""
    array = np.asarray(shares, dtype=np.float64)
    return (array * count + pseudo_count) / (count + pseudo_count * array.size)


def _mixed_psi(
    spec: Mapping[str, Any],
    observed: np.ndarray,
    mix: Mapping[str, float],
    label_counts: Mapping[str, int],
    pseudo_count: float,
) -> float:
    by_label = spec.get("by_label")
    if not mix or not by_label or any(label not in by_label for label in mix):
        # A feature without per-class shares (e.g. a score added later): compare with the overall shares.
        return population_stability_index(smooth(spec["proportions"], spec["count"], pseudo_count), observed)
    shares = [
        weight * smooth(by_label[label], label_counts[label], pseudo_count) for label, weight in mix.items() if weight
    ]
    return population_stability_index(np.sum(shares, axis=0), observed)


def _finite(values: Iterable[float] | np.ndarray) -> np.ndarray:
    """Values as float64 with missing (None, NaN, pd.NA) and infinite ones left out."""
    if isinstance(values, np.ndarray):
        array = values.astype(np.float64)
    elif hasattr(values, "to_numpy"):  # a pandas Series, possibly nullable (Int64) with pd.NA
        array = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        array = np.asarray([np.nan if value is None else value for value in values], dtype=np.float64)
    return array[np.isfinite(array)]


def describe(report: Mapping[str, Any]) -> str:
    """One line for logs and the CLI."""
    if not report.get("checked"):
        return f"drift {report.get('note') or 'not checked'}"
    values = ", ".join(f"{name} {value:.3f}" for name, value in sorted(report["psi"].items()))
    flag = "DRIFTED" if report["drifted"] else "ok"
    return f"drift {flag} (PSI {values}; threshold {report['threshold']})" if values else "drift: no features"
