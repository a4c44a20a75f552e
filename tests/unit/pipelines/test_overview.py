"""The ops overview (crack_model.pipelines.overview) and the ops view's FastAPI app, on a real store."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from crack_model.core.documents import ShardStats
from crack_model.core.errors import CrackModelError
from crack_model.core.local_store import LocalStore
from crack_model.core.model_card import ModelCard
from crack_model.pipelines import ops_files
from crack_model.pipelines import overview as ops
from crack_model.pipelines.nightly import publish_run_summary
from crack_model.quality.outcome import ValidationOutcome
from crack_model.registry.versions import Registry
from crack_model.serving.batch import summarize

PROJECT = Path(__file__).resolve().parents[3]
CHAMPION = "20261101T020000Z-aaaa1111"
REJECTED = "20261120T020000Z-bbbb2222"
SCORED = "2026-11-24"


def _register(registry: Registry, folder: Path, version: str) -> None:
    folder.mkdir(parents=True)
    ModelCard(
        version=version, threshold=0.42, created_at=f"{version[:4]}-{version[4:6]}-{version[6:8]}T02:00:00Z"
    ).save(folder)
    (folder / "model.keras").write_bytes(b"not a real model: the overview never loads it")
    metrics = {"test": {"crack_recall": 0.97, "crack_precision": 0.96, "accuracy": 0.965, "images": 300}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    registry.register(folder, "crack", actor="tester", run_id=f"manual__{version}")


def _gate_report(version: str, decision: str, champion: str | None, failed: list[str]) -> dict[str, Any]:
    """The fields of a gate report (crack_model.evaluation.gate.decide + run_gate) that the overview reads."""
    metrics = {"crack_recall": 0.99, "crack_precision": 0.975, "accuracy": 0.98, "images": 400, "cracks": 200,
               "missed_cracks": 2, "false_alarms": 5}  # fmt: skip
    intervals = {"crack_recall": [0.975, 1.0], "crack_precision": [0.95, 0.995], "accuracy": [0.965, 0.992]}
    return {
        "format": 1, "name": "crack", "candidate_version": version, "champion_version": champion,
        "decision": decision, "failed_checks": failed, "reasons": [f"{check} below its floor" for check in failed],
        "holdout": {"images": 400}, "policy": {"bootstrap": {"confidence": 0.9}},
        "finished_at": "2026-11-20T03:00:00Z",
        "candidate": {"version": version, "runtime": "keras", "metrics": metrics, "intervals": intervals},
    }  # fmt: skip


def _outcome(batch_id: str, outcome: str, reasons: list[str], objects: int, drift: dict[str, Any] | None):
    quarantined = (
        [{"key": f"incoming/{batch_id}/bad.jpg", "reasons": ["decodes: no"]}] if "quarantine" in outcome else []
    )
    counts = {"objects": objects, "quarantined": len(quarantined), "failed_expectations": len(reasons)}
    return ValidationOutcome(batch_id, "incoming", outcome, reasons, quarantined, counts, [], drift, {},
                             validated_at="2026-11-24T02:10:00Z")  # fmt: skip


def _write_validation(store: Any, outcome: ValidationOutcome) -> None:
    store.write(f"validation/{outcome.batch_id}/report.html", b"<html><body>report</body></html>")
    store.write(f"validation/{outcome.batch_id}/outcome.json", json.dumps(outcome.to_dict()).encode())


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalStore:
    """A store as the workflow leaves it: a champion, a rejected candidate, batches in every state, runs."""
    root = tmp_path_factory.mktemp("ops-store")
    store = LocalStore(root / "store")
    registry = Registry(store)
    _register(registry, root / "v1", CHAMPION)
    registry.add_gate_result("crack", CHAMPION, report=_gate_report(CHAMPION, "promote", None, []),
                             html="<html>gate</html>", approved_runtimes=["litert-int8", "keras"])  # fmt: skip
    registry.promote("crack", CHAMPION, expected_current=None, actor="airflow:crack_retraining",
                     reason="passed gate policy", run_id="scheduled__2026-11-01")  # fmt: skip
    _register(registry, root / "v2", REJECTED)
    rejected = _gate_report(REJECTED, "reject", CHAMPION, ["floor:crack_recall"])
    registry.add_gate_result("crack", REJECTED, report=rejected, html="<html>gate</html>", approved_runtimes=[])

    # A scored batch, with a quarantined upload, overlays and real summary numbers.
    for index in range(4):
        store.write(f"incoming/{SCORED}/site a/photo-{index}.jpg", b"jpeg bytes")
    drift = {"checked": True, "drifted": False, "psi": {"brightness": 0.04, "blur": 0.11}, "drifted_features": [],
             "threshold": 0.25, "note": "no drift"}  # fmt: skip
    _write_validation(store, _outcome(SCORED, "passed_with_quarantine", [], 5, drift))
    rows = [{"status": "ok", "label": "Positive"}, {"status": "ok", "label": "Negative"},
            {"status": "ok", "label": "Positive"}, {"status": "error", "label": ""},
            {"status": "quarantined", "label": ""}]  # fmt: skip
    stats = [ShardStats(images=4, seconds=0.5, finished_at="2026-11-24T02:00:00Z", runtime="litert-int8",
                        crack_class="Positive", threshold=0.42)]  # fmt: skip
    summary = summarize(SCORED, rows, CHAMPION, stats, 1, None)
    summary.write(store, f"results/{SCORED}/summary.json")
    store.write(f"results/{SCORED}/predictions.csv", b"key,status\n")
    for index in range(5):
        store.write(f"results/{SCORED}/overlays/site a/photo-{index}.jpg.png", b"png")
    summary.write(store, f"results/{SCORED}/_SUCCESS")

    # A batch that failed validation (and drifted), one validated but not scored, one half scored, one new.
    store.write("incoming/blank-frames/frame-00.png", b"png")
    failed_drift = {"checked": True, "drifted": True, "psi": {"contrast": 1.7, "blur": 0.9},
                    "drifted_features": ["blur", "contrast"], "threshold": 0.25, "note": "drifted"}  # fmt: skip
    _write_validation(
        store, _outcome("blank-frames", "failed", ["contrast_in_bounds: 12 of 12 fail"], 12, failed_drift)
    )
    store.write("incoming/2026-11-23/a.jpg", b"jpeg")
    _write_validation(store, _outcome("2026-11-23", "passed", [], 1, None))
    store.write("incoming/2026-11-22/a.jpg", b"jpeg")
    _write_validation(store, _outcome("2026-11-22", "passed", [], 1, None))
    store.write(f"results/2026-11-22/_parts/{CHAMPION}/shard-0000-of-0002/part-00000.csv", b"key\n")
    for index in range(3):
        store.write(f"incoming/2026-11-25/site/{index}.jpg", b"jpeg")
    store.write("incoming/2026-11-25/_READY", b"")
    # The training suite's report is not a batch.
    training = ValidationOutcome("labeled", "training", "passed", [], [], {"objects": 200}, [], None, {})
    store.write("validation/labeled/outcome.json", json.dumps(training.to_dict()).encode())

    validations = [{"batch_id": SCORED, "outcome": "passed_with_quarantine"},
                   {"batch_id": "blank-frames", "outcome": "failed"}]  # fmt: skip
    publish_run_summary(store.uri, "scheduled__2026-11-23T02:00:00+00:00", validations[:1], [summary.as_dict()])
    publish_run_summary(store.uri, "scheduled__2026-11-24T02:00:00+00:00", validations, [summary.as_dict()])
    return store


@pytest.fixture(scope="module")
def view(store, tmp_path_factory):
    """The ops_view module of the installed crack_ops plugin, reading the test store."""
    with pytest.MonkeyPatch.context() as patch:
        if "airflow" not in sys.modules:  # keep Airflow's config out of the user's home
            patch.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow-home")))
        patch.setenv("AIRFLOW_VAR_CRACK_STORE", store.uri)
        from crack_ops import ops_view

        yield ops_view


@pytest.fixture(scope="module")
def client(view):
    """A TestClient of the app; ``client.authenticated()`` stands in for a logged-in user."""
    with warnings.catch_warnings():  # Starlette's notice about httpx, nothing this test can act on
        warnings.simplefilter("ignore")
        from airflow.api_fastapi.core_api.security import get_user
        from fastapi.testclient import TestClient

        app = view.create_app()
    test_client = TestClient(app)

    class Session:
        def __enter__(self):
            app.dependency_overrides[get_user] = lambda: object()
            return test_client

        def __exit__(self, *exc):
            app.dependency_overrides.clear()

    test_client.authenticated = Session  # type: ignore[attr-defined]
    return test_client


# ----------------------------------------------------------------------------- crack_model.pipelines.overview


def test_champion_shows_holdout_metrics_with_intervals_and_who_promoted_it(store):
    """The champion card: version, gate holdout metrics with CIs, approved runtimes, promotion when and by whom."""
    champion = ops.overview(store.uri)["champion"]
    assert champion["version"] == CHAMPION
    assert champion["metrics"]["crack_recall"] == {"value": 0.99, "low": 0.975, "high": 1.0}
    assert champion["metrics"]["accuracy"]["value"] == 0.98
    assert champion["confidence"] == 0.9
    assert champion["missed_cracks"] == 2
    assert "holdout, 400 images" in champion["metrics_source"]
    assert champion["approved_runtimes"] == ["litert-int8", "keras"]
    assert champion["promoted_by"] == "airflow:crack_retraining"
    assert champion["promoted_at"] and champion["promotion_reason"] == "passed gate policy"
    assert champion["threshold"] == 0.42
    assert champion["links"]["gate_report"] == f"models/crack/versions/{CHAMPION}/gate_report.html"


def test_candidates_are_newest_first_with_gate_decisions_and_failed_checks(store):
    """Candidates: the rejected newer one first, with its failed checks and the champion it was compared with."""
    data = ops.overview(store.uri)
    assert [c["version"] for c in data["candidates"]] == [REJECTED, CHAMPION]
    rejected, champion = data["candidates"]
    assert rejected["gate_decision"] == "reject"
    assert rejected["failed_checks"] == ["floor:crack_recall"]
    assert rejected["compared_with"] == CHAMPION
    assert champion["aliases"] == ["champion"] and champion["gate_decision"] == "promote"
    assert data["challenger"] is None and data["versions_total"] == 2
    assert ops.overview(store.uri, limit=1)["candidates"][0]["version"] == REJECTED


def test_batches_in_every_state(store):
    """Scored, failed validation, validated, half scored and new batches each get a row; training reports do not."""
    data = ops.overview(store.uri)
    batches = {batch["batch_id"]: batch for batch in data["batches"]}
    assert set(batches) == {SCORED, "blank-frames", "2026-11-23", "2026-11-22", "2026-11-25"}
    assert data["batches_total"] == 5
    assert {batch_id: batch["state"] for batch_id, batch in batches.items()} == {
        SCORED: "scored",
        "blank-frames": "failed validation",
        "2026-11-23": "validated",
        "2026-11-22": "scoring",
        "2026-11-25": "waiting",
    }
    assert batches["2026-11-25"]["objects"] == 3  # counted from incoming/, the _READY marker left out
    assert batches["2026-11-25"]["validation"] is None and batches["2026-11-25"]["outcome"] is None
    assert data["problems"] == []


def test_scored_batch_has_counts_rate_drift_throughput_and_links(store):
    """A scored batch: status counts, crack count and rate, max PSI, throughput and links to its files."""
    batch = next(b for b in ops.overview(store.uri, overlays=2)["batches"] if b["batch_id"] == SCORED)
    assert batch["outcome"] == "passed_with_quarantine"
    assert batch["objects"] == 5 and batch["quarantined"] == 1
    assert batch["status_counts"] == {"error": 1, "ok": 3, "quarantined": 1}
    assert batch["cracks"] == 2 and batch["crack_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert batch["drift"]["max_psi"] == 0.11 and batch["drift"]["drifted"] is False
    assert batch["throughput_images_per_second"] == 8.0
    assert batch["model_version"] == CHAMPION
    assert batch["links"]["predictions"] == f"results/{SCORED}/predictions.csv"
    assert batch["links"]["validation_report"] == f"validation/{SCORED}/report.html"
    assert batch["links"]["quarantine"] == f"quarantine/{SCORED}/quarantine.json"
    assert batch["links"]["overlays"] == [f"results/{SCORED}/overlays/site a/photo-0.jpg.png",
                                          f"results/{SCORED}/overlays/site a/photo-1.jpg.png"]  # fmt: skip
    assert all(ops_files.viewable(key) for key in (batch["links"]["predictions"], *batch["links"]["overlays"]))


def test_failed_batch_has_reasons_and_drift_but_no_results(store):
    """A batch that failed validation: outcome failed, its reasons, drifted with the worst PSI, nothing scored."""
    batch = next(b for b in ops.overview(store.uri)["batches"] if b["batch_id"] == "blank-frames")
    assert batch["outcome"] == "failed"
    assert batch["validation"]["reasons"] == ["contrast_in_bounds: 12 of 12 fail"]
    expected = {"checked": True, "drifted": True, "max_psi": 1.7, "drifted_features": ["blur", "contrast"],
                "threshold": 0.25, "note": "drifted"}  # fmt: skip
    assert batch["drift"] == expected
    assert batch["crack_rate"] is None and batch["links"]["predictions"] is None and batch["links"]["overlays"] == []


def test_nightly_runs_newest_first(store):
    """runs/*.json: the last runs, newest first, limited."""
    runs = ops.overview(store.uri)["runs"]
    assert [run["run_id"] for run in runs] == [
        "scheduled__2026-11-24T02:00:00+00:00",
        "scheduled__2026-11-23T02:00:00+00:00",
    ]
    assert runs[0]["batches_failed_validation"] == ["blank-frames"] and runs[0]["cracks"] == 2
    assert len(ops.overview(store.uri, runs=1)["runs"]) == 1


def test_empty_store_and_store_without_registry(tmp_path):
    """A fresh store (no registry, no batches, no runs) gives an empty overview, not an error."""
    data = ops.overview(str(tmp_path / "nothing-here"))
    assert data["champion"] is None and data["candidates"] == [] and data["batches"] == [] and data["runs"] == []
    assert data["problems"] == []
    LocalStore(tmp_path / "uploads-only").write("incoming/b1/x.jpg", b"x")
    only = ops.overview(str(tmp_path / "uploads-only"))
    assert [(b["batch_id"], b["state"], b["objects"]) for b in only["batches"]] == [("b1", "waiting", 1)]


def test_broken_documents_are_problems_not_errors(tmp_path):
    """An unreadable outcome.json or aliases.json is listed under problems; the rest still shows."""
    store = LocalStore(tmp_path)
    store.write("validation/b1/outcome.json", b"{not json")
    store.write("incoming/b1/x.jpg", b"x")
    store.write("models/crack/aliases.json", b"[]")
    data = ops.overview(store.uri)
    assert [b["batch_id"] for b in data["batches"]] == ["b1"]
    assert data["batches"][0]["validation"] is None
    assert any("validation/b1/outcome.json" in problem for problem in data["problems"])
    assert any("aliases" in problem for problem in data["problems"])


def test_overview_rejects_nonsense_limits(tmp_path):
    """limit below 1 is a user error with a message."""
    with pytest.raises(CrackModelError, match="limit"):
        ops.overview(str(tmp_path), limit=0)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("results/b1/predictions.csv", ("text/csv; charset=utf-8", True)),
        ("results/b1/overlays/a b.jpg.png", ("image/png", True)),
        ("validation/b1/report.html", ("text/html; charset=utf-8", True)),
        ("validation/b1/outcome.json", ("application/json", True)),
        ("quarantine/b1/site/broken.jpg", ("image/jpeg", True)),
        ("quarantine/b1/evil.html", ("application/octet-stream", False)),  # uploaded HTML is never rendered
        ("results/b1/nested/page.html", ("application/octet-stream", False)),
        ("models/crack/versions/v1/gate_report.html", ("text/html; charset=utf-8", True)),
        ("models/crack/versions/v1/gate_report.json", None),
        ("models/crack/versions/v1/model.keras", None),
        ("models/crack/aliases.json", None),
        ("incoming/b1/x.jpg", None),
        ("labeled/Positive/x.jpg", None),
        ("runs/x.json", None),
        ("results", None),
        ("results/../models/crack/aliases.json", None),
        ("/etc/passwd", None),
        ("results//x.csv", None),
        ("", None),
    ],
)
def test_viewable_keys(key, expected):
    """Only reports, results and quarantine copies are served; HTML inline only for the workflow's reports."""
    assert ops_files.viewable(key) == expected


def test_iter_object_streams_in_chunks(tmp_path):
    """A local object comes back in chunks of the requested size; a missing one is a CrackModelError."""
    store = LocalStore(tmp_path)
    store.write("results/b1/predictions.csv", b"x" * 2500)
    assert [len(chunk) for chunk in ops_files.iter_object(store, "results/b1/predictions.csv", chunk_size=1000)] == [
        1000,
        1000,
        500,
    ]
    with pytest.raises(CrackModelError, match="not found"):
        list(ops_files.iter_object(store, "results/b1/missing.csv"))


# ------------------------------------------------------------------------------- the FastAPI app


@pytest.mark.parametrize("path", ["/", "/api/overview", f"/files/results/{SCORED}/predictions.csv", "/files/nope"])
def test_every_route_needs_authentication(client, path):
    """Without the UI's cookie or a bearer token every route answers 401, files included."""
    response = client.get(path)
    assert response.status_code == 401
    assert "predictions" not in response.text and CHAMPION not in response.text


def test_page_shows_champion_batches_runs_and_candidates(client):
    """The HTML page: the champion, each batch with its outcome badge and crack rate, runs and candidates."""
    with client.authenticated() as session:
        response = session.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert f'id="champion-version">{CHAMPION}<' in page
    assert "99.0%" in page and "90% CI 97.5% – 100.0%" in page
    assert "passed with quarantine" in page and ">failed<" in page and "66.7%" in page
    assert "contrast_in_bounds: 12 of 12 fail" in page
    assert "8.0 img/s" in page
    assert REJECTED in page and "floor:crack_recall" in page and ">reject<" in page
    assert "scheduled__2026-11-24T02:00:00+00:00" in page
    # Relative links (the page lives inside the UI's iframe and behind proxies); keys URL-quoted.
    assert f'href="files/results/{SCORED}/predictions.csv"' in page
    assert f'href="files/results/{SCORED}/overlays/site%20a/photo-0.jpg.png"' in page
    assert f'href="files/models/crack/versions/{CHAMPION}/gate_report.html"' in page
    assert 'href="/' not in page


def test_page_escapes_store_content(client, store):
    """Text from the store (reasons, ids) is HTML-escaped, never markup."""
    _write_validation(store, _outcome("zz-escape", "failed", ["<script>alert(1)</script>"], 1, None))
    try:
        with client.authenticated() as session:
            page = session.get("/").text
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    finally:
        for name in ("outcome.json", "report.html"):
            Path(store.url(f"validation/zz-escape/{name}")).unlink()
        Path(store.url("validation/zz-escape/outcome.json")).parent.rmdir()


def test_api_overview_is_the_library_overview(client, store):
    """GET /api/overview returns crack_model.pipelines.overview.overview of the configured store as JSON."""
    with client.authenticated() as session:
        data = session.get("/api/overview", params={"limit": 2, "runs": 1}).json()
    assert data["store"] == store.uri
    assert data["champion"]["version"] == CHAMPION
    assert len(data["batches"]) == 2 and len(data["runs"]) == 1
    with client.authenticated() as session:
        assert session.get("/api/overview", params={"limit": 0}).status_code == 422


def test_files_streams_linked_objects_with_safe_headers(client):
    """Linked files come back with their content type, length and a sandboxing CSP."""
    with client.authenticated() as session:
        csv_response = session.get(f"/files/results/{SCORED}/predictions.csv")
        overlay = session.get(f"/files/results/{SCORED}/overlays/site%20a/photo-0.jpg.png")
        report = session.get(f"/files/models/crack/versions/{CHAMPION}/gate_report.html")
    assert csv_response.status_code == 200 and csv_response.text == "key,status\n"
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png" and overlay.content == b"png"
    assert report.status_code == 200 and report.text == "<html>gate</html>"
    assert "sandbox" in report.headers["content-security-policy"]
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
    with client.authenticated() as session:
        response = session.get(path)
    assert response.status_code == 404


def test_store_comes_from_the_environment_then_the_default(view, monkeypatch, tmp_path):
    """AIRFLOW_VAR_CRACK_STORE wins; without it and without a Variable, the store in AIRFLOW_HOME."""
    monkeypatch.setenv("AIRFLOW_VAR_CRACK_STORE", "s3://bucket/prefix")
    assert view.resolve_store() == "s3://bucket/prefix"
    monkeypatch.delenv("AIRFLOW_VAR_CRACK_STORE")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setattr("airflow.models.Variable.get", lambda *args, **kwargs: None)
    assert view.resolve_store() == str(tmp_path / "crack-store")


def test_plugin_registers_the_app_and_a_valid_external_view(view):
    """The plugin mounts the app at /crack-ops behind authentication and adds a nav view Airflow's schema accepts."""
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse, FastAPIAppResponse
    from crack_ops.plugin import CrackOpsPlugin

    (app_entry,) = CrackOpsPlugin.fastapi_apps
    assert app_entry["url_prefix"] == "/crack-ops"
    FastAPIAppResponse.model_validate({**app_entry, "app": str(app_entry["app"])})
    assert app_entry["app"].router.dependencies, "the app must carry the authentication dependency"
    (external,) = CrackOpsPlugin.external_views
    model = ExternalViewResponse.model_validate(external)
    assert model.destination == "nav" and model.url_route == "crack-ops"
    assert not external["href"].startswith("/"), "relative href: works behind a proxy with a base URL"
    assert os.path.basename(external["href"].rstrip("/")) == app_entry["url_prefix"].strip("/")
