"""GateOperator: the retraining's gate step with native arguments and the run's store."""

from __future__ import annotations

from typing import Any

import pytest

PARAMS = {"store": None, "model_name": "crack", "holdout": None, "policy": None, "promote": False}


@pytest.fixture()
def gate_calls(monkeypatch) -> list[dict[str, Any]]:
    """Replace the pipelines' gate step with a recorder (the real gate is tested in tests/unit/evaluation)."""
    calls: list[dict[str, Any]] = []

    def gate_candidate(store, name, candidate_version, **options):
        calls.append({"store": store, "name": name, "candidate_version": candidate_version, **options})
        return {"name": name, "candidate_version": candidate_version, "decision": "reject", "failed_checks": ["x"]}

    monkeypatch.setattr("crack_model.pipelines.retraining.gate_candidate", gate_candidate)
    return calls


def templated_gate(store: str, **overrides: Any):
    from crack_ops.operators import GateOperator

    operator = GateOperator(
        task_id="evaluate_gate", candidate_version="20261124T030000Z-abcd1234", store="{{ params.store }}",
        model_name="{{ params.model_name }}", holdout="{{ params.holdout }}", policy="{{ params.policy }}",
        promote="{{ params.promote }}",
    )  # fmt: skip
    operator.render_template_fields({"params": {**PARAMS, "store": store, **overrides}})
    return operator


def test_execute_passes_native_values_and_the_open_store(tmp_path, gate_calls):
    """promote=False stays the boolean False (not the truthy text "False"); None stays None; the store is open."""
    result = templated_gate(str(tmp_path)).execute({"run_id": "manual__2026-11-24"})

    (call,) = gate_calls
    assert call["promote"] is False
    assert call["holdout"] is None and call["policy"] is None
    assert call["store"].uri == str(tmp_path)
    assert call["candidate_version"] == "20261124T030000Z-abcd1234"
    assert call["run_id"] == "manual__2026-11-24"
    assert result["decision"] == "reject"


def test_a_text_promote_flag_is_refused(tmp_path, gate_calls):
    """A promote value that is not a bool (e.g. the text "False") fails before any gate runs."""
    from crack_ops.operators import GateOperator

    operator = GateOperator(task_id="evaluate_gate", candidate_version="v1", store=str(tmp_path), promote="False")
    with pytest.raises(TypeError, match="promote must be a boolean"):
        operator.execute({"run_id": "manual"})
    assert gate_calls == []


def test_the_candidate_arrives_as_an_xcomarg(tmp_path):
    """Given a task's output["version"], the gate depends on that task and reads its "version" XCom, no Jinja."""
    from airflow.sdk import DAG, task
    from crack_ops.operators import GateOperator

    with DAG("gate_wiring", schedule=None):

        @task(multiple_outputs=True)
        def train_candidate() -> dict[str, str]:
            return {"version": "v1"}

        candidate = train_candidate()
        gate = GateOperator(task_id="evaluate_gate", candidate_version=candidate["version"], store=str(tmp_path))

    assert gate.upstream_task_ids == {"train_candidate"}
    assert gate.candidate_version.key == "version"


def test_a_model_name_that_looks_like_a_number_is_refused_not_changed(tmp_path, gate_calls):
    """Rendered natively, "{{ params.model_name }}" of "2026" is the int 2026: refused, never gated as another name."""
    operator = templated_gate(str(tmp_path), model_name="2026")
    assert operator.model_name == 2026  # what native rendering does to such a name
    with pytest.raises(TypeError, match="model_name must be text, got 2026"):
        operator.execute({"run_id": "manual"})
    assert gate_calls == []


def test_a_policy_that_cannot_be_read_fails_the_gate_without_retries(tmp_path):
    """A mistyped policy was retried three times after the training; now the task fails for good, saying why."""
    from airflow.sdk.exceptions import AirflowFailException

    operator = templated_gate(str(tmp_path / "store"), policy=str(tmp_path / "no-such-policy.json"))
    with pytest.raises(AirflowFailException, match=r"gate settings: gate policy .*no-such-policy.json does not exist"):
        operator.execute({"run_id": "manual"})


@pytest.mark.parametrize("missing", ["candidate_version", "model_name"])
def test_a_train_candidate_marked_success_fails_the_gate_naming_it(tmp_path, gate_calls, missing):
    """Marked success without running, train_candidate pushes no version or name: the gate got None and said to pass
    an XComArg (which it was), as a TypeError retried twice."""
    from airflow.sdk.exceptions import AirflowFailException
    from crack_ops.operators import GateOperator

    arguments = {"candidate_version": "v1", "model_name": "crack", missing: None}
    operator = GateOperator(task_id="evaluate_gate", store=str(tmp_path), **arguments)
    with pytest.raises(AirflowFailException, match=r"no candidate to gate: .*train_candidate.*marked success"):
        operator.execute({"run_id": "manual"})
    assert gate_calls == []


def test_a_candidate_gated_before_against_another_champion_fails_without_retries_saying_what_to_do(
    tmp_path, monkeypatch
):
    """The champion moved while the gate ran (two retrainings at once, a rollback from the ops view): the try failed
    with PromotionConflictError, and each retry, like a clear of evaluate_gate, met the write-once report
    (GateReportExistsError). The retries stop, and the failure says how to gate a new version from Airflow."""
    from airflow.sdk.exceptions import AirflowFailException

    from crack_model.registry.naming import GateReportExistsError

    def gated_before(*args, **kwargs):
        raise GateReportExistsError(
            "crack version v2 was gated before (gate_report.html) and the champion is v3 now, the report compared "
            "against v1; gate reports are write-once: register a new version to gate it again"
        )

    monkeypatch.setattr("crack_model.pipelines.retraining.gate_candidate", gated_before)
    operator = templated_gate(str(tmp_path / "store"))
    with pytest.raises(AirflowFailException, match=r"champion is v3 now.* trigger a new \S+ run .*validate_labeled"):
        operator.execute({"run_id": "manual"})
