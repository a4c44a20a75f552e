"""The ops view's FastAPI app (crack_ops.ops_view): who may see it, its headers, pages, files and operator actions.

Users are the SimpleAuthManager's (Airflow's default auth manager), authorized by the real
``is_authorized_dag``; only the step that turns a JWT into a user is stood in for (it needs the
metadata database, which unit tests do not have). The browser test logs in for real. The actions'
calls to Airflow's REST API go to a fake API server on loopback that records them.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from crack_model.core import layout
from crack_model.core.local_store import LocalStore
from tests.unit.pipelines.ops_store import (
    CHAMPION,
    EXACT,
    REJECTED,
    ROLLBACK_ACTOR,
    SCORED,
    SECOND,
    build_store,
    outcome,
    write_validation,
)

ROUTES = ["/", "/api/overview", "/api/history", f"/batches/{SCORED}", f"/api/batches/{SCORED}",
          f"/models/crack/{CHAMPION}", f"/api/models/crack/{CHAMPION}", f"/files/results/{SCORED}/predictions.csv",
          "/files/nope"]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """Four nights written by the workflow's own writers (tests/unit/pipelines/ops_store.py)."""
    with pytest.MonkeyPatch.context() as patch:
        return build_store(tmp_path_factory.mktemp("ops-store"), patch)


@pytest.fixture(scope="module")
def view(store, tmp_path_factory):
    """The ops_view module of the installed crack_ops plugin, reading the test store."""
    with pytest.MonkeyPatch.context() as patch:
        if "airflow" not in sys.modules:  # keep Airflow's config out of the user's home
            patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
        patch.setenv("AIRFLOW_VAR_CRACK_STORE", store.uri)
        patch.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        from crack_ops import ops_view

        yield ops_view


@pytest.fixture(scope="module")
def auth_manager(view):
    """The SimpleAuthManager, created as the API server creates it at start."""
    with warnings.catch_warnings():  # svcs (under the API server app) imports Starlette's TestClient: httpx notice
        warnings.simplefilter("ignore")
        from airflow.api_fastapi.app import create_auth_manager

    return create_auth_manager()


@pytest.fixture(scope="module")
def client(view, auth_manager):
    """A TestClient of the app; ``client.as_user(role)`` is a user of that SimpleAuthManager role logged in."""
    with warnings.catch_warnings():  # Starlette's notice about httpx, nothing this test can act on
        warnings.simplefilter("ignore")
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.api_fastapi.core_api.security import get_user
        from fastapi.testclient import TestClient

        app = view.create_app()
    test_client = TestClient(app)

    @contextmanager
    def as_user(role: str | None) -> Iterator[Any]:
        user = SimpleAuthManagerUser(username=f"{role or 'nobody'}-user", role=role)
        app.dependency_overrides[get_user] = lambda: user
        try:
            yield test_client
        finally:
            app.dependency_overrides.clear()

    test_client.as_user = as_user  # type: ignore[attr-defined]
    return test_client


# ------------------------------------------------------------------------------ who may see it


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_needs_authentication(client, path):
    """Without the UI's cookie or a bearer token every route answers 401, files included, with the security headers."""
    response = client.get(path)
    assert response.status_code == 401
    assert "predictions" not in response.text and CHAMPION not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]


