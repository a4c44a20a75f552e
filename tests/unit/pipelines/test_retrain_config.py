"""DAG params and CLI options become training configs: what is given is used, the rest keeps the defaults."""

from __future__ import annotations

from crack_model.core.config import TrainConfig
from crack_model.pipelines.retraining import retrain_config


def test_given_params_reach_the_configs():
    data, model, training = retrain_config(
        {"epochs": "12", "fine_tune_layers": 20, "slice_balance": 0.5, "crack_weight": "2.5",
         "target_recall": 0.98, "weights": "none", "image_size": 160}
    )  # fmt: skip
    assert (training.epochs, training.fine_tune_layers) == (12, 20)
    assert (training.slice_balance, training.crack_weight, training.target_recall) == (0.5, 2.5, 0.98)
    assert model.weights == "none"
    assert data.image_size == 160


def test_missing_or_null_params_keep_the_defaults():
    _, _, training = retrain_config({"crack_weight": None, "epochs": None})
    assert training == TrainConfig()
