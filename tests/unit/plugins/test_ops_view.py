"""The ops view's FastAPI app (crack_ops.ops_view): who may see it, its headers, pages and files, on a real store.

Users are the SimpleAuthManager's (Airflow's default auth manager), authorized by the real
``is_authorized_dag``; only the step that turns a JWT into a user is stood in for (it needs the
metadata database, which unit tests do not have). The browser test logs in for real.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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
    assert "bad.jpg" in page and "decodes: no" in page and f'href="../files/quarantine/{SCORED}/bad.jpg"' in page
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
    assert 'href="/' not in page


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
        "/files/runs/scheduled__2026-11-24T02_00_00_00_00.json",
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


def test_store_comes_from_the_environment_then_the_default(view, monkeypatch, tmp_path):
    """AIRFLOW_VAR_CRACK_STORE wins; without it and without a Variable, the store in AIRFLOW_HOME."""
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", "s3://bucket/prefix")
    assert view.resolve_store() == "s3://bucket/prefix"
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_STORE")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setattr("airflow.models.Variable.get", lambda *args, **kwargs: None)
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
