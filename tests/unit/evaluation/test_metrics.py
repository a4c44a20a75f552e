"""Metrics against hand-computed values, and threshold selection for a target crack recall."""

from __future__ import annotations

import numpy as np
import pytest

from crack_model.data.labeled import LabeledImage
from crack_model.evaluation.metrics import choose_threshold, compute_metrics, misclassified, predicted_labels

CLASSES = ("Negative", "Positive")


def rows(crack_probabilities):
    p = np.asarray(crack_probabilities, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_metrics_match_hand_computation():
    """4 cracks (3 caught), 4 clean (1 false alarm): recall 3/4, precision 3/4, accuracy 6/8."""
    truth = ["Positive"] * 4 + ["Negative"] * 4
    probability = [0.9, 0.8, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05]
    metrics = compute_metrics(truth, rows(probability), threshold=0.5, class_names=CLASSES, crack_class="Positive")
    assert metrics["crack_recall"] == pytest.approx(0.75)
    assert metrics["crack_precision"] == pytest.approx(0.75)
    assert metrics["crack_f1"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["missed_cracks"] == 1 and metrics["false_alarms"] == 1
    # Rows are true labels, columns predicted, in class order (Negative, Positive).
    assert metrics["confusion_matrix"]["rows_true_columns_predicted"] == [[3, 1], [1, 3]]
    # ROC AUC: of the 16 (crack, clean) pairs, the crack scores higher in 13.
    assert metrics["roc_auc"] == pytest.approx(13 / 16)
    expected_loss = -np.mean(np.log([0.9, 0.8, 0.6, 0.2, 0.3, 0.7, 0.9, 0.95]))
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert next(iter(metrics)) == "crack_recall"


def test_lower_threshold_trades_precision_for_recall():
    """At threshold 0.15 every crack is caught, at the cost of two more false alarms."""
    truth = ["Positive"] * 4 + ["Negative"] * 4
    probability = [0.9, 0.8, 0.6, 0.2, 0.7, 0.3, 0.1, 0.05]
    metrics = compute_metrics(truth, rows(probability), threshold=0.15, class_names=CLASSES, crack_class="Positive")
    assert metrics["crack_recall"] == 1.0
    assert metrics["crack_precision"] == pytest.approx(4 / 6)


def test_single_class_truth_has_no_auc():
    """ROC and PR AUC are undefined (None) when the truth has one class only."""
    metrics = compute_metrics(
        ["Negative"] * 3, rows([0.1, 0.2, 0.7]), threshold=0.5, class_names=CLASSES, crack_class="Positive"
    )
    assert metrics["roc_auc"] is None and metrics["pr_auc"] is None
    assert metrics["accuracy"] == pytest.approx(2 / 3)


def test_figures_with_nothing_to_count_are_none_not_zero():
    """A slice without cracks read crack recall 0.0 (every crack missed) in metrics.json; the gate says None."""
    clean = compute_metrics(
        ["Negative"] * 3, rows([0.1, 0.2, 0.7]), threshold=0.5, class_names=CLASSES, crack_class="Positive"
    )
    assert clean["crack_recall"] is None and clean["cracks"] == 0
    assert clean["crack_precision"] == 0.0 and clean["crack_f1"] == 0.0  # one false alarm: defined, and bad
    quiet = compute_metrics(
        ["Negative", "Positive"], rows([0.1, 0.2]), threshold=0.5, class_names=CLASSES, crack_class="Positive"
    )
    assert quiet["crack_precision"] is None and quiet["crack_recall"] == 0.0  # no crack calls: no precision
    nothing = compute_metrics(["Negative"], rows([0.1]), threshold=0.5, class_names=CLASSES, crack_class="Positive")
    assert nothing["crack_recall"] is None and nothing["crack_precision"] is None and nothing["crack_f1"] is None


def test_threshold_reaches_target_recall():
    """The threshold is the highest that catches the target share of validation cracks."""
    is_crack = [True] * 10 + [False] * 10
    probability = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.45, 0.3, 0.1] + [0.05] * 10
    assert choose_threshold(is_crack, probability, 0.9) == pytest.approx(0.3)
    assert choose_threshold(is_crack, probability, 1.0) == pytest.approx(0.1)
    threshold = choose_threshold(is_crack, probability, 0.8)
    recall = np.mean(np.array(probability[:10]) >= threshold)
    assert recall >= 0.8 and threshold == pytest.approx(0.45)


def test_threshold_never_rises_above_the_ceiling():
    """A confident model keeps the 0.5 default: the threshold only moves to catch more cracks."""
    assert choose_threshold([True, True, False], [0.99, 0.98, 0.01], 0.99) == 0.5


def test_threshold_rejects_a_bad_target():
    with pytest.raises(ValueError, match="target recall"):
        choose_threshold([True], [0.5], 1.5)


def test_predicted_labels_use_the_threshold():
    """Crack whenever its probability reaches the threshold, else the other class."""
    labels = predicted_labels(rows([0.3, 0.5, 0.2]), 0.3, CLASSES, "Positive")
    assert labels == ["Positive", "Positive", "Negative"]


def test_misclassified_names_the_wrong_images_surest_first():
    """Only the images on the wrong side of the threshold, each with its label and score, furthest from it first."""
    images = [LabeledImage(f"/{label}/{index}.jpg", label, slice=f"site-{index}") for index, label in
              enumerate(["Positive", "Positive", "Negative", "Negative", "Positive"])]  # fmt: skip
    wrong = misclassified(images, rows([0.9, 0.45, 0.95, 0.1, 0.02]), threshold=0.5, class_names=CLASSES,
                          crack_class="Positive")  # fmt: skip
    assert [(entry["uri"], entry["slice"], entry["predicted"], entry["crack_probability"]) for entry in wrong] == [
        ("/Positive/4.jpg", "site-4", "Negative", 0.02),
        ("/Negative/2.jpg", "site-2", "Positive", 0.95),
        ("/Positive/1.jpg", "site-1", "Negative", 0.45),
    ]
