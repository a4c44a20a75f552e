"""Tell people when the gate rejects a candidate: the log, the store, and an optional webhook."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from crack_model.pipelines.retraining import mark_notification_sent, record_gate_notification
from crack_model.pipelines.stores import ObjectStore

log = logging.getLogger(__name__)

WEBHOOK_VARIABLE = "crack_notify_webhook"


def notify_gate_decision(store: ObjectStore, decision: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """Keep the decision under ``models/<name>/notifications/`` and POST it to the webhook Variable, if set.

    Once per run and candidate version: a retried task neither records nor posts it again.
    Returns the message (with ``notified_at``, and ``webhook_status`` when it was posted).
    """
    from airflow.sdk import Variable

    message, unsent = record_gate_notification(store, decision, run_id)
    if not unsent:
        log.info("gate decision on %s already notified in this run", decision["candidate_version"])
        return message
    log.warning(
        "gate %s candidate %s (champion %s): failed checks %s",
        decision["decision"], decision["candidate_version"], decision.get("champion_version"),
        decision["failed_checks"],
    )  # fmt: skip
    url = Variable.get(WEBHOOK_VARIABLE, default=None)
    details: dict[str, Any] = {}
    if url:
        body = {key: value for key, value in message.items() if key != "sent"}
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            details["webhook_status"] = response.status
    return mark_notification_sent(store, message, **details)
