"""Tell people when the gate rejects a candidate: the log, the store, and an optional webhook."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

log = logging.getLogger(__name__)

WEBHOOK_VARIABLE = "crack_notify_webhook"


def notify_gate_decision(store: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Record the decision under ``models/<name>/notifications/`` and POST it to the webhook, if one is set."""
    from airflow.sdk import Variable

    from crack_model.core.clock import utc_now
    from crack_model.core.storage import open_store

    message = {**summary, "notified_at": utc_now()}
    key = f"models/{summary['name']}/notifications/{message['notified_at']}-{summary['candidate_version']}.json"
    open_store(store).write(key, (json.dumps(message, indent=2) + "\n").encode(), content_type="application/json")
    log.warning(
        "gate %s candidate %s (champion %s): failed checks %s",
        summary["decision"], summary["candidate_version"], summary.get("champion_version"), summary["failed_checks"],
    )  # fmt: skip
    url = Variable.get(WEBHOOK_VARIABLE, default=None)
    if url:
        request = urllib.request.Request(url, data=json.dumps(message).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            message["webhook_status"] = response.status
    return message
