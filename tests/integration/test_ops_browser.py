"""The crack ops view in a real browser, on a real Airflow API server, after real DAG runs.

A private Airflow home (SQLite) runs ``crack_retraining`` then ``crack_nightly_scoring`` on a
seeded store; ``airflow api-server`` then serves the UI with the plugin, and Chromium logs in
through the login form as a viewer and as an admin (SimpleAuthManager roles), opens the view
from the nav, then a batch page and a model page, and checks each against the store's own
documents. The viewer finds no operator action anywhere; the admin finds the rollback form on the
overview and the champion's page and releases the failed batch, and Airflow's REST API then lists
that run with the admin as its triggering user. One screenshot per page of the admin's tour lands
in ``tests/artifacts/``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
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
# SimpleAuthManager users: a read-only viewer and an admin, each with a generated password.
USERS = {"viewer": "viewer", "admin": "admin"}
RELEASE_REASON = "blank frames came from a lens cap test, release for the record"
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


def _token(base: str, username: str, password: str) -> str:
    """A JWT from the SimpleAuthManager's token endpoint."""
    request = urllib.request.Request(
        f"{base}/auth/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.loads(response.read())["access_token"])


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
    passwords = {user: secrets.token_urlsafe(18) for user in USERS}
    passwords_file = root / "passwords.json"
    passwords_file.write_text(json.dumps(passwords))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    environment = airflow_environment(
        root / "airflow-home",
        {
            "AIRFLOW_VAR_CRACK_STORE": str(store),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{user}:{role}" for user, role in USERS.items()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
            # The operator actions call the REST API of this server (its port is not [api] port).
            "CRACK_OPS_API_URL": base_url,
        },
    )
    started = time.monotonic()
    migrate(environment)
    timings["migrate"] = time.monotonic() - started

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
        yield {"url": base_url, "store": store, "passwords": passwords, "timings": timings}
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

    token = _token(base, "admin", deployment["passwords"]["admin"])
    status, body = _get(f"{base}/crack-ops/api/overview", token=token)
    assert status == 200
    overview = json.loads(body)
    champion = json.loads((deployment["store"] / "models/crack/aliases.json").read_text())["aliases"]["champion"]
    assert overview["champion"]["version"] == champion
    assert {batch["batch_id"] for batch in overview["batches"]} == {SCORED_BATCH, FAILED_BATCH}
    status, body = _get(f"{base}/crack-ops/files/results/{SCORED_BATCH}/predictions.csv", token=token)
    assert status == 200 and next(csv.reader(io.StringIO(body.decode())))[:2] == ["key", "size"]
    assert _get(f"{base}/crack-ops/files/models/crack/aliases.json", token=token)[0] == 404
    viewer = _token(base, "viewer", deployment["passwords"]["viewer"])
    status, body = _get(f"{base}/crack-ops/api/batches/{SCORED_BATCH}", token=viewer)
    assert status == 200 and json.loads(body)["batch"]["batch_id"] == SCORED_BATCH


def _expected(store: Path) -> dict[str, object]:
    """What the pages must show, read from the store's own documents (not from the view)."""
    aliases = json.loads((store / "models/crack/aliases.json").read_text())
    champion = aliases["aliases"]["champion"]
    version = json.loads((store / f"models/crack/versions/{champion}/version.json").read_text())
    gate = json.loads((store / f"models/crack/versions/{champion}/gate_report.json").read_text())
    summary = json.loads((store / f"results/{SCORED_BATCH}/summary.json").read_text())
    rows = list(csv.DictReader(io.StringIO((store / f"results/{SCORED_BATCH}/predictions.csv").read_text())))
    crack_rows = [row for row in rows if row["status"] == "ok" and row["label"] == summary["crack_class"]]
    cracks = sorted((float(row["crack_probability"]) for row in crack_rows), reverse=True)
    quarantine = store / f"quarantine/{SCORED_BATCH}/quarantine.json"
    held_back = json.loads(quarantine.read_text())["objects"] if quarantine.is_file() else []
    return {
        "champion": champion,
        "crack_rate": f"{100 * summary['crack_rate']:.1f}%",
        "cracks": cracks,
        "quarantined": [item["key"].rsplit("/", 1)[-1] for item in held_back],
        "manifest_sha256": version["data_manifest"]["sha256"],
        "runtimes": gate["approved_runtimes"],
        "promoted_by": aliases["last"]["champion"]["actor"],
    }


def _open_from_browse_menu(page, item: str, url: str, user: str, tries: int = 3) -> None:
    """Open Browse > item and wait for its page, clicking again as an operator would if nothing happened.

    On a loaded machine the UI can re-render the open menu just as the click lands (a CI here waited 30 s
    for a navigation that never started); a menu that never navigates still fails on the last try.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(1, tries + 1):
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name=item).click()
        try:
            page.wait_for_url(url, wait_until="commit", timeout=20_000)  # started: a slow load is no miss
            break
        except PlaywrightTimeout:
            if attempt == tries:
                raise
            page.screenshot(path=str(ARTIFACTS / f"menu_retry_{user}_{attempt}.png"))  # what showed instead
            page.keyboard.press("Escape")  # close the menu if it is still open
    page.wait_for_load_state()


@pytest.mark.parametrize("username", list(USERS))
def test_operator_sees_overview_batch_and_model_pages(deployment, username):
    """Log in as viewer or admin, open Browse > Crack ops, a batch, the champion's page and the failed batch.

    Real data on each page; the viewer sees no action; the admin sees the rollback form and releases the failed
    batch through the form, and the REST API lists the run it triggered, by the admin, with the batch released.
    """
    from playwright.sync_api import expect, sync_playwright

    expected = _expected(deployment["store"])
    base = deployment["url"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # One screenshot per page, from the admin's tour (it shows the operator actions too).
    admin = shots = username == "admin"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(30_000)
            refused = []  # anything the pages' CSP blocks shows in the console
            page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text
                    else None)  # fmt: skip
            page.goto(f"{base}/")
            page.wait_for_url("**/auth/login**")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(deployment["passwords"][username])
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/")

            _open_from_browse_menu(page, "Crack ops", "**/plugin/crack-ops", username)
            view = page.frame_locator('iframe[title="Crack ops"]')

            # The overview: champion with both intervals, batches, runs, the trend charts.
            expect(view.locator("#champion-version")).to_have_text(expected["champion"])
            expect(view.locator('#champion .tile[data-metric="crack_recall"] .interval-exact')).to_contain_text(
                "exact CI"
            )
            scored = view.locator(f'tr.batch[data-batch="{SCORED_BATCH}"]')
            expect(scored.locator("td.crack-rate")).to_have_text(expected["crack_rate"])
            expect(scored.locator("td.outcome")).to_have_text("passed with quarantine")
            failed = view.locator(f'tr.batch[data-batch="{FAILED_BATCH}"]')
            expect(failed.locator("td.outcome")).to_have_text("failed")
            expect(view.locator("#runs")).to_contain_text(FAILED_BATCH)
            expect(view.locator("#trends svg")).to_have_count(5)
            expect(view.locator("#chart-objects rect.bar")).to_have_count(1)  # one nightly run so far
            if admin:  # one promotion so far: the form is there, with nothing earlier to roll back to
                expect(view.locator("#rollback-form")).to_be_visible()
                expect(view.locator("#rollback-none")).to_contain_text(expected["champion"])
            else:
                expect(view.locator("form")).to_have_count(0)
            if shots:
                page.wait_for_timeout(300)  # let the frame finish painting before the picture
                page.screenshot(path=str(ARTIFACTS / "ops_overview.png"))

            # The batch page: cracks most probable first with their overlays, quarantine, predictions.csv.
            scored.get_by_role("link", name=SCORED_BATCH).click()
            expect(view.locator("#batch-id")).to_have_text(SCORED_BATCH)
            expect(view.locator("#crack-rate")).to_contain_text(expected["crack_rate"])
            thumbs = view.locator("#cracks .thumb")
            expect(thumbs).to_have_count(min(24, len(expected["cracks"])))
            expect(thumbs.first.locator(".probability")).to_have_text(f"{100 * expected['cracks'][0]:.1f}%")
            expect(thumbs.first.locator("img")).to_have_js_property("complete", True)
            assert thumbs.first.locator("img").evaluate("image => image.naturalWidth") > 0, "the overlay did not load"
            for name in expected["quarantined"]:
                expect(view.locator("#quarantined")).to_contain_text(name)
            expect(view.locator("#predictions-link")).to_have_attribute(
                "href", f"../files/results/{SCORED_BATCH}/predictions.csv"
            )
            if shots:
                page.wait_for_timeout(300)
                page.screenshot(path=str(ARTIFACTS / "ops_batch.png"))

            # The model page of the version that scored the batch: lineage, runtimes, the promotion audit.
            view.locator("#model-link").click()
            expect(view.locator("#model-version")).to_have_text(expected["champion"])
            expect(view.locator("#data-manifest .digest")).to_have_text(expected["manifest_sha256"])
            for runtime in expected["runtimes"]:
                expect(view.locator("#approved-runtimes")).to_contain_text(runtime)
            expect(view.locator("#audit")).to_contain_text(expected["promoted_by"])
            expect(view.locator("#gate-report-link")).to_be_visible()
            expect(view.locator("#rollback-form")).to_have_count(1 if admin else 0)
            if shots:
                page.wait_for_timeout(300)
                page.screenshot(path=str(ARTIFACTS / "ops_model.png"))

            # The failed batch: its reasons for everyone; the release form only for the admin.
            view.get_by_role("link", name="Crack ops").click()
            view.locator(f'tr.batch[data-batch="{FAILED_BATCH}"]').get_by_role("link", name=FAILED_BATCH).click()
            expect(view.locator("#batch-id")).to_have_text(FAILED_BATCH)
            expect(view.locator("#batch-outcome")).to_have_text("failed")
            expect(view.locator("#reasons .reason").first).to_be_visible()
            # The run's GX Data Docs: linked, and served in this session as a sandboxed page.
            docs = view.locator("#data-docs-link").get_attribute("href")
            served = page.request.get(urllib.parse.urljoin(f"{base}/crack-ops/batches/{FAILED_BATCH}", docs))
            assert served.status == 200 and served.headers["content-type"].startswith("text/html"), served.status
            assert "sandbox" in served.headers["content-security-policy"]
            if not admin:
                expect(view.locator("form")).to_have_count(0)
                expect(view.locator("button")).to_have_count(0)
            else:
                view.locator('#release-form input[name="reason"]').fill(RELEASE_REASON)
                if shots:
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(ARTIFACTS / "ops_batch_failed.png"))
                view.locator("#release-submit").click()
                expect(view.locator("#run-dag")).to_have_text("crack_nightly_scoring")
                expect(view.locator("#run-user")).to_have_text("admin")
                run_id = view.locator("#run-id").inner_text()
                if shots:
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(ARTIFACTS / "ops_action.png"))
                _assert_release_run(base, deployment["passwords"]["admin"], run_id)

            # Back on the overview, a link opens the stored report inside the same frame and session.
            view.get_by_role("link", name="Crack ops").click()
            view.locator(f'tr.batch[data-batch="{FAILED_BATCH}"]').get_by_role("link", name="validation").click()
            expect(view.locator("h1")).to_contain_text(f"Validation of batch {FAILED_BATCH}")
            expect(view.locator("h1")).to_contain_text("failed")
            assert not refused, refused
        finally:
            browser.close()


def _assert_release_run(base: str, password: str, run_id: str) -> None:
    """Airflow's own record of the release: the run, its conf, its triggering user and the reason in its note."""
    token = _token(base, "admin", password)
    status, body = _get(f"{base}/api/v2/dags/crack_nightly_scoring/dagRuns/{urllib.parse.quote(run_id)}", token=token)
    assert status == 200, body
    run = json.loads(body)
    assert run["conf"]["release_batches"] == [FAILED_BATCH] and run["conf"]["batch_ids"] == [FAILED_BATCH]
    assert run["triggering_user_name"] == "admin" and run["run_type"] == "manual"
    assert RELEASE_REASON in (run["note"] or "")