def test_a_token_that_is_no_jwt_is_refused(client):
    """A bearer token Airflow cannot decode is refused before anything is read."""
    response = client.get("/api/overview", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code in (401, 403) and CHAMPION not in response.text


@pytest.mark.parametrize("path", ROUTES)
def test_a_user_without_a_role_may_not_read_the_crack_dags(client, path):
    """Logged in, but the auth manager lets them read no DAG: 403 on every route, nothing from the store."""
    with client.as_user(None) as session:
        response = session.get(path)
    assert response.status_code == 403
    assert "crack_nightly_scoring" in response.json()["detail"]
    assert CHAMPION not in response.text


def test_both_crack_dags_are_asked_for(client, auth_manager, monkeypatch):
    """Read access to the nightly DAG alone is not enough: the view shows the retraining DAG's models too."""
    asked: list[tuple[str, str]] = []

    def only_nightly(*, method, user, access_entity=None, details=None):
        asked.append((method, details.id))
        return details.id == "crack_nightly_scoring"

    monkeypatch.setattr(auth_manager, "is_authorized_dag", only_nightly)
    with client.as_user("viewer") as session:
        assert session.get("/api/overview").status_code == 403
    assert ("GET", "crack_nightly_scoring") in asked and ("GET", "crack_retraining") in asked


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_viewer_and_admin_see_the_overview_with_strict_headers(client, role):
    """Viewer (read-only) and admin both see the page; its CSP allows only its nonce'd style and same-origin images."""
    with client.as_user(role) as session:
        response = session.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert f'id="champion-version">{CHAMPION}<' in response.text
    policy = response.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert f'<style nonce="{nonce}">' in response.text
    assert "frame-ancestors 'self'" in policy and "script-src" not in policy and "default-src 'none'" in policy
    assert "http:" not in policy and "https:" not in policy and "*" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    # Works offline: no script, nothing fetched from another origin.
    assert "<script" not in response.text and "http://" not in response.text and "https://" not in response.text


# ------------------------------------------------------------------------------ the overview


def test_page_shows_champion_trends_batches_runs_and_candidates(client):
    """The page: champion with exact and bootstrap intervals, SVG trends with champion bands, batches, runs."""
    with client.as_user("viewer") as session:
        page = session.get("/").text
    assert f"90% exact CI {100 * EXACT['crack_recall'][0]:.1f}% – {100 * EXACT['crack_recall'][1]:.1f}%" in page
    assert "90% CI 97.5% – 100.0% (bootstrap)" in page and "99.0%" in page
    assert "passed with quarantine" in page and ">failed<" in page and "66.7%" in page
    assert "contrast_in_bounds: 12 of 12 fail" in page
    assert "8.0 img/s" in page
    assert REJECTED in page and "floor:crack_recall" in page and ">reject<" in page
    assert "scheduled__2026-11-24T02:00:00+00:00" in page and ROLLBACK_ACTOR in page
    # Trends: five inline SVG charts, a bar per night, lines, the drift threshold and the champion's bands.
    assert page.count("<svg ") == 5 and page.count('class="bar"') == 4
    assert 'class="series-0"' in page and 'class="series-1"' in page and "threshold 0.25" in page
    assert page.count(f"<title>champion {SECOND}</title>") == 5
    # Relative links (the page lives inside the UI's iframe and behind proxies); keys URL-quoted.
    assert f'href="files/results/{SCORED}/predictions.csv"' in page
    assert f'href="files/results/{SCORED}/overlays/site%20a/photo-0.jpg.png"' in page
    assert f'href="files/models/crack/versions/{CHAMPION}/gate_report.html"' in page
    assert f'href="batches/{SCORED}"' in page and f'href="models/crack/{CHAMPION}"' in page
    assert 'href="/' not in page and 'src="/' not in page


def test_page_escapes_store_content(client, store):
    """Text from the store (reasons, ids) is HTML-escaped, never markup, on the overview and the batch page."""
    write_validation(store, outcome("zz-escape", "failed", ["<script>alert(1)</script>"], 1, None))
    try:
        with client.as_user("viewer") as session:
            pages = [session.get("/").text, session.get("/batches/zz-escape").text]
        for page in pages:
            assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    finally:
        for name in ("outcome.json", "report.html"):
            Path(store.url(f"validation/zz-escape/{name}")).unlink()
        Path(store.url("validation/zz-escape/outcome.json")).parent.rmdir()


def test_names_with_invisible_characters_show_them_on_the_batch_page(client, store):
    """A bidirectional override (U+202E) showed the rest of a name reversed, a zero-width space two names alike, a line
    break and an escape as nothing: the names and the reasons quoting them show them as escapes."""
    name = "zw\u200bspace\u202egpj.exe\nERROR \x1b[2J.jpg"
    key = f"incoming/zz-names/{name}"
    write_validation(store, outcome("zz-names", "failed", [f"decodes: 1 of 1 objects fail ({key})"], 1, None))
    held = {"key": key, "reasons": [f"decodes: cannot read: {key} is a symbolic link"]}
    document = {"format_version": 1, "batch_id": "zz-names", "outcome": "failed",
                "quarantined_at": "2026-11-24T02:10:00Z", "objects": [held]}  # fmt: skip
    store.write("quarantine/zz-names/quarantine.json", json.dumps(document).encode())
    try:
        with client.as_user("viewer") as session:
            page = session.get("/batches/zz-names").text
        shown = r"zw\u200bspace\u202egpj.exe\nERROR \x1b[2J.jpg"
        assert not {"\u200b", "\u202e", "\x1b"} & set(page)
        assert f"<code>{shown}</code>" in page and f"cannot read: incoming/zz-names/{shown} is a symbolic link" in page
        assert f"incoming/zz-names/{shown})</li>" in page  # the validation's reason
    finally:
        for key in ("validation/zz-names/outcome.json", "validation/zz-names/report.html",
                    "quarantine/zz-names/quarantine.json"):  # fmt: skip
            Path(store.url(key)).unlink()
        for folder in ("validation/zz-names", "quarantine/zz-names"):
            Path(store.url(folder)).rmdir()


def test_api_overview_and_history_are_the_library_data(client, store):
    """GET /api/overview and /api/history return the library's dicts for the configured store as JSON."""
    with client.as_user("viewer") as session:
        data = session.get("/api/overview", params={"limit": 2, "runs": 1}).json()
        trends = session.get("/api/history", params={"nights": 3}).json()
        assert session.get("/api/overview", params={"limit": 0}).status_code == 422
        assert session.get("/api/history", params={"nights": 0}).status_code == 422
    assert data["store"] == store.uri and data["champion"]["version"] == CHAMPION
    assert len(data["batches"]) == 2 and len(data["runs"]) == 1
    assert [point["night"] for point in trends["points"]] == ["2026-11-22", "2026-11-23", "2026-11-24"]


# ------------------------------------------------------------------------------ batch and model pages


def test_batch_page_shows_cracks_with_probabilities_quarantine_and_download(client):
    """A batch: overlays as thumbnails with probabilities, quarantined objects with reasons, predictions.csv."""
    with client.as_user("viewer") as session:
        response = session.get(f"/batches/{SCORED}")
        page = response.text
        thumbnail = re.search(r'<img src="\.\./(files/[^"]+)"', page).group(1)
        image = session.get("/" + thumbnail.replace("%20", " "))
    assert response.status_code == 200 and "nonce-" in response.headers["content-security-policy"]
    assert page.index("photo-2.jpg") < page.index("photo-0.jpg"), "most probable crack first"
    assert "97.0%" in page and "91.0%" in page
    assert thumbnail == f"files/results/{SCORED}/overlays/site%20a/photo-2.jpg.png"
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert "bad.jpg" in page and "decodes: no" in page
    assert f'href="../files/quarantine/{SCORED}/uploads/bad.jpg"' in page
    assert f'href="../files/results/{SCORED}/predictions.csv" download' in page
    assert f'href="../models/crack/{CHAMPION}"' in page and 'href="../"' in page
    assert 'href="/' not in page and 'src="/' not in page


def test_failed_batch_page_shows_reasons_failed_checks_and_drift(client):
    """A failed batch: the reasons, the failed check with its offenders, the drifted features."""
    with client.as_user("viewer") as session:
        page = session.get("/batches/blank-frames").text
    assert "contrast_in_bounds: 12 of 12 fail" in page and "12 of 12" in page
    assert "incoming/blank-frames/frame-00.png" in page and "… 2 more" in page
    assert "1.700" in page and ">drifted<" in page and "Not scored" in page


def test_model_page_shows_lineage_gate_runtimes_and_audit(client, store):
    """A version: data manifest digest, gate figures with exact intervals, the report link, runtimes, who moved it."""
    import hashlib

    digest = hashlib.sha256(store.read(f"models/crack/versions/{CHAMPION}/data_manifest.csv")).hexdigest()
    with client.as_user("admin") as session:
        page = session.get(f"/models/crack/{CHAMPION}").text
        data = session.get(f"/api/models/crack/{CHAMPION}").json()
    assert digest in page and data["lineage"]["data_manifest"]["sha256"] == digest
    assert f'href="../../files/models/crack/versions/{CHAMPION}/gate_report.html"' in page
    assert "exact CI" in page and "litert-int8" in page
    assert ROLLBACK_ACTOR in page and "manual__rollback" in page and "scheduled__2026-11-01" in page
    assert f'href="../../models/crack/{SECOND}"' in page and 'href="../../"' in page
    assert "is a crack when highest tile &gt;= 0.7000 (up to 154 tiles" in page  # the photo rule, and its inputs
    assert "120 clean and 40 crack mosaics and 6 labeled photos, scored in litert-int8, litert-fp32" in page
    assert "reaches the threshold; scored from 0.4200 up to 0.9, only when its mean over itself" in page  # patches
    assert "images per slice: (none) 1 · metu 3</div>" in page  # the training slices
    assert '<td id="started-from">afresh</td>' in page  # the first model had no champion to start from
    assert 'href="/' not in page


def test_model_page_links_the_model_a_version_started_from(client):
    """Retrained from the champion: its head's version is linked; a champion that could not be a start says why."""
    with client.as_user("viewer") as session:
        second = session.get(f"/models/crack/{SECOND}").text
        rejected = session.get(f"/models/crack/{REJECTED}").text
    assert f'the head of <a class="version-link" href="../../models/crack/{CHAMPION}">{CHAMPION}</a>; the 412' in second
    assert "the 412 pool images it trained on were kept in train</td>" in second
    assert f"afresh: {CHAMPION} could not be a start (its base differs)" in rejected


@pytest.mark.parametrize("record", [{"used": True, "version": None}, {"used": True}, ["not", "a", "record"], "x"])
def test_a_malformed_started_from_renders_as_afresh(client, store, record):
    """A hand-edited version.json must not break the model page."""
    key = f"models/crack/versions/{SECOND}/version.json"
    original = store.read(key)
    document = json.loads(original)
    store.write(key, json.dumps({**document, "started_from": record}).encode())
    try:
        with client.as_user("viewer") as session:
            response = session.get(f"/models/crack/{SECOND}")
    finally:
        store.write(key, original)
    assert response.status_code == 200 and '<td id="started-from">afresh</td>' in response.text


@pytest.mark.parametrize(
    "path",
    ["/batches/2099-01-01", "/api/batches/2099-01-01", "/batches/..%2Fmodels", "/models/crack/20990101T000000Z-x",
     "/api/models/crack/nope", "/models/..%2Fcrack/x", "/models/crack"],
)  # fmt: skip
def test_unknown_batches_and_versions_are_404(client, path):
    """A batch or version the store does not have, or an id that could escape the layout, is 404."""
    with client.as_user("viewer") as session:
        assert session.get(path).status_code == 404


# ------------------------------------------------------------------------------ files


def test_files_streams_linked_objects_with_safe_headers(client):
    """Linked files come back with their content type and a sandboxing CSP that only the Airflow UI may frame."""
    with client.as_user("viewer") as session:
        csv_response = session.get(f"/files/results/{SCORED}/predictions.csv")
        overlay = session.get(f"/files/results/{SCORED}/overlays/site%20a/photo-0.jpg.png")
        report = session.get(f"/files/models/crack/versions/{CHAMPION}/gate_report.html")
    assert csv_response.status_code == 200 and csv_response.text.startswith("key,size,sha256")
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png" and overlay.content == b"png"
    assert report.status_code == 200 and report.text == "<html>gate</html>"
    assert "sandbox" in report.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in report.headers["content-security-policy"]
    assert report.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/files/models/crack/aliases.json",
        f"/files/models/crack/versions/{CHAMPION}/model.keras",
        f"/files/incoming/{SCORED}/site%20a/photo-0.jpg",
        "/files/" + layout.run_summary_key("scheduled__2026-11-24T02:00:00+00:00"),
        f"/files/results/{SCORED}/missing.csv",
        "/files/results/%2E%2E/models/crack/aliases.json",
        "/files/results/..%2Fmodels/crack/aliases.json",
        "/files/%2Fetc/passwd",
        "/files/results",
    ],
)
def test_files_refuses_everything_else(client, path):
    """Keys outside results/, validation/, quarantine/ and gate reports, missing objects and escapes are 404."""
    with client.as_user("viewer") as session:
        response = session.get(path)
    assert response.status_code == 404


