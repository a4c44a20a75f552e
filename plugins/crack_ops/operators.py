"""The holdout gate as an operator: evaluate a candidate against the champion, maybe promote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from crack_ops.hooks import CrackStoreHook


class GateOperator(BaseOperator):
    """Run crack_model's gate on a registered candidate; push the decision summary to XCom.

    The decision (``promote`` or ``reject``) is data, not a task failure: a rejected
    candidate leaves the champion untouched and the task succeeds.
    """

    template_fields: Sequence[str] = (
        "store", "aws_conn_id", "model_name", "candidate_version", "holdout", "policy", "promote",
    )  # fmt: skip
    ui_color = "#f5e6c8"

    def __init__(
        self,
        *,
        candidate_version: str,
        store: str | None = None,
        aws_conn_id: str | None = "aws_default",
        model_name: str = "crack",
        holdout: str | None = None,
        policy: str | None = None,
        promote: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.candidate_version = candidate_version
        self.store = store
        self.aws_conn_id = aws_conn_id
        self.model_name = model_name
        self.holdout = holdout
        self.policy = policy
        self.promote = promote

    def execute(self, context: Any) -> dict[str, Any]:
        from crack_model.evaluation.gate import run_gate

        store = CrackStoreHook(self.store, self.aws_conn_id).configure()
        report = run_gate(
            store,
            self.model_name,
            self.candidate_version,
            self.holdout or None,
            self.policy or None,
            promote=str(self.promote).strip().lower() in ("true", "1", "yes"),  # templated params render as text
            actor=f"airflow:{context['dag'].dag_id}",
            run_id=context["run_id"],
        )
        summary = report.summary()
        self.log.info("gate decision for %s: %s %s", self.candidate_version, report.decision, report.failed_checks)
        return summary
