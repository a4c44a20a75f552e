"""The crack ops view: a FastAPI app the Airflow API server mounts under ``/crack-ops``.

Pages (server-rendered HTML, no script, no external source):

- ``GET /``: champion (holdout figures with exact and bootstrap intervals), trend charts over the
  last nights (inline SVG), batches, nightly runs, candidates;
- ``GET /batches/{batch_id}``: one batch: summary, validation outcome and reasons, drift per
  feature, crack overlays with their probabilities, quarantined objects, predictions.csv;
- ``GET /models/{name}/{version}``: one version: lineage to its training data, gate, approved
  runtimes, promotion audit.

Each page has its data as JSON under ``/api/...`` (``crack_model.pipelines.overview``, ``history``,
``batch_page``, ``model_page``), and ``GET /files/{key}`` streams one linked object from the store
(reports, GX Data Docs sites, predictions, overlays, quarantined copies; nothing else).

Operators (Op and Admin) also get two forms: release a failed batch, roll the champion back. Each
posts to ``/actions/...``, which triggers a DAG run through Airflow's REST API as that user
(``ops_actions``, where the permission and CSRF design is explained); an action writes nothing itself.

Airflow mounts plugin apps without authentication, so every route depends on
``crack_reader_dependency`` (``ops_security``): a logged-in user the auth manager lets read the
crack DAGs. ``SecurityHeaders`` puts a strict CSP and ``nosniff`` on every response. Routes are
plain ``def``: FastAPI runs them in its thread pool, so store I/O never blocks the server's event
loop. The store is opened like a task opens it (``CrackStoreHook``: the ``aws_default``
connection's session for ``s3://``) and kept for a few minutes. Only FastAPI is imported at
module level: every Airflow component loads the plugin.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from crack_model.pipelines.shown import module_logger
from crack_ops.ops_actions import add_action_routes, offered_actions
from crack_ops.ops_render import environment, trend_charts
from crack_ops.ops_security import SecurityHeaders, crack_reader_dependency, page_csp

log = module_logger(__name__)

URL_PREFIX = "/crack-ops"
# A model name as the registry takes it (registry.naming.validate_name); anything else is refused (422) before it
# reaches a store key or a log line.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MODEL_NAME = Query("crack", pattern=NAME_PATTERN)
MODEL_PATH_NAME = Path(pattern=NAME_PATTERN)
# An open store (its boto3 session and connection pool) is reused this long; then the connection is read again.
STORE_REUSE_SECONDS = 300
_open_stores: dict[str, tuple[float, Any]] = {}
_open_stores_lock = threading.Lock()
# Stored reports are shown as documents, never as part of the Airflow origin's scripts: sandboxed, no script
# runs. Styles, fonts and images may come from this origin (a GX Data Docs site links its own stylesheets).
FILE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self' data:; "
        "frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=60",
}
Result = TypeVar("Result")


def resolve_store() -> str:
    """The store URI as tasks find it: the Airflow Variable ``crack_store`` (its secrets backends first, so an
    ``AIRFLOW_VAR_CRACK_STORE`` too), else ``default_store()`` (env ``CRACK_STORE``, else a folder in AIRFLOW_HOME)."""
    from crack_ops.hooks import STORE_VARIABLE, default_store

    uri = None
    try:
        # Server side (the API server has the metadata DB); the SDK's Variable is for task code.
        from airflow.models import Variable

        uri = Variable.get(STORE_VARIABLE, default_var=None)
    except Exception as error:  # no database reachable: fall back, but say why
        log.warning("cannot read the Airflow Variable %s (%s); using the default store", STORE_VARIABLE, error)
    return str(uri or default_store())


def open_view_store() -> Any:
    """The store ``resolve_store`` names, opened by ``CrackStoreHook`` (reused for ``STORE_REUSE_SECONDS``)."""
    from crack_ops.hooks import CrackStoreHook

    uri = resolve_store()
    now = time.monotonic()
    with _open_stores_lock:
        opened_at, store = _open_stores.get(uri, (0.0, None))
        if store is None or now - opened_at > STORE_REUSE_SECONDS:
            store = CrackStoreHook(uri).get_store()
            _open_stores[uri] = (now, store)
    return store


def create_app() -> FastAPI:
    """The ops app, every route behind Airflow's authentication and the crack DAGs' read permission."""
    from airflow.api_fastapi.core_api.security import get_user

    logged_in = Depends(get_user)  # the same dependency as the access check's: FastAPI resolves it once per request
    app = FastAPI(
        title="Crack ops",
        description="Champion, trends, batches, model versions and nightly runs of the crack workflow's store.",
        dependencies=[Depends(crack_reader_dependency())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(SecurityHeaders)
    templates = environment()

    def render(template: str, root: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        html = templates.get_template(template).render(root=root, nonce=nonce, **context)
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": page_csp(nonce)}
        return HTMLResponse(html, status_code=status_code, headers=headers)

    def actions(request: Request, user: Any, name: str, champion: str | None) -> dict[str, Any]:
        """The forms this user gets; for a rollback, the version it would restore (read only for operators)."""
        from crack_model.pipelines.rollback import rollback_target

        offered = offered_actions(request, user)
        offered["rollback_to"] = offered["rollback_problem"] = None
        if offered["rollback"] and champion:
            try:
                offered["rollback_to"] = _read(lambda store: rollback_target(store, name))
            except HTTPException as error:  # an unreadable audit log costs the form, not the page
                offered["rollback_problem"] = str(error.detail)
        return offered

    @app.get("/api/overview")
    def api_overview(
        limit: int = Query(20, ge=1, le=200), runs: int = Query(5, ge=0, le=100), name: str = MODEL_NAME
    ) -> dict[str, Any]:
        """Champion, candidates, recent batches and nightly runs as JSON (links are store keys)."""
        from crack_model.pipelines.overview import overview

        return _read(lambda store: overview(store, name, limit, runs=runs))

    @app.get("/api/history")
    def api_history(nights: int = Query(14, ge=1, le=366), name: str = MODEL_NAME) -> dict[str, Any]:
        """One point per nightly run (volume, rates, throughput, drift, champion), oldest first."""
        from crack_model.pipelines.history import history

        return _read(lambda store: history(store, name, nights))

    @app.get("/", response_class=HTMLResponse)
    def page(
        request: Request,
        user: Any = logged_in,
        limit: int = Query(20, ge=1, le=200),
        nights: int = Query(14, ge=1, le=366),
        name: str = MODEL_NAME,
    ) -> HTMLResponse:
        """The operators' page."""
        from crack_model.pipelines.history import history
        from crack_model.pipelines.overview import overview

        data = _read(lambda store: overview(store, name, limit, runs=5))
        trends = _read(lambda store: history(store, name, nights))
        offered = actions(request, user, name, (data.get("champion") or {}).get("version"))
        return render("ops.html", "", data=data, trends=trends, charts=trend_charts(trends), actions=offered)

    @app.get("/api/batches/{batch_id}")
    def api_batch(batch_id: str, name: str = MODEL_NAME) -> dict[str, Any]:
        """One batch in detail as JSON."""
        return _batch(batch_id, name)

    @app.get("/batches/{batch_id}", response_class=HTMLResponse)
    def batch_page(request: Request, batch_id: str, user: Any = logged_in, name: str = MODEL_NAME) -> HTMLResponse:
        """One batch: summary, validation, cracks with their overlays, quarantine; the release form for operators."""
        data = _batch(batch_id, name)
        return render("batch.html", "../", data=data, actions=actions(request, user, name, None))

    @app.get("/api/models/{name}/{version}")
    def api_model(version: str, name: str = MODEL_PATH_NAME) -> dict[str, Any]:
        """One model version in detail as JSON."""
        return _model(name, version)

    @app.get("/models/{name}/{version}", response_class=HTMLResponse)
    def model_page(request: Request, version: str, user: Any = logged_in, name: str = MODEL_PATH_NAME) -> HTMLResponse:
        """One model version: lineage, gate, approved runtimes, promotion audit; the champion's rollback form."""
        data = _model(name, version)
        champion = version if "champion" in (data.get("aliases") or []) else None
        return render("model.html", "../../", data=data, actions=actions(request, user, name, champion))

    @app.get("/files/{key:path}")
    def stored_file(key: str) -> Response:
        """One linked object from the store; 404 for anything outside the reports and results.

        An overlay the night did not draw is drawn now from its stored tile scores (and kept).
        """
        from crack_model.pipelines.ops_files import iter_object, viewable
        from crack_model.pipelines.overlays import overlay_for_key
        from crack_model.pipelines.stores import CrackModelError

        policy = viewable(key)
        if policy is None:
            raise HTTPException(status_code=404, detail="not found")
        content_type, inline = policy
        name = key.rsplit("/", 1)[-1]
        disposition = "inline" if inline else "attachment"
        headers = {
            **FILE_SECURITY_HEADERS,
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name, safe='')}",
        }
        try:
            store = open_view_store()
            if store.exists(key):
                return StreamingResponse(iter_object(store, key), media_type=content_type, headers=headers)
            drawn = overlay_for_key(store, key)
        except CrackModelError:
            drawn = None
        if drawn is None:
            raise HTTPException(status_code=404, detail="not found")
        return Response(drawn, media_type=content_type, headers=headers)

    def rollback_target_of(name: str) -> str | None:
        from crack_model.pipelines.rollback import rollback_target

        return _read(lambda store: rollback_target(store, name))

    def champion_of(name: str) -> str | None:
        from crack_model.pipelines.rollback import current_champion

        return _read(lambda store: current_champion(store, name))

    add_action_routes(app, render, batch_of=_batch, rollback_target_of=rollback_target_of, champion_of=champion_of,
                      store_uri=resolve_store)  # fmt: skip
    return app


def _read(reading: Callable[[Any], Result]) -> Result:
    """Run one library read on the view's store; a user error (bad limit, bad store) is a 400 with its message."""
    from crack_model.pipelines.stores import CrackModelError

    try:
        return reading(open_view_store())
    except CrackModelError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None


def _batch(batch_id: str, name: str) -> dict[str, Any]:
    from crack_model.pipelines.batch_page import batch_page
    from crack_model.pipelines.stores import CrackModelError

    try:
        data = batch_page(open_view_store(), batch_id, name)
    except CrackModelError:  # an invalid batch id names no batch
        data = None
    if data is None:
        raise HTTPException(status_code=404, detail=f"no batch {batch_id!r} in the store")
    return data


def _model(name: str, version: str) -> dict[str, Any]:
    from crack_model.pipelines.model_page import model_page
    from crack_model.pipelines.stores import CrackModelError

    try:
        return model_page(open_view_store(), name, version)
    except CrackModelError:  # not registered, or not a valid name or version
        raise HTTPException(status_code=404, detail=f"no registered version {version!r} of model {name!r}") from None
