"""crack_ops.notifications: alerts go out through the HTTP and SMTP providers' notifiers on Connections.

The connections are defined the way a deployment can define them, as ``AIRFLOW_CONN_*`` variables
(JSON form), and point at real servers on loopback (tests/local_servers.py).
"""

from __future__ import annotations

import contextlib
import json
import logging

import pytest

from crack_model.core import layout
from crack_model.core.documents import BatchSummary
from crack_model.core.local_store import LocalStore
from crack_model.pipelines.nightly import publish_run_summary
from crack_model.pipelines.retraining import record_gate_notification
from crack_model.quality.outcome import ValidationOutcome
from tests.local_servers import smtp_server, webhook_server

DECISION = {"name": "crack", "candidate_version": "20261124T030000Z-abcd1234", "champion_version": None,
            "decision": "reject", "failed_checks": ["floor.crack_recall"], "promoted": False}  # fmt: skip
RUN = "scheduled__2026-11-24T02:00:00+00:00"
FROM, TO = "crack-model@example.org", ["oncall@example.org", "qa@example.org"]


@pytest.fixture()
def no_connections(monkeypatch):
    """Neither notification connection exists (nor the old webhook Variable)."""
    for name in ("CONN_CRACK_NOTIFY_HTTP", "CONN_CRACK_NOTIFY_SMTP", "VAR_CRACK_NOTIFY_WEBHOOK"):
        monkeypatch.delenv(f"AIRFLOW_{name}", raising=False)
    # A process's first connection lookup sets up Airflow's logging, which took away the handler caplog had put in
    # place: a test checking a warning saw none when it ran first in its process. Looked up once here, before.
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    with contextlib.suppress(AirflowNotFoundException):
        BaseHook.get_connection("crack_notify_http")
    return monkeypatch


@pytest.fixture()
def webhook(no_connections):
    """A real webhook server, and the ``crack_notify_http`` connection (JSON form) whose Host is its URL."""
    with webhook_server() as hook:
        no_connections.setenv("AIRFLOW_CONN_CRACK_NOTIFY_HTTP", json.dumps({"conn_type": "http", "host": hook.url}))
        yield hook


@pytest.fixture()
def mailbox(no_connections):
    """A real SMTP server on loopback and the ``crack_notify_smtp`` connection to it (sender, recipients in extra)."""
    with smtp_server() as box:
        extra = {"from_email": FROM, "to": ", ".join(TO), "disable_ssl": True, "disable_tls": True}
        connection = {"conn_type": "smtp", "host": "127.0.0.1", "port": box.port, "extra": extra}
        no_connections.setenv("AIRFLOW_CONN_CRACK_NOTIFY_SMTP", json.dumps(connection))
        yield box


def stored_notifications(store: LocalStore) -> list[dict]:
    return [json.loads(store.read(info.key)) for info in store.list("models/crack/notifications/")]


def test_a_rejection_is_stored_and_posted_through_the_http_connection(tmp_path, webhook):
    """HttpNotifier POSTs the alert (with a chat-ready text line) to the connection's URL; the store says so."""
    from crack_ops.notifications import notify_gate_decision

    store = LocalStore(tmp_path)
    message = notify_gate_decision(store, DECISION, "manual__2026-11-24")

    (body,) = webhook.received
    assert body["kind"] == "candidate_rejected"
    assert body["id"] == f"candidate_rejected:crack/{DECISION['candidate_version']}"
    assert body["details"]["failed_checks"] == ["floor.crack_recall"] and body["run_id"] == "manual__2026-11-24"
    assert body["text"].startswith("[crack-model] the gate rejected candidate 20261124T030000Z-abcd1234")
    (stored,) = stored_notifications(store)
    assert stored["sent"] is True and list(stored["sent_via"]) == ["http"] and message["sent_via"] == stored["sent_via"]


def test_a_rejection_is_mailed_through_the_smtp_connection(tmp_path, mailbox):
    """SmtpNotifier hands the alert to a real SMTP server: sender, recipients from the connection; details escaped."""
    from crack_ops.notifications import notify_gate_decision

    decision = {**DECISION, "failed_checks": ["floor.crack_recall", "slice<site-b>.accuracy"]}
    notify_gate_decision(LocalStore(tmp_path), decision, "manual__2026-11-24")

    ((sender, recipients, mail),) = mailbox.mails
    assert sender == FROM and recipients == TO
    assert mail["Subject"].startswith("[crack-model] the gate rejected candidate 20261124T030000Z-abcd1234")
    html = next(part for part in mail.walk() if part.get_content_type() == "text/html").get_payload(decode=True)
    assert b"slice&lt;site-b&gt;.accuracy" in html and b"<site-b>" not in html