# ------------------------------------------------------------------------------ configuration and registration


def test_store_comes_from_the_variable_then_the_environment_then_the_default(view, monkeypatch, tmp_path):
    """AIRFLOW_VAR_CRACK_STORE is a Variable (read as Airflow reads it); a Variable set in the UI or CLI wins over
    the deployment's CRACK_STORE, which wins over the store in AIRFLOW_HOME."""
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", "s3://bucket/prefix")
    assert view.resolve_store() == "s3://bucket/prefix"
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_STORE")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CRACK_STORE", "s3://inspections")  # what docker-compose.yml gives every container
    metastore = {"crack_store": "s3://inspections-2027"}  # `airflow variables set crack_store ...`
    monkeypatch.setattr("airflow.models.Variable.get", lambda key, *args, **kwargs: metastore.get(key))
    assert view.resolve_store() == "s3://inspections-2027"
    metastore.clear()
    assert view.resolve_store() == "s3://inspections"
    monkeypatch.delenv("CRACK_STORE")
    assert view.resolve_store() == str(tmp_path / "crack-store")


def test_plugin_registers_the_app_and_a_valid_external_view(view):
    """The plugin mounts the app at /crack-ops behind the access check and adds a nav view Airflow's schema accepts."""
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse
    from crack_ops.plugin import CrackOpsPlugin

    (app_entry,) = CrackOpsPlugin.fastapi_apps
    assert app_entry["url_prefix"] == "/crack-ops"
    FastAPIAppResponse.model_validate({**app_entry, "app": str(app_entry["app"])})
    (dependency,) = app_entry["app"].router.dependencies
    assert dependency.dependency.__name__ == "require_crack_reader"
    (external,) = CrackOpsPlugin.external_views
    model = ExternalViewResponse.model_validate(external)
    assert model.destination == "nav" and model.url_route == "crack-ops"
    assert not external["href"].startswith("/"), "relative href: works behind a proxy with a base URL"
    assert os.path.basename(external["href"].rstrip("/")) == app_entry["url_prefix"].strip("/")


