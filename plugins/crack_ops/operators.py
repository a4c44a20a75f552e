"""The holdout gate as an operator: evaluate a candidate against the champion, maybe promote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from crack_ops.hooks import CrackStoreHook


class GateOperator(AwsBaseOperator[CrackStoreHook]):
    """Run the retraining's gate step on a registered candidate; push the decision summary to XCom.

    The decision (``promote`` or ``reject``) is data, not a task failure: a rejected candidate
    leaves the champion untouched and the task succeeds. Pass the candidate and its model name as
    XComArgs (``candidate_version=candidate["version"]``, ``model_name=candidate["model_name"]``);
    templated fields render as native values, so ``promote="{{ params.promote }}"`` is a boolean
    and a None param stays None. Native rendering also parses plain strings: a model name or version
    that looks like a number ("2026", given as a template or as text) would arrive as one, so text
    fields that are not text are refused; XComArgs arrive untouched.

    :param candidate_version: the registered version to gate.
    :param model_name: the registry's model name (the candidate's, as an XComArg).
    :param store: the store URI (default: Variable ``crack_store``, else env ``CRACK_STORE``, else AIRFLOW_HOME).
    :param holdout: a folder or store prefix (default: ``<store>/holdout``).
    :param policy: a gate policy JSON (default: the versioned one).
    :param promote: make a passing candidate champion (False: gate and report only).
    """

    aws_hook_class = CrackStoreHook
    template_fields: Sequence[str] = aws_template_fields(
        "store", "model_name", "candidate_version", "holdout", "policy", "promote"
    )
    ui_color = "#f5e6c8"

    def __init__(
        self,
        *,
        candidate_version: str,
        store: str | None = None,
        model_name: str = "crack",
        holdout: str | None = None,
        policy: str | None = None,
        promote: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("render_template_as_native_obj", True)
        super().__init__(**kwargs)
        self.candidate_version = candidate_version
        self.store = store
        self.model_name = model_name
        self.holdout = holdout
        self.policy = policy
        self.promote = promote

    @property
    def _hook_parameters(self) -> dict[str, Any]:
        return {**super()._hook_parameters, "store": self.store}

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from crack_model.pipelines.retraining import (  # TensorFlow: not at DAG parse
            GatedBeforeError,
            SettingsError,
            gate_candidate,
        )

        if not isinstance(self.promote, bool):  # the text "False" would be truthy and promote
            msg = f"promote must be a boolean, got {self.promote!r}: pass a bool or a template of a boolean param"
            raise TypeError(msg)
        if self.candidate_version is None or self.model_name is None:  # XComArgs of a task that pushed nothing
            msg = (
                "no candidate to gate: the task that registers it (train_candidate) returned nothing, as when it is "
                "marked success without running; clear it (and the tasks after it) to train and gate a candidate"
            )
            raise AirflowFailException(msg)
        for field in ("model_name", "candidate_version", "store", "holdout", "policy", "aws_conn_id"):
            value = getattr(self, field)
            if not (isinstance(value, str) or (value is None and field not in ("model_name", "candidate_version"))):
                msg = (
                    f"{field} must be text, got {value!r} ({type(value).__name__}): rendering as native values "
                    "turns text that looks like a number into one; pass it as an XComArg (an upstream task's output)"
                )
                raise TypeError(msg)
        try:
            summary = gate_candidate(
                self.hook.get_store(),
                self.model_name,
                self.candidate_version,
                holdout=self.holdout,
                policy=self.policy,
                promote=self.promote,
                actor=f"airflow:{self.dag_id}",
                run_id=context["run_id"],
            )
        except SettingsError as error:  # a policy that cannot be read stays so: no retries, as train_candidate
            raise AirflowFailException(str(error)) from None
        except GatedBeforeError as error:
            # The champion moved after this candidate was gated (a promotion or rollback while the gate ran: its
            # try failed "re-run the gate"), or the policy or holdout changed: each retry or clear met the same
            # write-once report, and clearing train_candidate returns the same registered version.
            msg = (
                f"{error}. In Airflow: trigger a new {self.dag_id} run (or clear validate_labeled_pool and the tasks "
                "after it) to train and gate a new version; clearing evaluate_gate cannot gate this one"
            )
            raise AirflowFailException(msg) from None
        self.log.info("gate decision for %s: %s %s", self.candidate_version, summary["decision"],
                      summary["failed_checks"])  # fmt: skip
        return summary
