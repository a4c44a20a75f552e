"""Which of a run's alerts went out through which channel: ``alerts/<run_id>.json``, so that a retried task sends
nothing twice (the alerts themselves are decided in ``alerts``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from crack_model.core import layout
from crack_model.core.clock import utc_now
from crack_model.core.documents import FORMAT_VERSION, check_format_version
from crack_model.core.errors import CrackModelError
from crack_model.core.object_keys import ObjectStore
from crack_model.core.storage import open_store
from crack_model.pipelines.alerts import Alert
from crack_model.pipelines.stores import StoreLike


def record_alerts(store: StoreLike, run_id: str, alerts: Iterable[Alert]) -> list[dict[str, Any]]:
    """Keep the run's alerts in ``alerts/<run_id>.json`` (an alert already there keeps its record).

    Returns every alert's record, each with ``sent_via`` (channel -> when it went out through it).
    """
    opened = open_store(store)
    document = _read(opened, run_id)
    recorded: dict[str, dict[str, Any]] = document["alerts"]
    for alert in alerts:
        recorded.setdefault(alert.alert_id, {**alert.as_dict(), "raised_at": utc_now(), "sent_via": {}})
    _write(opened, run_id, document)
    return list(recorded.values())


def mark_alert_sent(store: StoreLike, run_id: str, alert_id: str, channel: str) -> dict[str, Any]:
    """Record that an alert went out through ``channel``, so a retried task does not send it there again."""
    opened = open_store(store)
    document = _read(opened, run_id)
    if alert_id not in document["alerts"]:
        raise CrackModelError(f"alert {alert_id} is not recorded for run {run_id}: record_alerts first")
    record = document["alerts"][alert_id]
    record["sent_via"] = {**record.get("sent_via", {}), channel: utc_now()}
    _write(opened, run_id, document)
    return dict(record)


def _read(store: ObjectStore, run_id: str) -> dict[str, Any]:
    key = layout.alerts_key(run_id)
    if not store.exists(key):
        return {"format_version": FORMAT_VERSION, "run_id": run_id, "alerts": {}}
    document = dict(json.loads(store.read(key)))
    check_format_version(document, "alerts record", store.url(key))
    document.setdefault("alerts", {})
    return document


def _write(store: ObjectStore, run_id: str, document: Mapping[str, Any]) -> None:
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    store.write(layout.alerts_key(run_id), data, content_type="application/json")