def test_without_connections_the_decision_is_only_stored_with_one_warning(tmp_path, no_connections, caplog):
    """No connection: nothing is sent, the task does not fail, one warning names both missing connections."""
    from crack_ops.notifications import notify_gate_decision

    store = LocalStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="crack_ops.notifications"):
        message = notify_gate_decision(store, DECISION)

    assert message["sent"] is True and not message.get("sent_via")
    assert [n["candidate_version"] for n in stored_notifications(store)] == [DECISION["candidate_version"]]
    (warning,) = [record.getMessage() for record in caplog.records if "not sent through" in record.getMessage()]
    assert "'crack_notify_http'" in warning and "'crack_notify_smtp'" in warning


def test_a_url_in_the_old_webhook_variable_is_not_used(tmp_path, no_connections):
    """URLs live in Connections only: the retired crack_notify_webhook Variable receives nothing."""
    from crack_ops.notifications import notify_gate_decision

    with webhook_server() as hook:
        no_connections.setenv("AIRFLOW_VAR_CRACK_NOTIFY_WEBHOOK", hook.url)
        notify_gate_decision(LocalStore(tmp_path), DECISION)
        assert hook.received == []


def test_a_retried_task_neither_records_nor_posts_the_notice_again(tmp_path, webhook):
    """Same run, same candidate: one stored notice and one POST however often the task runs; a new run notifies."""
    from crack_ops.notifications import notify_gate_decision

    store = LocalStore(tmp_path)
    first = notify_gate_decision(store, DECISION, "manual__2026-11-24")
    again = notify_gate_decision(store, DECISION, "manual__2026-11-24")

    assert len(webhook.received) == 1 and len(stored_notifications(store)) == 1
    assert again["notified_at"] == first["notified_at"] and again["sent"] is True
    notify_gate_decision(store, DECISION, "manual__2026-11-25")
    assert len(webhook.received) == 2 and len(stored_notifications(store)) == 2


def test_a_notice_recorded_but_not_sent_is_sent_by_the_retry(tmp_path, webhook):
    """A try that died between recording and posting: the retry posts it (once) and marks it sent."""
    from crack_ops.notifications import notify_gate_decision

    store = LocalStore(tmp_path)
    record_gate_notification(store, DECISION, "manual__2026-11-24")  # the first try stopped here

    message = notify_gate_decision(store, DECISION, "manual__2026-11-24")

    assert len(webhook.received) == 1 and message["sent"] is True and "http" in message["sent_via"]


def test_a_pass_that_was_not_promoted_is_recorded_not_sent(tmp_path, webhook):
    """Evaluate-only runs end in announce_rejection too: a passing candidate is kept in the store, not alerted."""
    from crack_ops.notifications import notify_gate_decision

    store = LocalStore(tmp_path)
    notify_gate_decision(store, {**DECISION, "decision": "promote", "failed_checks": []}, "manual__2026-11-24")

    assert webhook.received == [] and [n["decision"] for n in stored_notifications(store)] == ["promote"]


def night(store: LocalStore) -> tuple[dict, list[dict]]:
    """A night with a batch that failed validation, a drifted one, and one with 20 % scoring errors."""
    drift = {"checked": True, "drifted": True, "psi": {"blur": 0.9}, "drifted_features": ["blur"], "threshold": 0.25,
             "images": 400, "note": "drifted"}  # fmt: skip
    outcomes = [
        ValidationOutcome("blank", "incoming", "failed", ["contrast_in_bounds: 12 of 12 fail"], [], {}, [], None, {}),
        ValidationOutcome("site-b", "incoming", "passed", [], [], {}, [], drift, {}),
    ]
    for outcome in outcomes:
        store.write(layout.validation_key(outcome.batch_id, layout.OUTCOME), json.dumps(outcome.to_dict()).encode())
    summary = BatchSummary(
        batch_id="site-b", model_version="V1", runtime="keras", threshold=0.4, objects=100,
        status_counts={"ok": 80, "error": 20}, label_counts={}, crack_class="Positive", cracks=0, crack_rate=0.0,
        shards=1, scoring_seconds=1.0, throughput_images_per_second=100.0, finished_at="2026-11-24T03:00:00Z",
    ).as_dict()  # fmt: skip
    validations = [{"batch_id": o.batch_id, "outcome": o.outcome, "reasons": o.reasons, "quarantined": 0,
                    "objects": 100, "drifted": o.batch_id == "site-b"} for o in outcomes]  # fmt: skip
    run_summary = publish_run_summary(store, RUN, validations, [summary], batch_ids=["blank", "site-b"],
                                      planned=["site-b"])  # fmt: skip
    return run_summary, [summary]


