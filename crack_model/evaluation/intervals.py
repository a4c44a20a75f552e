"""Bootstrap confidence intervals for crack metrics, single and paired, resampling images.

Pure NumPy on per-image outcomes (is it a crack, did the model say crack, was the label
right), so a thousand resamples of a few thousand images take milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_METRICS = ("crack_recall", "crack_precision", "accuracy", "crack_f1")
_CHUNK = 200  # resamples per block: bounds memory at _CHUNK x images


@dataclass(frozen=True)
class Outcomes:
    """Per-image outcomes of one model on one image set, in the same image order for every model."""

    is_crack: np.ndarray  # bool (N,)
    says_crack: np.ndarray  # bool (N,)
    correct: np.ndarray  # bool (N,): predicted label == true label

    def subset(self, mask: np.ndarray) -> Outcomes:
        return Outcomes(self.is_crack[mask], self.says_crack[mask], self.correct[mask])

    def __len__(self) -> int:
        return len(self.is_crack)


def figures(is_crack: np.ndarray, says_crack: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics along the last axis; NaN where undefined (no cracks: recall; no crack calls: precision)."""
    true_positive = np.sum(is_crack & says_crack, axis=-1).astype(np.float64)
    cracks = np.sum(is_crack, axis=-1).astype(np.float64)
    called = np.sum(says_crack, axis=-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(cracks > 0, true_positive / cracks, np.nan)
        precision = np.where(called > 0, true_positive / called, np.nan)
        f1 = np.where(cracks + called > 0, 2 * true_positive / (cracks + called), np.nan)
    accuracy = np.mean(correct, axis=-1)
    return {"crack_recall": recall, "crack_precision": precision, "accuracy": accuracy, "crack_f1": f1}


def point_figures(outcomes: Outcomes) -> dict[str, float | None]:
    """The metrics of one image set (None where undefined)."""
    values = figures(outcomes.is_crack, outcomes.says_crack, outcomes.correct)
    return {name: _number(float(value)) for name, value in values.items()}


def _resamples(count: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    remaining = resamples
    while remaining > 0:
        size = min(_CHUNK, remaining)
        yield rng.integers(0, count, size=(size, count))
        remaining -= size


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float] | None:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def intervals(outcomes: Outcomes, *, resamples: int, confidence: float, seed: int) -> dict[str, list[float] | None]:
    """Percentile bootstrap interval of each metric over images: metric -> [low, high] (None if undefined)."""
    if len(outcomes) == 0:
        return dict.fromkeys(BOOTSTRAP_METRICS)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in BOOTSTRAP_METRICS}
    for index in _resamples(len(outcomes), resamples, seed):
        values = figures(outcomes.is_crack[index], outcomes.says_crack[index], outcomes.correct[index])
        for name in BOOTSTRAP_METRICS:
            collected[name].append(values[name])
    return {name: _as_list(_interval(np.concatenate(parts), confidence)) for name, parts in collected.items()}


def exact_intervals(outcomes: Outcomes, *, confidence: float) -> dict[str, list[float] | None]:
    """Clopper-Pearson intervals for the proportion metrics: honest where the bootstrap is not.

    A perfect score resamples to a perfect score, so the bootstrap says [1, 1] after 30 cracks
    out of 30; the exact binomial interval says the true recall may be as low as 0.88.
    """
    from scipy.stats import beta

    true_positive = int(np.sum(outcomes.is_crack & outcomes.says_crack))
    counts = {
        "crack_recall": (true_positive, int(np.sum(outcomes.is_crack))),
        "crack_precision": (true_positive, int(np.sum(outcomes.says_crack))),
        "accuracy": (int(np.sum(outcomes.correct)), len(outcomes)),
    }
    tail = (1 - confidence) / 2
    result: dict[str, list[float] | None] = {}
    for name, (hits, total) in counts.items():
        if total == 0:
            result[name] = None
            continue
        low = 0.0 if hits == 0 else float(beta.ppf(tail, hits, total - hits + 1))
        high = 1.0 if hits == total else float(beta.ppf(1 - tail, hits + 1, total - hits))
        result[name] = [round(low, 6), round(high, 6)]
    return result


def paired_difference_intervals(
    candidate: Outcomes, champion: Outcomes, *, resamples: int, confidence: float, seed: int
) -> dict[str, list[float] | None]:
    """Interval of candidate minus champion per metric, both scored on the same resampled images."""
    if len(candidate) != len(champion):
        raise ValueError("paired bootstrap needs both models' outcomes on the same images")
    if not np.array_equal(candidate.is_crack, champion.is_crack):
        raise ValueError("paired bootstrap needs the same images in the same order for both models")
    if len(candidate) == 0:
        return dict.fromkeys(BOOTSTRAP_METRICS)
    collected: dict[str, list[np.ndarray]] = {name: [] for name in BOOTSTRAP_METRICS}
    for index in _resamples(len(candidate), resamples, seed):
        new = figures(candidate.is_crack[index], candidate.says_crack[index], candidate.correct[index])
        old = figures(champion.is_crack[index], champion.says_crack[index], champion.correct[index])
        for name in BOOTSTRAP_METRICS:
            collected[name].append(new[name] - old[name])
    return {name: _as_list(_interval(np.concatenate(parts), confidence)) for name, parts in collected.items()}


def within_noise(interval: list[float] | None) -> bool | None:
    """True when a difference interval includes 0: the holdout cannot tell the models apart."""
    if interval is None:
        return None
    return interval[0] <= 0 <= interval[1]


def _number(value: float) -> float | None:
    return None if np.isnan(value) else value


def _as_list(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [round(interval[0], 6), round(interval[1], 6)]