# ------------------------------------------------------------------------------ chart geometry


def test_a_missing_night_breaks_the_line_and_the_axis_fits_the_values(view):
    """A None value splits the polyline in two; the axis tops at a round number above the highest value."""
    from crack_ops.ops_render import chart

    points = [{"night": f"2026-11-2{index}", "crack_rate": value} for index, value in enumerate([0.2, None, 0.3, 0.34])]
    geometry = chart(points, ["crack_rate"], as_percent=True)
    (series,) = geometry["series"]
    assert len(series["lines"]) == 2 and len(series["lines"][0].split()) == 1 and len(series["lines"][1].split()) == 2
    assert [tick["label"] for tick in geometry["ticks"]] == ["0%", "25%", "50%"]
    assert series["dots"][0]["title"] == "2026-11-20: 20.0%"
    bottom, top = geometry["plot"]["bottom"], geometry["plot"]["top"]
    assert all(top <= dot["y"] <= bottom for dot in series["dots"])


def test_bars_bands_and_the_reference_line(view):
    """Bars start at the axis; each champion band spans its nights; the drift threshold is a line inside the axis."""
    from crack_ops.ops_render import chart

    points = [{"night": "2026-11-21", "objects": 10, "max_psi": 0.1}, {"night": "2026-11-22", "objects": 30,
                                                                       "max_psi": 1.7}]  # fmt: skip
    bands = [{"version": "20261101T020000Z-aaaa1111", "first": 0, "last": 0},
             {"version": "20261122T000000Z-cccc3333", "first": 1, "last": 1}]  # fmt: skip
    bars = chart(points, ["objects"], bars=True, bands=bands)
    assert [bar["y"] + bar["height"] for bar in bars["bars"]] == [bars["plot"]["bottom"]] * 2
    assert bars["bars"][1]["height"] == pytest.approx(3 * bars["bars"][0]["height"], abs=0.2)
    first, second = bars["bands"]
    assert first["x"] == bars["plot"]["left"] and first["x"] + first["width"] == pytest.approx(second["x"])
    assert second["x"] + second["width"] == pytest.approx(bars["plot"]["right"])
    assert first["label"] == "11-01 aaaa1111" and second["version"] == "20261122T000000Z-cccc3333"
    drift = chart(points, ["max_psi"], reference=0.25)
    assert drift["plot"]["top"] < drift["reference"]["y"] < drift["plot"]["bottom"]
    assert drift["reference"]["label"] == "0.25" and chart([], ["objects"])["empty"] is True


@pytest.mark.parametrize("path", ["/", f"/batches/{SCORED}", "/batches/blank-frames", f"/models/crack/{CHAMPION}"])
def test_every_link_on_every_page_resolves_inside_the_app_and_answers(client, path):
    """Each relative href and src, resolved against the page's own URL under /crack-ops, stays in the app and is 200."""
    from urllib.parse import unquote, urljoin, urlsplit

    prefix = "http://airflow.test/crack-ops"
    with client.as_user("viewer") as session:
        page = session.get(path).text
        targets = set(re.findall(r'(?:href|src)="([^"#]+)"', page))
        assert targets, "a page without links"
        for target in sorted(targets):
            resolved = urlsplit(urljoin(prefix + path, target.replace("&amp;", "&")))
            assert resolved.path.startswith("/crack-ops/"), (path, target, resolved.path)
            inner = unquote(resolved.path.removeprefix("/crack-ops")) + (f"?{resolved.query}" if resolved.query else "")
            assert session.get(inner).status_code == 200, (path, target)


