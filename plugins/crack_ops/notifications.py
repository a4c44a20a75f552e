"""Tell people when the gate rejects a candidate: the log, the store, and an optional webhook."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from crack_model.pipelines.stores import ObjectStore

log = logging.getLogger(__name__)

WEBHOOK_VARIABLE = "crack_notify_webhook"


def notify_gate_decision(store: ObjectStore, decision: dict[str, Any]) -> dict[str, Any]:
    """Keep the decision under ``models/<name>/notifications/`` and POST it to the webhook Variable, if set.

    Returns the message sent (with ``notified_at``, and ``webhook_status`` when it was posted).
    """
    from airflow.sdk import Variable

    from crack_model.pipelines.retraining import record_gate_notification

    message = record_gate_notification(store, decision)
    log.warning(
        "gate %s candidate %s (champion %s): failed checks %s",
        decision["decision"], decision["candidate_version"], decision.get("champion_version"),
        decision["failed_checks"],
    )  # fmt: skip
    url = Variable.get(WEBHOOK_VARIABLE, default=None)
    if url:
        request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            message["webhook_status"] = response.status
    return message
