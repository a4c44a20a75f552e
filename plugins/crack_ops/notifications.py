"""Send the workflow's alerts through the HTTP and SMTP providers' notifiers, addressed by Connections.

What to alert about is decided in ``crack_model.pipelines.alerts``; this module only sends. Two
channels, each a Connection (URLs, passwords and addresses live there, never in Variables or code):

* ``crack_notify_http`` (type ``http``): ``HttpNotifier`` POSTs each alert as JSON to the connection's
  URL (put the whole webhook URL in Host). The body has a ``text`` line, so Slack, Mattermost or Teams
  incoming webhooks take it as it is.
* ``crack_notify_smtp`` (type ``smtp``): ``SmtpNotifier`` mails each alert; the connection's extra
  holds ``from_email`` (read by the SMTP hook) and ``to`` (a list or a comma-separated string).

DAG params ``notify_http_conn_id`` / ``notify_smtp_conn_id`` name other connections. A channel whose
connection is missing or incomplete is skipped with one warning: the alerts are still logged and kept
in the store, and the task does not fail. A channel that is configured but fails to send raises
``NotificationError`` after every alert and channel was tried; the task's retry sends only what is
still missing (each sent alert is recorded per channel).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from crack_model.pipelines.alert_records import mark_alert_sent, record_alerts
from crack_model.pipelines.alerts import (
    DEFAULT_ERROR_RATE_ALERT,
    Alert,
    gate_alert,
    run_alerts,
)
from crack_model.pipelines.retraining import (
    mark_notification_channel,
    mark_notification_sent,
    record_gate_notification,
)
from crack_model.pipelines.shown import module_logger
from crack_model.pipelines.stores import ObjectStore

log = module_logger(__name__)

HTTP_CONNECTION = "crack_notify_http"
SMTP_CONNECTION = "crack_notify_smtp"
SUBJECT_PREFIX = "[crack-model]"


class NotificationError(RuntimeError):
    """A configured channel failed to deliver; retrying the task sends what is still missing."""


@dataclass(frozen=True)
class Channel:
    """A way out for alerts: ``http`` or ``smtp``, through one connection."""

    name: str
    conn_id: str
    recipients: tuple[str, ...] = ()
    timeout: float = 30.0  # seconds; requests waits forever without one, until the task's own timeout

    def send(self, alert: Mapping[str, Any], context: Mapping[str, Any]) -> None:
        """Send one alert record through this channel's provider notifier (raises when it fails)."""
        if self.name == "http":
            from airflow.providers.http.notifications.http import HttpNotifier

            notifier: Any = HttpNotifier(
                http_conn_id=self.conn_id,
                json=http_body(alert),
                headers={"Content-Type": "application/json"},
                extra_options={"timeout": self.timeout},
            )
        else:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            notifier = SmtpNotifier(
                to=list(self.recipients),
                smtp_conn_id=self.conn_id,
                subject=f"{SUBJECT_PREFIX} {alert['title']}",
                html_content=mail_body(alert),
            )
        # notify(), not notifier(context): calling it would render the body as a Jinja template, and
        # reasons and keys are data (a "{{" in an upload's name must reach the reader as written).
        notifier.notify(dict(context))


