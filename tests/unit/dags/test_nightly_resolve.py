"""The nightly DAG's resolve_model task: the version and the runtime pinned once, a wrong choice failed at once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

DAG_FILE = Path(__file__).resolve().parents[3] / "dags" / "crack_nightly_scoring.py"


@pytest.fixture(scope="module")
def resolve_model():
    """The task's own function, from the DAG file as Airflow parses it."""
    spec = importlib.util.spec_from_file_location("crack_nightly_scoring_under_test", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.crack_nightly_scoring().get_task("resolve_model").python_callable


def test_a_runtime_the_gate_did_not_approve_fails_the_run_without_retries(tmp_path, trained_model, resolve_model):
    """AirflowFailException, not a retried error: a refused runtime stays refused."""
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
    assert resolve_model(params=params)["runtime"] == "auto"  # a run triggered before the param existed
    with pytest.raises(AirflowFailException, match="no registered version 20991231T000000Z-deadbeef"):
        resolve_model(params={**params, "model": "models:/crack/20991231T000000Z-deadbeef"})