# ------------------------------------------------------------------------------ operator actions

SESSION = "header.payload.signature-of-this-test-session"  # get_user is stood in for: any string is the session JWT
FAILED = "blank-frames"


class FakeRestApi:
    """Airflow's REST API at the HTTP boundary: a real server on loopback that records each call and answers it."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls: list[dict[str, Any]] = []
        self.answer: tuple[int, dict[str, Any]] | None = None  # None: a queued DAGRunResponse
        self.raw: bytes | None = None  # a 200 whose body is these bytes (a proxy's page, say), not the run
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                call = {"method": "POST", "path": self.path, "headers": dict(self.headers),
                        "body": json.loads(self.rfile.read(length))}  # fmt: skip
                api.calls.append(call)
                if api.raw is not None:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(api.raw)))
                    self.end_headers()
                    self.wfile.write(api.raw)
                    return
                if api.answer is not None:
                    self._reply(*api.answer)
                    return
                dag_id = self.path.split("/")[4]
                self._reply(200, {"dag_id": dag_id, "dag_run_id": "manual__2026-11-30T10:00:00+00:00",
                                  "state": "queued", "conf": call["body"]["conf"], "note": call["body"]["note"],
                                  "triggering_user_name": "admin-user"})  # fmt: skip

            def do_GET(self) -> None:
                api.calls.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self._reply(200, {"dag_id": self.path.split("/")[4], "is_paused": True})

            def log_message(self, *args: Any) -> None:  # quiet: pytest shows failures
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["method"] == "POST"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def rest_api(monkeypatch):
    """A fake REST API the view is pointed at with CRACK_OPS_API_URL."""
    api = FakeRestApi()
    monkeypatch.setenv("CRACK_OPS_API_URL", api.url)
    yield api
    api.close()


@pytest.fixture()
def promoted_twice(tmp_path, monkeypatch):
    """The view reads a store whose champion (SECOND) replaced FIRST: a rollback has somewhere to go."""
    from tests.unit.pipelines.promotions import two_promotions

    store = two_promotions(tmp_path)
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", store.uri)
    return store


def _form_token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page).group(1)


def _post(session, path: str, fields: dict[str, str], cookie: str = SESSION, **headers: str):
    return session.post(path, data=fields, headers={"Cookie": f"_token={cookie}", **headers})


@pytest.mark.parametrize("role", ["viewer", "user"])
def test_viewer_and_user_get_no_action_on_any_page(client, role):
    """Viewer and User (who may trigger DAG runs, but is no operator) see no form, no button, no form token."""
    with client.as_user(role) as session:
        pages = [session.get(path, headers={"Cookie": f"_token={SESSION}"}).text
                 for path in ("/", f"/batches/{FAILED}", f"/models/crack/{CHAMPION}")]  # fmt: skip
    for page in pages:
        assert "<form" not in page and "<button" not in page and "csrf_token" not in page
        assert "Release this batch" not in page and "Roll back the champion" not in page
    assert "contrast_in_bounds" in pages[1] and CHAMPION in pages[2], "the pages themselves are shown"


@pytest.mark.parametrize("role", ["op", "admin"])
def test_operators_get_the_release_form_on_a_failed_batch_and_the_rollback_form_on_the_champion(client, role):
    """Op and Admin: release on the failed batch only; rollback on the overview and the champion's page."""
    with client.as_user(role) as session:
        overview, failed, scored, champion, other = (
            session.get(path, headers={"Cookie": f"_token={SESSION}"}).text
            for path in ("/", f"/batches/{FAILED}", f"/batches/{SCORED}", f"/models/crack/{CHAMPION}",
                         f"/models/crack/{SECOND}")
        )  # fmt: skip
    assert 'id="release-form"' in failed and 'action="../actions/release-batch"' in failed
    assert f'name="batch_id" value="{FAILED}"' in failed
    assert 'id="release-form"' not in scored, "a scored batch has nothing to release"
    for page, action in ((overview, 'action="actions/rollback-champion"'),
                         (champion, 'action="../../actions/rollback-champion"')):  # fmt: skip
        assert 'id="rollback-form"' in page and action in page
        # The store's champion was already rolled back to its first version: nothing earlier to go back to.
        assert 'id="rollback-none"' in page and 'id="rollback-submit"' not in page
    assert 'id="rollback-form"' not in other, "only the champion's page offers the rollback"
    # The form token is the session's: another login gets another one.
    assert _form_token(failed) != _form_token_of(client, role, "another.session.jwt")


def _form_token_of(client, role: str, cookie: str) -> str:
    with client.as_user(role) as session:
        return _form_token(session.get(f"/batches/{FAILED}", headers={"Cookie": f"_token={cookie}"}).text)


@pytest.mark.parametrize("role", ["viewer", "user", None])
@pytest.mark.parametrize("path", ["/actions/release-batch", "/actions/rollback-champion"])
def test_a_post_without_the_permission_is_refused(client, rest_api, role, path):
    """Viewer, User and a user without a role get 403 for either action, and nothing reaches the REST API."""
    token = _form_token_of(client, "admin", SESSION)  # even with a valid form token
    fields = {"csrf_token": token, "batch_id": FAILED, "reason": "x", "model_name": "crack",
              "expected_champion": CHAMPION}  # fmt: skip
    with client.as_user(role) as session:
        response = _post(session, path, fields)
    assert response.status_code == 403
    assert rest_api.calls == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_form_over_8_kb_is_refused_without_being_read_whole(client, rest_api, declared):
    """The API server holding the view serves all of Airflow's UI: a huge post must not be buffered first."""

    def body():
        for _ in range(64):
            yield b"reason=" + b"x" * 4096

    headers = {"Cookie": f"_token={SESSION}", "Content-Type": "application/x-www-form-urlencoded"}
    with client.as_user("admin") as session:
        if declared:
            headers["Content-Length"] = str(64 * 4103)
            response = session.post("/actions/release-batch", content=b"".join(body()), headers=headers)
        else:
            response = session.post("/actions/release-batch", content=body(), headers=headers)
    assert response.status_code == 413 and "larger than 8192 bytes" in response.text
    assert rest_api.calls == []