def test_a_nights_alerts_go_out_once_through_each_channel(tmp_path, webhook, mailbox):
    """Failed validation, drift and scoring errors are POSTed and mailed once each; a retry sends nothing more."""
    from crack_ops.notifications import notify_run

    store = LocalStore(tmp_path)
    run_summary, summaries = night(store)
    records = notify_run(store, RUN, run_summary, summaries, error_rate_alert=0.05)

    assert [body["id"] for body in webhook.received] == [
        "batch_failed_validation:blank", "drift:site-b", "scoring_errors:site-b"
    ]  # fmt: skip
    assert webhook.received[2]["details"]["error_rate"] == 0.2 and webhook.received[0]["run_id"] == RUN
    assert [mail["Subject"] for _, _, mail in mailbox.mails] == [f"[crack-model] {r['title']}" for r in records]
    assert all(sorted(record["sent_via"]) == ["http", "smtp"] for record in records)

    notify_run(store, RUN, run_summary, summaries, error_rate_alert=0.05)  # the task's retry
    assert len(webhook.received) == 3 and len(mailbox.mails) == 3
    stored = json.loads(store.read(layout.alerts_key(RUN)))
    assert sorted(stored["alerts"]) == ["batch_failed_validation:blank", "drift:site-b", "scoring_errors:site-b"]


def test_a_failing_webhook_fails_the_task_and_the_retry_sends_only_what_is_missing(tmp_path, webhook, mailbox):
    """HTTP 500: the mails still go out, NotificationError names the undelivered; the retry POSTs just those."""
    from crack_ops.notifications import NotificationError, notify_run

    store = LocalStore(tmp_path)
    run_summary, summaries = night(store)
    webhook.status = 500
    with pytest.raises(NotificationError, match=r"batch_failed_validation:blank via http \(crack_notify_http\)"):
        notify_run(store, RUN, run_summary, summaries)
    assert webhook.received == [] and len(mailbox.mails) == 3
    assert webhook.attempts == 1  # a 5xx: the service is down, not tried again in this try (a 413: see below)

    webhook.status = 204
    notify_run(store, RUN, run_summary, summaries)
    assert len(webhook.received) == 3 and len(mailbox.mails) == 3


def test_an_smtp_connection_without_recipients_is_skipped_with_a_warning(tmp_path, webhook, caplog):
    """A mail connection lacking 'to' is named in the warning and skipped; the webhook still gets the alert."""
    from crack_ops.notifications import notify_gate_decision

    with smtp_server() as box:
        connection = {"conn_type": "smtp", "host": "127.0.0.1", "port": box.port, "extra": {"from_email": FROM}}
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_CRACK_NOTIFY_SMTP", json.dumps(connection))
            with caplog.at_level(logging.WARNING, logger="crack_ops.notifications"):
                message = notify_gate_decision(LocalStore(tmp_path), DECISION, "manual__2026-11-24")
        assert box.mails == []
    assert len(webhook.received) == 1 and list(message["sent_via"]) == ["http"]
    assert any("'crack_notify_smtp' needs 'to' (addresses" in record.getMessage() for record in caplog.records)


def test_a_quiet_night_sends_and_records_nothing(tmp_path, webhook):
    """Every batch passed, no drift, no errors: no POST, and no alerts/<run_id>.json."""
    from crack_ops.notifications import notify_run

    store = LocalStore(tmp_path)
    validations = [{"batch_id": "calm", "outcome": "passed", "reasons": [], "quarantined": 0, "objects": 10,
                    "drifted": False}]  # fmt: skip
    run_summary = publish_run_summary(store, RUN, validations, [], batch_ids=["calm"])

    assert notify_run(store, RUN, run_summary, []) == []
    assert webhook.received == [] and not store.exists(layout.alerts_key(RUN))


def test_a_webhook_that_never_answers_costs_one_timeout_and_every_mail_goes_out(tmp_path, mailbox, no_connections):
    """A hanging webhook spent its timeout on every alert in turn: the task timed out before the later mails."""
    import socket

    from crack_ops.notifications import NotificationError, notify_run

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        connection = {"conn_type": "http", "host": url, "extra": {"timeout": "0.5"}}
        no_connections.setenv("AIRFLOW_CONN_CRACK_NOTIFY_HTTP", json.dumps(connection))
        store = LocalStore(tmp_path)
        run_summary, summaries = night(store)
        with pytest.raises(NotificationError, match="3 alert deliveries failed") as failure:
            notify_run(store, RUN, run_summary, summaries, error_rate_alert=0.05)
    assert len(mailbox.mails) == 3
    assert "drift:site-b via http: not tried, the channel failed before in this try" in str(failure.value)


