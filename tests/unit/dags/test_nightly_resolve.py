"""The nightly DAG's resolve_model task: the version and the runtime pinned once, a wrong choice failed at once."""

from __future__ import annotations

import re

import pytest

from tests.unit.dags.nightly_dag import nightly_task


@pytest.fixture(scope="module")
def resolve_model():
    """The task's own function, from the DAG file as Airflow parses it."""
    return nightly_task("resolve_model")


def test_a_runtime_the_gate_did_not_approve_fails_the_run_without_retries(
    tmp_path, trained_model, resolve_model, monkeypatch
):
    """AirflowFailException, not a retried error: a refused runtime stays refused, from the param or the Variable."""
    from airflow.sdk.exceptions import AirflowFailException

    from crack_model.core.local_store import LocalStore
    from crack_model.registry.versions import Registry

    registry = Registry(LocalStore(tmp_path / "store"))
    version = registry.register(trained_model.output_dir, "crack", actor="tester")
    registry.add_gate_result("crack", version, report={"decision": "promote"}, html="<p>gate</p>",
                             approved_runtimes=["litert-fp32", "keras"])  # fmt: skip
    params = {"store": str(tmp_path / "store"), "model": f"models:/crack/{version}"}
    with pytest.raises(AirflowFailException, match="runtime litert-int8 is not approved"):
        resolve_model(params={**params, "runtime": "litert-int8"})
    assert resolve_model(params={**params, "runtime": "litert-fp32"})["runtime"] == "litert-fp32"
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_RUNTIME", raising=False)
    assert resolve_model(params=params)["runtime"] == "auto"  # a run triggered before the param existed
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_RUNTIME", "litert-int8")
    refused_by_variable = r"not approved .*\(runtime 'litert-int8' from Variable crack_runtime\)"
    with pytest.raises(AirflowFailException, match=refused_by_variable):
        resolve_model(params={**params, "runtime": None})
    assert resolve_model(params={**params, "runtime": "keras"})["runtime"] == "keras"  # the param wins
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_RUNTIME", "fp32")
    with pytest.raises(AirflowFailException, match=r"unknown runtime 'fp32'.*Variable crack_runtime"):
        resolve_model(params={**params, "runtime": None})
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_RUNTIME", "litert-fp32")
    with pytest.raises(AirflowFailException) as missing:  # not the runtime's fault: the Variable goes unmentioned
        resolve_model(params={**params, "runtime": None, "model": "models:/crack/20991231T000000Z-deadbeef"})
    assert "no registered version" in str(missing.value) and "Variable" not in str(missing.value)
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_RUNTIME")
    with pytest.raises(AirflowFailException, match="no registered version 20991231T000000Z-deadbeef"):
        resolve_model(params={**params, "model": "models:/crack/20991231T000000Z-deadbeef"})


def test_batch_ids_that_are_not_batches_fail_the_run_naming_each(tmp_path, resolve_model):
    """A mistyped id was validated into a lasting "failed validation" batch the overview offered to release."""
    from airflow.sdk.exceptions import AirflowFailException

    from crack_model.core.local_store import LocalStore

    store = LocalStore(tmp_path / "store")
    store.write("incoming/b3/a.jpg", b"jpeg")
    params = {"store": str(tmp_path / "store"), "model": "models:/crack@champion"}
    with pytest.raises(AirflowFailException) as refused:
        resolve_model(params={**params, "batch_ids": ["b3", "nope", " b2"], "release_batches": ["b3", "../x"]})
    message = str(refused.value)
    assert f"batch 'nope' has nothing under {tmp_path / 'store' / 'incoming' / 'nope'}" in message
    assert "invalid batch id ' b2'" in message and "invalid batch id '../x'" in message
    assert "'b3'" not in message and "check batch_ids and release_batches" in message
    assert not (tmp_path / "store" / "validation").exists()


def test_a_released_batch_the_run_does_not_validate_fails_the_run(tmp_path, resolve_model):
    """Released but not among batch_ids (or no batch_ids: the night picks its own): ignored, and the run was green."""
    from airflow.sdk.exceptions import AirflowFailException

    from crack_model.core.local_store import LocalStore

    store = LocalStore(tmp_path / "store")
    for batch_id in ("2026-11-24", "blank-frames"):
        store.write(f"incoming/{batch_id}/a.jpg", b"jpeg")
    params = {"store": str(tmp_path / "store"), "model": "models:/crack@champion"}
    not_validated = "batch 'blank-frames' is released but this run does not validate it: add it to batch_ids"
    for batch_ids in (["2026-11-24"], []):
        with pytest.raises(AirflowFailException, match=re.escape(not_validated)):
            resolve_model(params={**params, "batch_ids": batch_ids, "release_batches": ["blank-frames"]})
    with pytest.raises(AirflowFailException) as refused:  # released and named: past the batch checks, to the model
        resolve_model(params={**params, "batch_ids": ["blank-frames"], "release_batches": ["blank-frames"]})
    assert "batches named" not in str(refused.value)


def test_the_tile_budget_is_pinned_from_the_param_else_the_variable(
    tmp_path, trained_model, resolve_model, monkeypatch
):
    """A drone site keeps its budget in the Variable crack_max_tiles (scheduled nights carry no param); a wrong one
    fails the run at once, naming the Variable, before any batch is validated at one scale and scored at another."""
    from airflow.sdk.exceptions import AirflowFailException

    params = {"store": str(tmp_path / "store"), "model": str(trained_model.output_dir), "runtime": "keras"}
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_MAX_TILES", raising=False)
    assert resolve_model(params=params)["max_tiles"] == 512
    assert resolve_model(params={**params, "max_tiles": 2048})["max_tiles"] == 2048
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_MAX_TILES", "1024")
    assert resolve_model(params=params)["max_tiles"] == 1024
    assert resolve_model(params={**params, "max_tiles": 64})["max_tiles"] == 64  # the param wins
    assert resolve_model(params={**params, "max_tiles": 1000.0})["max_tiles"] == 1000  # JSON Schema's integer
    for wrong, said in (("4096", "must be from 64 to 2048"), ("lots", "must be an integer from 64 to 2048")):
        monkeypatch.setenv("AIRFLOW_VAR_CRACK_MAX_TILES", wrong)
        with pytest.raises(AirflowFailException, match=rf"Variable crack_max_tiles is '{wrong}': .*{said}.*512"):
            resolve_model(params=params)


def test_the_max_tiles_param_has_the_range_the_library_accepts():
    """The DAG file cannot import the library's constants (parsing stays light): the two ranges must agree."""
    import importlib.util

    from airflow.sdk.definitions.param import ParamValidationError

    from crack_model.core.tiling import MAX_TILE_BUDGET, MIN_TILE_BUDGET
    from tests.unit.dags.nightly_dag import DAGS

    spec = importlib.util.spec_from_file_location("nightly_params_under_test", DAGS / "crack_nightly_scoring.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    param = module.crack_nightly_scoring().params.get_param("max_tiles")
    assert param.schema["minimum"] == MIN_TILE_BUDGET and param.schema["maximum"] == MAX_TILE_BUDGET
    assert param.resolve(None) is None and param.resolve(2048) == 2048
    for refused in (MIN_TILE_BUDGET - 1, MAX_TILE_BUDGET + 1, "512"):
        with pytest.raises(ParamValidationError):
            param.resolve(refused)
