"""crack_retraining's train_candidate: a recipe no retry can mend fails at once, before the pool is downloaded."""

from __future__ import annotations

import re

import pytest

from crack_model.pipelines.retraining import SettingsError, check_settings
from tests.unit.dags.nightly_dag import dag_task


def test_an_unknown_pooled_layer_fails_the_task_without_retries_before_the_pool_is_read(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    def never(*args, **kwargs):
        raise AssertionError("the pool must not be downloaded for a recipe that cannot train")

    monkeypatch.setattr("crack_model.pipelines.retraining.download_labeled", never)
    train_candidate = dag_task("crack_retraining", "train_candidate")
    params = {"store": str(tmp_path), "model_name": "crack", "pooled_layers": ["block_99_relu"]}
    with pytest.raises(AirflowFailException, match=r"\['block_99_relu'\] are not layers of MobileNetV2"):
        train_candidate({"quarantined": []}, params=params, run_id="manual")


def test_settings_that_cannot_train_are_settings_errors():
    with pytest.raises(SettingsError, match="out_relu is the base's last layer"):
        check_settings({"pooled_layers": ["out_relu"]})
    with pytest.raises(SettingsError, match="retraining settings: seam_share must not be negative"):
        check_settings({"seam_share": -1})
    assert check_settings({"pooled_layers": [" block_13_expand_relu ", ""]})[1].pooled_layers == (
        "block_13_expand_relu",
    )


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"slice_balance": 2}, "slice_balance must be from 0 (none) to 1 (full), got 2.0"),
        ({"crack_weight": 0}, "crack_weight must be above 0"),
        ({"crack_weight": -1}, "crack_weight must be above 0"),
        ({"fine_tune_layers": -3}, "fine_tune_layers must be 0 (the base frozen) or more, got -3"),
        ({"augmented_views": -1}, "augmented_views must be 0 (none) or more, got -1"),
    ],
)
def test_numbers_out_of_range_are_settings_errors(settings, said):
    """The DAG's params (and retrain's options) are checked before training, not deep inside it."""
    with pytest.raises(SettingsError, match=f"retraining settings: {re.escape(said)}"):
        check_settings(settings)


def test_a_model_name_or_weights_file_no_training_can_use_are_settings_errors(tmp_path):
    """Found after the training (89 s here, hours in production, three times with retries) until now."""
    with pytest.raises(SettingsError, match="retraining settings: invalid model name 'crack v2'"):
        check_settings({}, name="crack v2")
    with pytest.raises(SettingsError, match=f"weights file {tmp_path / 'none.h5'} does not exist"):
        check_settings({"weights": str(tmp_path / "none.h5")}, name="crack")
    assert check_settings({"weights": "none"}, name="crack-v2")[1].weights == "none"


def test_a_store_without_a_holdout_is_refused_before_training_when_the_gate_follows():
    """validate_pool said holdout_images 0 without a word, and the gate failed only after the training."""
    from crack_model.pipelines.retraining import PoolValidationError, require_holdout

    with pytest.raises(PoolValidationError, match=r"no holdout under holdout/<class>/ in the store: the gate judges"):
        require_holdout({"outcome": "passed", "holdout_images": 0})
    require_holdout({"outcome": "passed", "holdout_images": 60})


def test_the_first_task_refuses_bad_settings_before_the_pool_and_a_missing_holdout_before_training(
    tmp_path, monkeypatch
):
    """validate_labeled_pool checks every setting before the pool is read, and the holdout before training."""
    from airflow.sdk.exceptions import AirflowFailException

    validate = dag_task("crack_retraining", "validate_labeled_pool")
    params = {"store": str(tmp_path), "model_name": "crack v2", "holdout": None}
    monkeypatch.setattr(
        "crack_model.pipelines.retraining.validate_pool", lambda store, **options: pytest.fail("pool read")
    )
    with pytest.raises(AirflowFailException, match="invalid model name 'crack v2'"):
        validate(params=params)

    pool = {"outcome": "passed", "objects": 200, "quarantined": [], "holdout_images": 0}
    checked_against = []
    monkeypatch.setattr("crack_model.pipelines.retraining.validate_pool",
                        lambda store, holdout=None: checked_against.append(holdout) or pool)  # fmt: skip
    with pytest.raises(AirflowFailException, match="no holdout under holdout/<class>/"):
        validate(params={**params, "model_name": "crack"})
    holdout = tmp_path / "elsewhere" / "holdout"
    for label in ("Negative", "Positive"):
        (holdout / label).mkdir(parents=True)
        (holdout / label / "a.jpg").write_bytes(b"jpeg")
    assert validate(params={**params, "model_name": "crack", "holdout": str(holdout)}) == pool
    assert checked_against == [None, str(holdout)]  # the pool is checked against the holdout the gate reads


def holdout_of(root, *labels: str) -> str:
    """A holdout folder with one image of each of ``labels``."""
    for label in labels:
        (root / label).mkdir(parents=True)
        (root / label / "a.jpg").write_bytes(b"jpeg")
    return str(root)


def test_a_gate_policy_or_holdout_the_gate_cannot_use_is_a_settings_error(tmp_path):
    """A mistyped policy or holdout param passed the first task and failed the gate after training, three times."""
    policy = tmp_path / "no-such-policy.json"
    with pytest.raises(SettingsError, match=f"retraining settings: gate policy {policy} does not exist"):
        check_settings({"policy": str(policy)})
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SettingsError, match="is not valid JSON"):
        check_settings({"policy": str(tmp_path / "broken.json")})
    with pytest.raises(SettingsError, match=f"holdout {tmp_path / 'typo'} has no images"):
        check_settings({"holdout": str(tmp_path / "typo")})
    with pytest.raises(SettingsError, match="has no images of class Positive"):
        check_settings({"holdout": holdout_of(tmp_path / "half", "Negative")})
    check_settings({"holdout": holdout_of(tmp_path / "whole", "Negative", "Positive"), "policy": None})


def test_the_first_task_refuses_a_mistyped_policy_before_the_pool_is_read(tmp_path, monkeypatch):
    """The DAG's first task checks every setting, as the CHANGELOG says: the gate's ones too."""
    from airflow.sdk.exceptions import AirflowFailException

    validate = dag_task("crack_retraining", "validate_labeled_pool")
    monkeypatch.setattr(
        "crack_model.pipelines.retraining.validate_pool", lambda store, **options: pytest.fail("pool read")
    )
    params = {"store": str(tmp_path), "model_name": "crack", "holdout": None, "policy": str(tmp_path / "typo.json")}
    with pytest.raises(AirflowFailException, match=r"gate policy .*typo\.json does not exist"):
        validate(params=params)