@pytest.mark.parametrize(
    ("extra", "named"),
    [({"timeout": "abc"}, "its extra's timeout 'abc' is not a number of seconds"),
     ({"timeout": -1}, "its extra's timeout -1 is not a number of seconds")],
)  # fmt: skip
def test_a_malformed_webhook_connection_is_skipped_with_a_warning_naming_the_field(
    tmp_path, mailbox, no_connections, caplog, extra, named
):
    """A timeout that is no number crashed the task with a bare ValueError, and no channel sent anything."""
    from crack_ops.notifications import notify_run

    connection = {"conn_type": "http", "host": "http://127.0.0.1:9/hook", "extra": extra}
    no_connections.setenv("AIRFLOW_CONN_CRACK_NOTIFY_HTTP", json.dumps(connection))
    store = LocalStore(tmp_path)
    run_summary, summaries = night(store)
    with caplog.at_level(logging.WARNING, logger="crack_ops.notifications"):
        records = notify_run(store, RUN, run_summary, summaries, error_rate_alert=0.05)
    assert len(mailbox.mails) == 3 and all(list(record["sent_via"]) == ["smtp"] for record in records)
    assert any(f"connection 'crack_notify_http': {named}" in record.getMessage() for record in caplog.records)


def test_a_mail_connection_whose_to_is_no_address_is_skipped(tmp_path, webhook, no_connections, caplog):
    from crack_ops.notifications import notify_gate_decision

    extra = {"from_email": FROM, "to": 12345}
    connection = {"conn_type": "smtp", "host": "127.0.0.1", "port": 9, "extra": extra}
    no_connections.setenv("AIRFLOW_CONN_CRACK_NOTIFY_SMTP", json.dumps(connection))
    with caplog.at_level(logging.WARNING, logger="crack_ops.notifications"):
        message = notify_gate_decision(LocalStore(tmp_path), DECISION, "manual__2026-11-24")
    assert list(message["sent_via"]) == ["http"]
    assert any("'crack_notify_smtp' needs 'to' (addresses" in record.getMessage() for record in caplog.records)


def test_names_in_a_chat_text_are_inert_and_kept_as_they_are_in_the_other_fields():
    """An upload named ``<!here> <mailto:a@b.c|click me>.jpg`` pinged the whole Slack channel from the alert."""
    from crack_ops.notifications import http_body

    title = "1 upload(s) in no batch folder (incoming/<!here> <mailto:a@b.c|click me>.jpg) & @channel"
    body = http_body({"id": "x", "kind": "stray_uploads", "title": title, "details": {}})
    assert "<" not in body["text"] and ">" not in body["text"]
    assert "&lt;!here&gt; &lt;mailto:a@\u200bb.c|click me&gt;.jpg) &amp; @\u200bchannel" in body["text"]
    assert body["title"] == title


def test_a_name_in_a_chat_text_is_no_markdown_link_or_image():
    """Mattermost and Teams render Markdown: an upload named ``[Re-upload here](https:evil.example).jpg`` was a link
    in the on-call channel, ``![i](https:evil.example/p.png)`` an image fetched from anywhere when shown."""
    from crack_ops.notifications import http_body
    from markdown_it import MarkdownIt

    from crack_model.pipelines.alerts import _outside_batches

    key = "incoming/[Re-upload here](https:evil.example) ![i](https:evil.example/p.png).jpg"
    body = http_body(_outside_batches([key]).as_dict())
    rendered = MarkdownIt("commonmark").render(body["text"])
    assert "<a " not in rendered and "<img " not in rendered
    assert "[Re-upload here]\u200b(https:evil.example) ![i]\u200b(https:evil.example/p.png).jpg" in rendered
    assert body["details"]["keys"] == [key]


def test_an_alert_the_webhook_refuses_does_not_hold_back_the_others(tmp_path, webhook, mailbox):
    """A channel that answers is not given up on: it may refuse one payload (413) and take the rest."""
    from crack_ops.notifications import NotificationError, notify_run

    store = LocalStore(tmp_path)
    run_summary, summaries = night(store)
    webhook.refused_ids = {"batch_failed_validation:blank"}
    with pytest.raises(NotificationError, match=r"1 alert deliveries failed .*batch_failed_validation:blank via http"):
        notify_run(store, RUN, run_summary, summaries, error_rate_alert=0.05)
    assert [body["id"] for body in webhook.received] == ["drift:site-b", "scoring_errors:site-b"]
    assert len(mailbox.mails) == 3
