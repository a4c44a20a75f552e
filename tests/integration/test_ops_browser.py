"""The crack ops view in a real browser, on a real Airflow API server, after real DAG runs.

A private Airflow home (SQLite) runs ``crack_retraining`` then ``crack_nightly_scoring`` on a
seeded store; ``airflow api-server`` then serves the UI with the plugin, and Chromium logs in
through the login form, opens the view from the nav and reads what an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from demo.airflow_env import airflow_environment, migrate, run_dag
from demo.seed import seed_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = Path(__file__).resolve().parents[2]
WEIGHTS = PROJECT.parent / "shared" / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT / "tests" / "artifacts"
SCORED_BATCH = "2026-11-24"
FAILED_BATCH = "blank-frames"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _wait_for_health(base_url: str, server: subprocess.Popen, log_path: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"airflow api-server exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if _get(f"{base_url}/api/v2/monitor/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"airflow api-server not healthy after {timeout} s:\n{log_path.read_text()[-4000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's own process group (it has its own session), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Seeded store, both DAGs run for real, and an API server with the plugin on a free loopback port."""
    if not WEIGHTS.is_file():
        pytest.skip(f"no offline ImageNet weights at {WEIGHTS}: the retraining DAG needs them (no internet)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: run `make system-deps` (scripts/system-deps.sh)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

    timings: dict[str, float] = {}
    root = tmp_path_factory.mktemp("ops-browser")
    store = root / "store"
    seed_store(str(store))
    password = secrets.token_urlsafe(18)
    passwords = root / "passwords.json"
    passwords.write_text(json.dumps({"admin": password}))
    environment = airflow_environment(
        root / "airflow-home",
        {
            "AIRFLOW_VAR_CRACK_STORE": str(store),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        },
    )
    started = time.monotonic()
    migrate(environment)
    timings["migrate"] = time.monotonic() - started

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = root / "api-server.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with open(log_path, "wb") as log:
        # Its own session: teardown signals exactly this server and its workers, nothing else.
        server = subprocess.Popen(
            [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        # The server starts while the DAGs run: the view reads the store per request.
        started = time.monotonic()
        retraining = run_dag("crack_retraining", {"store": str(store), "weights": str(WEIGHTS)}, environment)
        timings["crack_retraining"] = time.monotonic() - started
        assert retraining["state"] == "success", retraining
        started = time.monotonic()
        scoring = run_dag("crack_nightly_scoring", {"store": str(store)}, environment)
        timings["crack_nightly_scoring"] = time.monotonic() - started
        assert scoring["state"] == "success", scoring
        started = time.monotonic()
        _wait_for_health(base_url, server, log_path)
        timings["api_server_ready_after_dags"] = time.monotonic() - started
        yield {"url": base_url, "store": store, "password": password, "timings": timings}
    finally:
        _stop(server)
        print("timings (s): " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in timings.items()))


def test_anonymous_requests_are_refused_and_a_token_is_accepted(deployment):
    """Through the real server: no credentials -> 401 on every route; a JWT from /auth/token -> the overview."""
    base = deployment["url"]
    for path in ("/crack-ops/api/overview", "/crack-ops/", f"/crack-ops/files/results/{SCORED_BATCH}/predictions.csv"):
        status, body = _get(base + path)
        assert status in (401, 403), (path, status)
        assert b"predictions" not in body
    assert _get(f"{base}/crack-ops/api/overview", token="not-a-jwt")[0] in (401, 403)

    request = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": "admin", "password": deployment["password"]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())["access_token"]
    status, body = _get(f"{base}/crack-ops/api/overview", token=token)
    assert status == 200
    overview = json.loads(body)
    champion = json.loads((deployment["store"] / "models/crack/aliases.json").read_text())["aliases"]["champion"]
    assert overview["champion"]["version"] == champion
    assert {batch["batch_id"] for batch in overview["batches"]} == {SCORED_BATCH, FAILED_BATCH}
    status, body = _get(f"{base}/crack-ops/files/results/{SCORED_BATCH}/predictions.csv", token=token)
    assert status == 200 and body.startswith(b"key,")
    assert _get(f"{base}/crack-ops/files/models/crack/aliases.json", token=token)[0] == 404


def test_operator_sees_champion_and_batches_in_the_ui(deployment):
    """Log in through the form, open Browse > Crack ops, read the champion, the scored and the failed batch."""
    from playwright.sync_api import expect, sync_playwright

    store = deployment["store"]
    champion = json.loads((store / "models/crack/aliases.json").read_text())["aliases"]["champion"]
    summary = json.loads((store / f"results/{SCORED_BATCH}/summary.json").read_text())
    crack_rate = f"{100 * summary['crack_rate']:.1f}%"
    base = deployment["url"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(30_000)
            page.goto(f"{base}/")
            page.wait_for_url("**/auth/login**")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(deployment["password"])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")

            page.get_by_role("button", name="Browse").click()
            page.get_by_role("menuitem", name="Crack ops").click()
            page.wait_for_url("**/plugin/crack-ops")
            view = page.frame_locator('iframe[title="Crack ops"]')

            expect(view.locator("#champion-version")).to_have_text(champion)
            scored = view.locator(f'tr.batch[data-batch="{SCORED_BATCH}"]')
            expect(scored).to_contain_text(SCORED_BATCH)
            expect(scored.locator("td.crack-rate")).to_have_text(crack_rate)
            expect(scored.locator("td.outcome")).to_have_text("passed with quarantine")
            failed = view.locator(f'tr.batch[data-batch="{FAILED_BATCH}"]')
            expect(failed.locator("td.outcome")).to_have_text("failed")
            expect(view.locator("#runs")).to_contain_text(FAILED_BATCH)
            page.wait_for_timeout(300)  # let the frame finish painting before the picture
            page.screenshot(path=str(ARTIFACTS / "ops_view.png"))

            # A link from the view opens the stored report, inside the same frame and session.
            failed.get_by_role("link", name="validation").click()
            expect(view.locator("h1")).to_contain_text(f"Validation of batch {FAILED_BATCH}")
            expect(view.locator("h1")).to_contain_text("failed")
        finally:
            browser.close()