def test_a_post_without_a_session_is_refused(client, rest_api):
    """No login at all: 401 before anything else is looked at."""
    response = client.post("/actions/release-batch", data={"batch_id": FAILED, "reason": "x"})
    assert response.status_code == 401 and rest_api.calls == []


@pytest.mark.parametrize(
    ("token", "headers"),
    [
        (None, {}),  # no form token
        ("0" * 64, {}),  # a made-up one
        ("other", {}),  # the form another login session was given
        ("own", {"Sec-Fetch-Site": "cross-site"}),  # posted from another site
        ("own", {"Sec-Fetch-Site": "same-site"}),  # from a sibling subdomain
    ],
    ids=["missing", "made-up", "other-session", "cross-site", "same-site"],
)
def test_a_post_needs_this_sessions_form_token(client, rest_api, token, headers):
    """An admin's post is refused (403, nothing triggered) unless it carries the token of its own session."""
    own = _form_token_of(client, "admin", SESSION)
    fields = {"batch_id": FAILED, "reason": "sensor fault, frames are fine"}
    if token is not None:
        fields["csrf_token"] = {"own": own, "other": _form_token_of(client, "admin", "another.session.jwt")}.get(
            token, token
        )
    with client.as_user("admin") as session:
        response = _post(session, "/actions/release-batch", fields, **headers)
    assert response.status_code == 403
    assert "token" in response.text or "another site" in response.text
    assert rest_api.calls == []


def test_release_triggers_the_nightly_dag_for_that_batch_as_the_user(client, rest_api, store):
    """The release calls POST /api/v2/dags/crack_nightly_scoring/dagRuns with the user's JWT and the batch released."""
    token = _form_token_of(client, "admin", SESSION)
    with client.as_user("admin") as session:
        response = _post(
            session,
            "/actions/release-batch",
            {"csrf_token": token, "batch_id": FAILED, "reason": "  sensor fault,\n frames are fine "},
        )
    assert response.status_code == 200, response.text
    (call,) = rest_api.posts()
    assert call["path"] == "/api/v2/dags/crack_nightly_scoring/dagRuns"
    assert call["headers"]["Authorization"] == f"Bearer {SESSION}"
    assert call["body"]["conf"] == {"store": store.uri, "batch_ids": [FAILED], "release_batches": [FAILED]}
    assert call["body"]["logical_date"] is None
    assert call["body"]["note"].endswith("admin-user): sensor fault, frames are fine")
    page = response.text
    assert 'id="run-id">manual__2026-11-30T10:00:00+00:00<' in page and 'id="paused"' in page
    assert "nonce-" in response.headers["content-security-policy"] and "<script" not in page


def test_rollback_triggers_the_rollback_dag_for_the_champion_the_page_showed(client, rest_api, promoted_twice):
    """The champion's page offers the rollback to FIRST; the post triggers crack_champion_rollback with the reason."""
    from tests.unit.pipelines.promotions import FIRST
    from tests.unit.pipelines.promotions import SECOND as CURRENT

    with client.as_user("op") as session:
        page = session.get(f"/models/crack/{CURRENT}", headers={"Cookie": f"_token={SESSION}"}).text
        assert f'id="rollback-target" href="../../models/crack/{FIRST}"' in page
        assert f'name="expected_champion" value="{CURRENT}"' in page
        response = _post(session, "/actions/rollback-champion",
                         {"csrf_token": _form_token(page), "model_name": "crack", "expected_champion": CURRENT,
                          "reason": "false alarms on site b"})  # fmt: skip
    assert response.status_code == 200, response.text
    (call,) = rest_api.posts()
    assert call["path"] == "/api/v2/dags/crack_champion_rollback/dagRuns"
    assert call["headers"]["Authorization"] == f"Bearer {SESSION}"
    assert call["body"]["conf"] == {"store": promoted_twice.uri, "model_name": "crack",
                                    "reason": "false alarms on site b", "expected_champion": CURRENT}  # fmt: skip
    assert f"from {CURRENT} to {FIRST}" in call["body"]["note"]
    # The view wrote nothing: the champion moves only when the DAG run does it.
    from crack_model.registry.versions import Registry

    assert Registry(promoted_twice).aliases("crack").get("champion") == CURRENT


