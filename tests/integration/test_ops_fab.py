"""The ops view under the FAB auth manager (what docker/docker-compose.yml runs), on a real API server.

A private Airflow home (SQLite) with ``FabAuthManager``: ``airflow db migrate`` creates FAB's tables,
``airflow users create`` (the command airflow-init runs) adds one user per FAB role, and the API
server serves the plugin. Each user logs in through FAB's ``/auth/token``; the view must follow
FAB's roles: Viewer and User read the pages but get no action (a User may trigger DAG runs, but is
no operator), Op and Admin get the forms; a User's post is refused before Airflow is called, an Op's
release becomes a DAG run that Airflow attributes to that Op.

Skipped where the ``fab`` extra is not installed (``pip install -e .[fab]``).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from demo.airflow_env import airflow_environment, migrate
from tests.integration.test_ops_browser import _free_port, _get, _stop, _token, _wait_for_health
from tests.unit.pipelines.ops_store import CHAMPION, build_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
ROLES = ("Viewer", "User", "Op", "Admin")
FAILED = "blank-frames"


@pytest.fixture(scope="module")
def fab(tmp_path_factory):
    """A migrated FAB deployment with a user per role and the API server on a free loopback port."""
    pytest.importorskip("airflow.providers.fab.auth_manager.fab_auth_manager", reason="the fab extra is not installed")
    root = tmp_path_factory.mktemp("ops-fab")
    with pytest.MonkeyPatch.context() as patch:
        store = build_store(root, patch)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    environment = airflow_environment(
        root / "airflow-home",
        {
            "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
            "AIRFLOW_VAR_CRACK_STORE": store.uri,
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
            "CRACK_OPS_API_URL": base,
        },
    )
    migrate(environment)
    airflow = str(Path(sys.executable).with_name("airflow"))
    # The DAGs in the metadata DB, as the DAG processor would put them: the REST API triggers only known DAGs.
    subprocess.run([airflow, "dags", "reserialize"], env=environment, check=True, capture_output=True, timeout=600)
    passwords = {}
    for role in ROLES:
        username, passwords[role] = role.lower(), secrets.token_urlsafe(18)
        # "--password=..." in one argument: a token that starts with "-" (1 in 64) would be read as an option.
        subprocess.run(
            [airflow, "users", "create", "--username", username, f"--password={passwords[role]}", "--role", role,
             "--firstname", role, "--lastname", "Tester", "--email", f"{username}@example.org"],
            env=environment, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    log_path = root / "api-server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_for_health(base, server, log_path)
        tokens = {role: _token(base, role.lower(), passwords[role]) for role in ROLES}
        yield {"url": base, "tokens": tokens, "store": store}
    finally:
        _stop(server)


def _page(fab, role: str, path: str) -> str:
    status, body = _get(fab["url"] + "/crack-ops" + path, token=fab["tokens"][role])
    assert status == 200, (role, path, status, body[:300])
    return body.decode()


def _post(fab, role: str, path: str, fields: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        fab["url"] + "/crack-ops" + path,
        data=urllib.parse.urlencode(fields).encode(),
        headers={"Authorization": f"Bearer {fab['tokens'][role]}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _release_runs(fab) -> list[dict]:
    status, body = _get(fab["url"] + "/api/v2/dags/crack_nightly_scoring/dagRuns", token=fab["tokens"]["Admin"])
    assert status == 200, body[:300]
    return [run for run in json.loads(body)["dag_runs"] if (run["conf"] or {}).get("release_batches") == [FAILED]]


@pytest.mark.parametrize("role", ROLES)
def test_fab_roles_decide_who_gets_the_actions(fab, role):
    """Every FAB role reads the pages; only Op and Admin get the release and rollback forms."""
    overview, failed = _page(fab, role, "/"), _page(fab, role, f"/batches/{FAILED}")
    assert f'id="champion-version">{CHAMPION}<' in overview and "contrast_in_bounds" in failed
    operator = role in ("Op", "Admin")
    assert ('id="release-form"' in failed) is operator
    assert ('id="rollback-form"' in overview) is operator
    assert ("csrf_token" in failed + overview) is operator


def test_a_fab_user_may_not_release_even_with_a_form_token(fab):
    """A User (may trigger DAG runs in FAB) posting with the Op's form token of its own session is refused: 403."""
    form = _page(fab, "Op", f"/batches/{FAILED}")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form).group(1)
    status, body = _post(fab, "User", "/actions/release-batch", {"csrf_token": token, "batch_id": FAILED,
                                                                 "reason": "not mine to release"})  # fmt: skip
    assert status == 403 and "Op or Admin" in body
    assert _release_runs(fab) == []


def test_an_op_releases_a_batch_and_airflow_records_the_op_as_triggering_user(fab):
    """The Op's post (Bearer session, its own form token) becomes a run of crack_nightly_scoring by "op"."""
    form = _page(fab, "Op", f"/batches/{FAILED}")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form).group(1)
    status, body = _post(fab, "Op", "/actions/release-batch", {"csrf_token": token, "batch_id": FAILED,
                                                               "reason": "lens cap test frames"})  # fmt: skip
    assert status == 200, body[-2000:]
    (run,) = _release_runs(fab)
    assert run["triggering_user_name"] == "op" and run["conf"]["batch_ids"] == [FAILED]
    assert run["conf"]["store"] == fab["store"].uri and "lens cap test frames" in run["note"]
    assert f'id="run-id">{run["dag_run_id"]}<' in body
