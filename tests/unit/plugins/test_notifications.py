"""notify_gate_decision: the decision is kept in the store and POSTed to the webhook Variable when set."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from crack_model.core.local_store import LocalStore

DECISION = {"name": "crack", "candidate_version": "20261124T030000Z-abcd1234", "champion_version": None,
            "decision": "reject", "failed_checks": ["floor.crack_recall"], "promoted": False}  # fmt: skip


@pytest.fixture()
def webhook():
    """A real HTTP server on loopback that records the bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def stored_notifications(store: LocalStore) -> list[dict]:
    return [json.loads(store.read(info.key)) for info in store.list("models/crack/notifications/")]


def test_the_decision_is_stored_and_posted(tmp_path, webhook, monkeypatch):
    """With crack_notify_webhook set, the same message lands in the store and at the webhook (status recorded)."""
    from crack_ops.notifications import notify_gate_decision

    url, received = webhook
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_NOTIFY_WEBHOOK", url)
    store = LocalStore(tmp_path)
    message = notify_gate_decision(store, DECISION)

    assert message["webhook_status"] == 204
    (stored,) = stored_notifications(store)
    assert received == [
        {key: value for key, value in stored.items() if key not in ("sent", "sent_at", "webhook_status")}
    ]
    assert stored["failed_checks"] == ["floor.crack_recall"] and stored["notified_at"]


def test_without_a_webhook_the_decision_is_only_stored(tmp_path, monkeypatch):
    """No webhook Variable: nothing is posted, the notification is still kept under models/<name>/notifications/."""
    from crack_ops.notifications import notify_gate_decision

    monkeypatch.delenv("AIRFLOW_VAR_CRACK_NOTIFY_WEBHOOK", raising=False)
    store = LocalStore(tmp_path)
    message = notify_gate_decision(store, DECISION)

    assert "webhook_status" not in message
    assert [n["candidate_version"] for n in stored_notifications(store)] == [DECISION["candidate_version"]]


def test_a_retried_task_neither_records_nor_posts_the_notice_again(tmp_path, webhook, monkeypatch):
    """Same run, same candidate: one stored notice and one POST however often the task runs; a new run notifies."""
    from crack_ops.notifications import notify_gate_decision

    url, received = webhook
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_NOTIFY_WEBHOOK", url)
    store = LocalStore(tmp_path)
    first = notify_gate_decision(store, DECISION, "manual__2026-11-24")
    again = notify_gate_decision(store, DECISION, "manual__2026-11-24")

    assert len(received) == 1 and len(stored_notifications(store)) == 1
    assert again["notified_at"] == first["notified_at"] and again["sent"] is True
    notify_gate_decision(store, DECISION, "manual__2026-11-25")
    assert len(received) == 2 and len(stored_notifications(store)) == 2


def test_a_notice_recorded_but_not_sent_is_sent_by_the_retry(tmp_path, webhook, monkeypatch):
    """A try that died between recording and posting: the retry posts it (once) and marks it sent."""
    from crack_ops.notifications import notify_gate_decision

    from crack_model.pipelines.retraining import record_gate_notification

    url, received = webhook
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_NOTIFY_WEBHOOK", url)
    store = LocalStore(tmp_path)
    record_gate_notification(store, DECISION, "manual__2026-11-24")  # the first try stopped here

    message = notify_gate_decision(store, DECISION, "manual__2026-11-24")

    assert len(received) == 1 and message["sent"] is True and message["webhook_status"] == 204
