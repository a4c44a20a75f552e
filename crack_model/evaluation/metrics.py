"""Metrics for a crack classifier, crack recall first, and the decision threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from crack_model.evaluation.intervals import Outcomes, point_figures


def choose_threshold(
    is_crack: Sequence[bool] | np.ndarray,
    crack_probability: Sequence[float] | np.ndarray,
    target_recall: float,
    *,
    ceiling: float = 0.5,
) -> float:
    """The highest threshold that still catches ``target_recall`` of the cracks, at most ``ceiling``.

    The threshold only ever moves down from the ceiling: a missed crack costs more than a
    false alarm, so a confident model keeps the default instead of trading recall for precision.
    """
    if not 0 < target_recall <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    truth = np.asarray(is_crack, dtype=bool)
    probability = np.asarray(crack_probability, dtype=np.float64)
    crack_scores = np.sort(probability[truth])[::-1]
    if crack_scores.size == 0:
        return ceiling
    # Labelling crack when p >= t catches every crack scored >= t; the k-th highest
    # crack score is the largest t that catches k of them.
    needed = max(1, math.ceil(target_recall * crack_scores.size - 1e-9))
    return float(min(ceiling, crack_scores[needed - 1]))


def choose_slice_threshold(
    is_crack: Sequence[bool] | np.ndarray,
    crack_probability: Sequence[float] | np.ndarray,
    slices: Sequence[str],
    target_recall: float,
    *,
    ceiling: float = 0.5,
    min_slice_images: int = 10,
) -> tuple[float, dict[str, float]]:
    """A threshold that reaches ``target_recall`` overall and on every slice with enough images.

    A new site's few photos would hardly move an overall recall target: its cracks can be
    missed wholesale while the old site's carry the average. Each slice with at least
    ``min_slice_images`` images (and a crack) gets its own ``choose_threshold``; the lowest wins.

    Returns:
        (threshold, {slice: the threshold that slice alone needs}) for the slices considered.
    """
    truth = np.asarray(is_crack, dtype=bool)
    probability = np.asarray(crack_probability, dtype=np.float64)
    names = np.asarray(list(slices), dtype=object)
    if not len(truth) == len(probability) == len(names):
        raise ValueError("one crack probability and one slice per label are required")
    overall = choose_threshold(truth, probability, target_recall, ceiling=ceiling)
    per_slice: dict[str, float] = {}
    for name in sorted(set(names.tolist())):
        mask = names == name
        if mask.sum() >= min_slice_images and truth[mask].any():
            per_slice[name] = choose_threshold(truth[mask], probability[mask], target_recall, ceiling=ceiling)
    return min([overall, *per_slice.values()]), per_slice


def predicted_labels(
    probabilities: np.ndarray, threshold: float, class_names: Sequence[str], crack_class: str
) -> list[str]:
    """Crack when its probability reaches the threshold, else the most likely other class."""
    crack_index = list(class_names).index(crack_class)
    others = probabilities.copy()
    others[:, crack_index] = -1.0
    labels = []
    for row, other_row in zip(probabilities, others, strict=True):
        index = crack_index if row[crack_index] >= threshold else int(np.argmax(other_row))
        labels.append(class_names[index])
    return labels


def misclassified(
    images: Sequence[Any], probabilities: np.ndarray, *, threshold: float, class_names: Sequence[str], crack_class: str,
    predicted: Sequence[str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The images labeled wrongly, surest first: which ones a model misses says more than how many.

    ``images`` have ``uri``, ``label`` and ``slice`` (``LabeledImage``); ``predicted`` as for ``compute_metrics``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    crack_index = list(class_names).index(crack_class)
    if predicted is None:
        predicted = predicted_labels(probabilities, threshold, class_names, crack_class)
    wrong = [
        {"uri": image.uri, "slice": image.slice, "label": image.label, "predicted": label,
         "crack_probability": round(float(row[crack_index]), 4)}
        for image, label, row in zip(images, predicted, probabilities, strict=True)
        if label != image.label
    ]  # fmt: skip
    return sorted(wrong, key=lambda entry: -abs(entry["crack_probability"] - threshold))


def compute_metrics(
    true_labels: Sequence[str],
    probabilities: np.ndarray,
    *,
    threshold: float,
    class_names: Sequence[str],
    crack_class: str,
    predicted: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All evaluation figures, crack recall first, as plain JSON-ready values.

    ``predicted``: the labels the model gave (a full-size photo's comes from the photo rule, not from
    its highest tile against ``threshold``); None: crack when the crack probability reaches ``threshold``.
    A figure with nothing to count is None, as the gate's are (``intervals.point_figures``): crack recall without
    cracks, crack precision without crack calls, F1 without either.
    """
    from sklearn import metrics

    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(true_labels) != len(probabilities):
        raise ValueError("one probability row per true label is required")
    if len(true_labels) == 0:
        raise ValueError("cannot compute metrics on zero images")
    crack_index = list(class_names).index(crack_class)
    if predicted is None:
        predicted = predicted_labels(probabilities, threshold, class_names, crack_class)
    elif len(predicted) != len(true_labels):
        raise ValueError("one predicted label per true label is required")
    is_crack = np.array([label == crack_class for label in true_labels])
    says_crack = np.array([label == crack_class for label in predicted])
    crack_probability = probabilities[:, crack_index]
    both_present = 0 < is_crack.sum() < len(is_crack)
    true_indices = [list(class_names).index(label) for label in true_labels]
    clipped = np.clip(probabilities, 1e-7, 1.0)
    matrix = metrics.confusion_matrix(true_labels, predicted, labels=list(class_names))
    # A slice without cracks read "crack recall 0.0" (every crack missed) where it has no recall at all.
    correct = np.array([truth == guess for truth, guess in zip(true_labels, predicted, strict=True)])
    defined = point_figures(Outcomes(is_crack, says_crack, correct))
    return {
        "crack_recall": defined["crack_recall"],
        "crack_precision": defined["crack_precision"],
        "crack_f1": defined["crack_f1"],
        "accuracy": float(metrics.accuracy_score(true_labels, predicted)),
        "roc_auc": float(metrics.roc_auc_score(is_crack, crack_probability)) if both_present else None,
        "pr_auc": float(metrics.average_precision_score(is_crack, crack_probability)) if both_present else None,
        "loss": float(
            metrics.log_loss(
                true_indices, clipped / clipped.sum(axis=1, keepdims=True), labels=list(range(len(class_names)))
            )
        ),
        "threshold": float(threshold),
        "images": len(true_labels),
        "cracks": int(is_crack.sum()),
        "missed_cracks": int((is_crack & ~says_crack).sum()),
        "false_alarms": int((~is_crack & says_crack).sum()),
        "confusion_matrix": {"labels": list(class_names), "rows_true_columns_predicted": matrix.tolist()},
        "classification_report": metrics.classification_report(
            true_labels, predicted, labels=list(class_names), output_dict=True, zero_division=0
        ),
    }