def http_body(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON an HTTP channel receives: the alert, plus ``text`` for chat webhooks.

    Titles hold upload and folder names, which anyone who can upload chooses: in ``text`` they are made inert
    for chat markup (Slack's ``<!channel>`` and ``<url|label>``, a Mattermost ``@channel``). The other fields
    keep them as they are.
    """
    body = {name: value for name, value in alert.items() if name not in ("sent_via", "raised_at")}
    return {"text": chat_text(f"{SUBJECT_PREFIX} {alert['title']}"), **body}


def chat_text(text: str) -> str:
    """``text`` with the characters chat webhooks read as markup escaped (``&<>``, as Slack asks), a zero-width
    space after each ``@`` so that no name mentions a person or the whole channel, and one inside each ``](`` so
    that no name is a Markdown link or image (Mattermost and Teams render ``[re-upload here](https:evil.example)``
    as a link, ``![x](https:evil.example/p.png)`` as an image fetched when the message is shown)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "@\u200b")
    return text.replace("](", "]\u200b(")


def mail_body(alert: Mapping[str, Any]) -> str:
    """An alert as a small HTML mail: the title, then its details as JSON (escaped)."""
    details = json.dumps(alert.get("details") or {}, indent=2, sort_keys=True, default=str)
    return (
        f"<p>{html.escape(str(alert['title']))}</p>"
        f"<p>kind: {html.escape(str(alert['kind']))}, run: {html.escape(str(alert.get('run_id') or ''))}</p>"
        f"<pre>{html.escape(details)}</pre>"
    )


def channels(http_conn_id: str | None = HTTP_CONNECTION, smtp_conn_id: str | None = SMTP_CONNECTION) -> list[Channel]:
    """The channels whose connections exist and are complete; one warning names what is missing, if anything."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    found: list[Channel] = []
    missing: list[str] = []
    for name, conn_id in (("http", http_conn_id), ("smtp", smtp_conn_id)):
        if not conn_id:
            continue
        try:
            connection = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            missing.append(f"no connection {conn_id!r} ({name})")
            continue
        extra = connection.extra_dejson if isinstance(connection.extra_dejson, dict) else {}
        if name == "http":
            timeout = _seconds(extra.get("timeout", 30))
            if timeout is None:
                missing.append(f"connection {conn_id!r}: its extra's timeout {extra['timeout']!r} is not a number of "
                               "seconds")  # fmt: skip
                continue
            found.append(Channel(name, conn_id, timeout=timeout))
            continue
        recipients = _addresses(extra.get("to"))
        if not recipients or not isinstance(extra.get("from_email"), str) or not extra["from_email"].strip():
            missing.append(f"connection {conn_id!r} needs 'to' (addresses: a list, or text separated by commas) "
                           "and 'from_email' (an address) in its extra")  # fmt: skip
            continue
        found.append(Channel(name, conn_id, recipients))
    if missing:
        log.warning(
            "alerts are logged and kept in the store but not sent through: %s. Create the connection(s) "
            "(README, Notifications) to receive them.",
            "; ".join(missing),
        )
    return found


def _addresses(value: Any) -> tuple[str, ...]:
    """The addresses of a ``to`` given as text or a list of texts; none for anything else."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(item.strip() for item in items if isinstance(item, str) and item.strip())


def _seconds(value: Any) -> float | None:
    """A timeout given as a number or numeric text (``""`` or null: the default 30); None if it is not one."""
    if value in (None, ""):
        return 30.0
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 and not isinstance(value, bool) else None


def deliver(
    alert: Mapping[str, Any],
    available: Sequence[Channel],
    context: Mapping[str, Any],
    mark: Callable[[str], Any],
    failed: set[str],
) -> list[str]:
    """Send one alert through each channel it has not gone out through yet; ``mark(channel)`` records each.

    Returns the failures (one line per channel), so the other alerts and channels are still tried. A channel
    that cannot be reached (a timeout, a refused connection) is added to ``failed`` and not tried again for the
    next alerts: a webhook that hangs would otherwise spend its timeout on every alert, and the task's time
    with it, before the mail went out. One that answers, even with an error, is tried for each alert: it may
    refuse only one (a payload too large), and the others must still go out.
    """
    failures = []
    for channel in available:
        if channel.name in (alert.get("sent_via") or {}):
            continue
        if channel.name in failed:
            failures.append(f"{alert['id']} via {channel.name}: not tried, the channel failed before in this try")
            continue
        try:
            channel.send(alert, context)
        except Exception as error:  # one dead channel must not keep the alert from the others
            failures.append(f"{alert['id']} via {channel.name} ({channel.conn_id}): {type(error).__name__}: {error}")
            if _unreachable(error):
                failed.add(channel.name)
            continue
        mark(channel.name)
    return failures


def _unreachable(error: BaseException) -> bool:
    """Is the channel down, rather than refusing this one alert? A timeout or a refused connection (requests' own
    ConnectionError and Timeout, by name: the HTTP provider's dependency, not ours), an HTTP 5xx or 429 (a proxy
    in front of a dead service answers 502-504), or an SMTP server the hook could not connect to."""
    import smtplib

    down = (TimeoutError, ConnectionError, smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected)
    seen: BaseException | None = error
    for _ in range(5):  # the providers raise their own errors from the transport's (raise ... from / during)
        if seen is None:
            return False
        names = {(cls.__module__.split(".")[0], cls.__name__) for cls in type(seen).__mro__}
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if (
            isinstance(seen, down)
            or names & {("requests", "ConnectionError"), ("requests", "Timeout")}
            or (isinstance(status, int) and (status >= 500 or status == 429))
            or "Unable to connect to smtp server" in str(seen)  # the SMTP hook's own, after its retries
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def notify_run(
    store: ObjectStore,
    run_id: str,
    run_summary: Mapping[str, Any],
    batch_summaries: Sequence[Mapping[str, Any]] | None = None,
    *,
    error_rate_alert: float = DEFAULT_ERROR_RATE_ALERT,
    http_conn_id: str | None = HTTP_CONNECTION,
    smtp_conn_id: str | None = SMTP_CONNECTION,
) -> list[dict[str, Any]]:
    """Decide a nightly run's alerts, keep them in ``alerts/<run_id>.json`` and send each once per channel.

    Returns the alert records (with ``sent_via``). Raises ``NotificationError`` when a configured
    channel failed; a missing connection is only a warning.
    """
    alerts: list[Alert] = run_alerts(store, run_summary, batch_summaries, error_rate_alert=error_rate_alert)
    if not alerts:
        log.info("run %s raised no alerts", run_id)
        return []
    records = record_alerts(store, run_id, alerts)
    for record in records:
        log.warning("alert %s: %s", record["kind"], record["title"])
    available = channels(http_conn_id, smtp_conn_id)
    failures: list[str] = []
    failed: set[str] = set()
    context = {"run_id": run_id}
    for record in records:
        mark = partial(mark_alert_sent, store, run_id, record["id"])
        failures += deliver({**record, "run_id": run_id}, available, context, mark, failed)
    if failures:
        shown = "; ".join(failures[:10]) + (f"; and {len(failures) - 10} more" if len(failures) > 10 else "")
        raise NotificationError(f"{len(failures)} alert deliveries failed (a retry sends only these): {shown}")
    return record_alerts(store, run_id, [])


def notify_gate_decision(
    store: ObjectStore,
    decision: dict[str, Any],
    run_id: str | None = None,
    *,
    http_conn_id: str | None = HTTP_CONNECTION,
    smtp_conn_id: str | None = SMTP_CONNECTION,
) -> dict[str, Any]:
    """Keep the decision under ``models/<name>/notifications/`` and send a rejection through the channels.

    Once per run and candidate version: a retried task neither records nor sends it again (a channel
    it already went out through is skipped). A pass that was not promoted is recorded, not sent.
    Returns the stored message (``sent_via``: channel -> when).
    """
    message, unsent = record_gate_notification(store, decision, run_id)
    if not unsent:
        log.info("gate decision on %s already notified in this run", decision["candidate_version"])
        return message
    alert = gate_alert(decision)
    if alert is None:
        log.info("gate %s on %s: recorded, nothing to alert", decision["decision"], decision["candidate_version"])
        return mark_notification_sent(store, message)
    log.warning("alert %s: %s", alert.kind, alert.title)
    record = {**alert.as_dict(), "run_id": run_id, "sent_via": message.get("sent_via") or {}}
    state = {"message": message}

    def mark(channel: str) -> None:
        state["message"] = mark_notification_channel(store, state["message"], channel)

    failures = deliver(record, channels(http_conn_id, smtp_conn_id), {"run_id": run_id}, mark, set())
    if failures:
        raise NotificationError("gate decision not delivered (a retry sends only these): " + "; ".join(failures))
    return mark_notification_sent(store, state["message"])