@pytest.mark.parametrize(
    ("path", "fields", "status", "says"),
    [
        ("/actions/release-batch", {"batch_id": FAILED, "reason": "   "}, 400, "give a reason"),
        ("/actions/release-batch", {"batch_id": FAILED, "reason": "x" * 501}, 400, "under 500"),
        ("/actions/release-batch", {"batch_id": SCORED, "reason": "why not"}, 409, "nothing to release"),
        ("/actions/release-batch", {"batch_id": "2099-01-01", "reason": "why not"}, 404, "no batch"),
        ("/actions/rollback-champion", {"model_name": "crack", "expected_champion": CHAMPION, "reason": "why"}, 409,
         "no earlier champion"),
        ("/actions/rollback-champion", {"model_name": "crack", "reason": "why"}, 400, "expected_champion"),
    ],
    ids=["blank-reason", "long-reason", "scored-batch", "unknown-batch", "no-earlier-champion", "no-champion-named"],
)  # fmt: skip
def test_a_post_that_cannot_be_done_is_refused_with_the_reason(client, rest_api, path, fields, status, says):
    """Bad or pointless requests get their status and a message saying why; nothing reaches the REST API."""
    token = _form_token_of(client, "admin", SESSION)
    with client.as_user("admin") as session:
        response = _post(session, path, {"csrf_token": token, **fields})
    assert response.status_code == status
    assert says in response.text
    assert rest_api.calls == []


def test_a_refusal_by_the_rest_api_is_shown_with_its_status(client, rest_api):
    """Airflow's own refusal (here 403 from its auth manager) comes back with its status and detail."""
    rest_api.answer = (403, {"detail": "Forbidden by the auth manager"})
    token = _form_token_of(client, "admin", SESSION)
    with client.as_user("admin") as session:
        response = _post(session, "/actions/release-batch", {"csrf_token": token, "batch_id": FAILED, "reason": "x"})
    assert response.status_code == 403
    assert "Airflow did not start the run: Forbidden by the auth manager" in response.text
    assert len(rest_api.posts()) == 1


def test_an_unreachable_rest_api_is_a_502_naming_the_setting(client, monkeypatch):
    """Nothing listens at CRACK_OPS_API_URL: 502, and the page says which setting points there."""
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("CRACK_OPS_API_URL", f"http://127.0.0.1:{port}")
    token = _form_token_of(client, "admin", SESSION)
    with client.as_user("admin") as session:
        response = _post(session, "/actions/release-batch", {"csrf_token": token, "batch_id": FAILED, "reason": "x"})
    assert response.status_code == 502 and "CRACK_OPS_API_URL" in response.text
    assert "Nothing was triggered" in response.text


def test_a_trigger_whose_answer_cannot_be_read_says_the_run_may_exist(client, rest_api):
    """The run was created and its answer lost (a timeout, a body that is not JSON): the page said "Nothing was
    triggered", so the operator posted again and got a second run."""
    rest_api.raw = b"<html>gateway says ok</html>"
    token = _form_token_of(client, "admin", SESSION)
    with client.as_user("admin") as session:
        response = _post(session, "/actions/release-batch", {"csrf_token": token, "batch_id": FAILED, "reason": "x"})
    assert response.status_code == 504 and len(rest_api.posts()) == 1
    assert "Airflow may have started the run" in response.text and "Nothing was triggered" not in response.text
    assert "look at the DAG&#39;s runs in Airflow before you try again" in response.text


def test_the_rest_api_address_defaults_to_this_api_server(view, monkeypatch):
    """Without CRACK_OPS_API_URL the API server calls itself on [api] port, under [api] base_url's path."""
    from crack_ops.airflow_rest import api_url

    monkeypatch.delenv("CRACK_OPS_API_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__API__PORT", "8793")
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/airflow/")
    assert api_url() == "http://127.0.0.1:8793/airflow"
    monkeypatch.setenv("CRACK_OPS_API_URL", "http://airflow-apiserver:8080/")
    assert api_url() == "http://airflow-apiserver:8080"


# ------------------------------------------------------------------------------ GX Data Docs


def test_batch_page_links_the_data_docs_and_the_site_is_served(client, store):
    """With Data Docs in outcome.json the batch page links index.html; its pages and styles are served sandboxed."""
    import json

    batch = "zz-docs"
    document = outcome(batch, "failed", ["contrast_in_bounds: 1 of 1 fail"], 1, None).to_dict()
    index = f"validation/{batch}/data_docs/index.html"
    document["data_docs"] = {"index": index, "error": None}
    store.write(f"validation/{batch}/outcome.json", json.dumps(document).encode())
    store.write(index, b'<html><link rel="stylesheet" href="static/styles/site.css"><body>docs</body></html>')
    store.write(f"validation/{batch}/data_docs/static/styles/site.css", b"body { color: black }")
    try:
        with client.as_user("viewer") as session:
            page = session.get(f"/batches/{batch}").text
            served = session.get(f"/files/{index}")
            style = session.get(f"/files/validation/{batch}/data_docs/static/styles/site.css")
    finally:
        for key in ("outcome.json", "data_docs/index.html", "data_docs/static/styles/site.css"):
            Path(store.url(f"validation/{batch}/{key}")).unlink()
    assert f'id="data-docs-link" href="../files/{index}"' in page
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    policy = served.headers["content-security-policy"]
    assert "sandbox" in policy and "script-src" not in policy and "style-src 'self'" in policy
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


def test_an_unreadable_audit_log_costs_the_rollback_form_not_the_page(client, monkeypatch):
    """When the rollback target cannot be read, the operator still gets the overview, with the reason in the form."""
    from crack_model.core.errors import CrackModelError

    def unreadable(store, name):
        raise CrackModelError("the audit log of model crack disagrees with its aliases")

    monkeypatch.setattr("crack_model.pipelines.rollback.rollback_target", unreadable)
    with client.as_user("admin") as session:
        response = session.get("/", headers={"Cookie": f"_token={SESSION}"})
    assert response.status_code == 200 and f'id="champion-version">{CHAMPION}<' in response.text
    assert 'id="rollback-problem"' in response.text and "disagrees with its aliases" in response.text
    assert 'id="rollback-submit"' not in response.text


