"""The nightly DAG's alerts end to end: dag.test() sends them through Connections defined in its environment.

A local store is seeded with the demo's night (a good batch and ``blank-frames``, which fails the
incoming suite); the webhook and the mail server are real servers on loopback in this process.
"""

from __future__ import annotations

import json

import pytest

from crack_model.core import layout
from crack_model.core.storage import open_store
from demo.airflow_env import airflow_environment, migrate, run_dag
from demo.seed import seed_store
from tests.local_servers import smtp_server, webhook_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_night_with_a_failed_batch_posts_and_mails_one_alert(tmp_path, trained_model):
    """blank-frames fails validation: one POST and one mail from publish_run_summary, recorded in alerts/<run>.json."""
    store = str(tmp_path / "store")
    seed_store(store)
    with webhook_server() as hook, smtp_server() as mailbox:
        smtp = {"conn_type": "smtp", "host": "127.0.0.1", "port": mailbox.port,
                "extra": {"from_email": "crack-model@example.org", "to": "oncall@example.org",
                          "disable_ssl": True, "disable_tls": True}}  # fmt: skip
        environment = airflow_environment(tmp_path / "airflow-home", {
            "AIRFLOW_CONN_CRACK_NOTIFY_HTTP": json.dumps({"conn_type": "http", "host": hook.url}),
            "AIRFLOW_CONN_CRACK_NOTIFY_SMTP": json.dumps(smtp),
        })  # fmt: skip
        migrate(environment)
        run = run_dag("crack_nightly_scoring", {"store": store, "model": str(trained_model.output_dir)}, environment)

    assert run["state"] == "success", run["failures"]
    assert [body["id"] for body in hook.received] == ["batch_failed_validation:blank-frames"]
    assert hook.received[0]["run_id"] == run["run_id"] and hook.received[0]["details"]["reasons"]
    ((_, recipients, mail),) = mailbox.mails
    assert recipients == ["oncall@example.org"] and "blank-frames failed validation" in mail["Subject"]
    record = json.loads(open_store(store).read(layout.alerts_key(run["run_id"])))
    assert sorted(record["alerts"]["batch_failed_validation:blank-frames"]["sent_via"]) == ["http", "smtp"]
