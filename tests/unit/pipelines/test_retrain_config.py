"""DAG params and CLI options become training configs: what is given is used, the rest keeps the defaults."""

from __future__ import annotations

import pytest

from crack_model.core.config import ModelConfig, TrainConfig
from crack_model.pipelines.retraining import retrain_config


def test_given_params_reach_the_configs():
    data, model, training = retrain_config(
        {"epochs": "12", "fine_tune_layers": 20, "slice_balance": 0.5, "crack_weight": "2.5",
         "target_recall": 0.98, "weights": "none", "image_size": 160, "seam_share": "0",
         "zoom_factor": "0", "anchor_weight": "0", "pooled_layers": ["block_13_expand_relu"]}
    )  # fmt: skip
    assert (training.epochs, training.fine_tune_layers) == (12, 20)
    assert (training.slice_balance, training.crack_weight, training.target_recall) == (0.5, 2.5, 0.98)
    assert training.seam_share == 0.0  # 0 turns seam examples off; it must not fall back to the default
    assert training.anchor_weight == 0.0  # 0: start from the champion without the pull, not the default pull
    assert model.weights == "none"
    assert model.zoom_factor == 0.0  # 0 turns zoom off; it must not fall back to the default
    assert model.pooled_layers == ("block_13_expand_relu",)
    assert data.image_size == 160


def test_without_a_weights_param_the_workers_weights_file_is_used(monkeypatch):
    """An air-gapped worker names its weights file in $CRACK_MODEL_WEIGHTS; a scheduled run gives no param."""
    monkeypatch.setenv("CRACK_MODEL_WEIGHTS", "/opt/weights/base.h5")
    assert retrain_config({"weights": None})[1].weights == "/opt/weights/base.h5"
    assert retrain_config({"weights": "none"})[1].weights == "none"  # a param still wins


def test_missing_or_null_params_keep_the_defaults(monkeypatch):
    monkeypatch.delenv("CRACK_MODEL_WEIGHTS", raising=False)
    _, model, training = retrain_config({"crack_weight": None, "epochs": None, "seam_share": None,
                                         "zoom_factor": None, "anchor_weight": None})  # fmt: skip
    assert training == TrainConfig()
    assert model == ModelConfig()


def test_a_negative_seam_share_is_refused():
    with pytest.raises(ValueError, match="seam_share must not be negative"):
        TrainConfig(seam_share=-0.1)


def test_the_retrain_command_passes_the_input_size_to_the_configs():
    """A size the retraining loop could not be asked for was a lever only ``train`` had."""
    from crack_model.cli.main import build_parser
    from crack_model.cli.retrain_command import retrain_settings

    parse = build_parser().parse_args
    assert retrain_config(retrain_settings(parse(["retrain", "--store", "s"])))[0].image_size == 224
    chosen = retrain_settings(parse(["retrain", "--store", "s", "--image-size", "288"]))
    assert retrain_config(chosen)[0].image_size == 288


def test_the_retrain_command_passes_pooled_layers_and_an_empty_list_means_none():
    from crack_model.cli.main import build_parser
    from crack_model.cli.retrain_command import retrain_settings

    parse = build_parser().parse_args
    chosen = retrain_settings(
        parse(["retrain", "--store", "s", "--pooled-layers", "block_6_expand_relu, block_13_expand_relu"])
    )
    assert retrain_config(chosen)[1].pooled_layers == ("block_6_expand_relu", "block_13_expand_relu")
    assert retrain_config({"pooled_layers": []})[1].pooled_layers == ()