@contextmanager
def _a_batch_like_the_scored_one(store: LocalStore, batch_id: str, summary: dict, outcome: str) -> Iterator[None]:
    """``batch_id``: the scored batch's documents, ``summary`` changed, of that validation outcome; removed after."""
    import json
    import shutil

    for folder in ("results", "validation"):
        shutil.copytree(store.root / folder / SCORED, store.root / folder / batch_id)
    changed = {f"results/{batch_id}/summary.json": {**summary, "batch_id": batch_id},
               f"validation/{batch_id}/outcome.json": {"batch_id": batch_id, "outcome": outcome}}  # fmt: skip
    for key, changes in changed.items():
        document = json.loads(store.read(key))
        store.write(key, json.dumps({**document, **changes}).encode())
    try:
        yield
    finally:
        for folder in ("results", "validation"):
            shutil.rmtree(store.root / folder / batch_id)


def test_a_batch_whose_every_row_errored_is_not_said_to_hold_no_crack(client, store):
    """Five error rows, nothing looked at: the page said "No crack found in this batch" under a green badge."""
    summary = {"status_counts": {"error": 5}, "label_counts": {}, "cracks": 0, "crack_rate": None}
    rows = "".join(f"incoming/all-errors/p{n}.jpg,error,cannot read: gone,,\n" for n in range(5))
    with _a_batch_like_the_scored_one(store, "all-errors", summary, "passed"), client.as_user("viewer") as session:
        store.write(
            "results/all-errors/predictions.csv", ("key,status,error,label,crack_probability\n" + rows).encode()
        )
        page = session.get("/batches/all-errors").text
    assert "No crack found" not in page
    assert "Nothing in this batch could be scored (5 errors): no photo was looked at" in page


def test_a_scored_batch_with_late_or_replaced_uploads_shows_them_and_can_be_released(client, store):
    """Late and replaced uploads were in no count, the batch read "scored", and once its revalidation failed the
    release was refused with 409: the batch was held every night for good."""
    summary = {"status_counts": {"ok": 1, "error": 1, "quarantined": 1, "changed": 2}, "late_objects": 3}
    with _a_batch_like_the_scored_one(store, "late-ones", summary, "passed"), client.as_user("op") as session:
        waiting = session.get("/batches/late-ones", headers={"Cookie": f"_token={SESSION}"}).text
        overview = session.get("/?limit=100").text
    assert "awaiting revalidation" in waiting and "· 2 changed · 3 late" in waiting and "No crack found" not in waiting
    assert "photo-2.jpg" in waiting and "Not scored" not in waiting  # its cracks, scored before, are listed
    assert "2 changed</div>" in overview and "3 late</div>" in overview
    with _a_batch_like_the_scored_one(store, "late-ones", summary, "failed"), client.as_user("op") as session:
        held = session.get("/batches/late-ones", headers={"Cookie": f"_token={SESSION}"}).text
    assert 'id="release-form"' in held and 'name="batch_id" value="late-ones"' in held


@pytest.mark.parametrize(
    "path",
    ["/?name=crack%0D%0ACRITICAL%20forged", "/api/overview?name=..%2Fx", "/api/history?name=a%0Ab",
     f"/batches/{SCORED}?name=%3Cb%3E", "/api/models/cr%0Aack/v1", "/models/..x/v1"],
)  # fmt: skip
def test_a_model_name_the_registry_would_refuse_is_refused_before_any_read(client, path):
    """`?name=crack%0D%0ACRITICAL ...` forged a line in the API server's log, and the page answered 200 as if the
    model had no champion yet."""
    with client.as_user("viewer") as session:
        assert session.get(path).status_code == 422


def test_a_problem_naming_a_hostile_key_is_one_log_line(caplog):
    from crack_model.pipelines.store_reader import StoreReader

    reader = StoreReader(LocalStore(Path("/nonexistent")))
    with caplog.at_level("WARNING"):
        reader.note("cannot read results/b1/x\nCRITICAL airflow.auth: admin logged in")
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()
    assert "x\\nCRITICAL" in caplog.records[0].getMessage()


def test_a_night_of_many_batches_shows_ten_chips_a_cell_and_how_many_more(client, tmp_path, monkeypatch):
    """A backlog night of 3,000 batches put 3,000 chips in each cell of the runs table (500 KB of page)."""
    from crack_model.core.documents import RunSummary

    store = LocalStore(tmp_path / "store")
    names = [f"2026-12-06_site-{number:03d}" for number in range(25)]
    RunSummary("scheduled__2026-12-07T02:00:00+00:00", "2026-12-07T04:00:00Z", 25, names, [], names, 25, 0,
               [{"batch_id": name, "outcome": "passed"} for name in names]).write(store, "runs/night.json")  # fmt: skip
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", store.uri)
    with client.as_user("viewer") as session:
        page = session.get("/").text
    runs = page[page.index('id="runs"') :]
    assert runs.count('class="chip"') == 20 and runs.count("and 15 more") == 2


def test_an_address_that_is_no_url_is_could_not_reach(client, monkeypatch):
    """`CRACK_OPS_API_URL=http://localhost:80x80` is refused before anything is sent: not "may have started"."""
    monkeypatch.setenv("CRACK_OPS_API_URL", "http://localhost:80x80")
    token = _form_token_of(client, "admin", SESSION)
    with client.as_user("admin") as session:
        response = _post(session, "/actions/release-batch", {"csrf_token": token, "batch_id": FAILED, "reason": "x"})
    assert response.status_code == 502 and "CRACK_OPS_API_URL" in response.text
    assert "Nothing was triggered" in response.text
