"""The crack ops view: a FastAPI app the Airflow API server mounts under ``/crack-ops``.

``GET /`` is a server-rendered page (champion, batches, nightly runs, candidates),
``GET /api/overview`` the same data as JSON (``crack_model.pipelines.overview.overview``), and
``GET /files/{key}`` streams one linked object from the store (validation and gate reports,
predictions, overlays, quarantined copies; nothing else).

Airflow mounts plugin apps without authentication, so every route depends on
``requires_authenticated``: the UI's ``_token`` cookie or an ``Authorization: Bearer`` JWT.
Routes are plain ``def``: FastAPI runs them in its thread pool, so store I/O never blocks the
server's event loop. Links are relative, so the page works inside the UI's iframe and behind
a reverse proxy. The store is opened like a task opens it (``CrackStoreHook``: the
``aws_default`` connection's session for ``s3://``) and kept for a few minutes. Only FastAPI is
imported at module level: every Airflow component loads the plugin.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, StreamingResponse

log = logging.getLogger(__name__)

URL_PREFIX = "/crack-ops"
TEMPLATES = Path(__file__).resolve().parent / "templates"
STORE_ENVIRONMENT = "AIRFLOW_VAR_CRACK_STORE"
# An open store (its boto3 session and connection pool) is reused this long; then the connection is read again.
STORE_REUSE_SECONDS = 300
_open_stores: dict[str, tuple[float, Any]] = {}
_open_stores_lock = threading.Lock()
# Stored reports are shown as documents, never as part of the Airflow origin's scripts.
FILE_SECURITY_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=60",
}


def resolve_store() -> str:
    """The store URI: env ``AIRFLOW_VAR_CRACK_STORE``, else the Airflow Variable ``crack_store``, else the default."""
    from crack_ops.hooks import STORE_VARIABLE, default_store

    uri = os.environ.get(STORE_ENVIRONMENT)
    if uri:
        return uri
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


def file_link(key: str) -> str:
    """Relative URL of the route that serves a store key (keys may hold spaces and non-ASCII)."""
    return "files/" + quote(key, safe="/")


def _environment() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    environment.filters.update(file_link=file_link, percent=_percent, number=_number, when=_when)
    return environment


def _percent(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * float(value):.{digits}f}%"


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{digits}f}" if digits else f"{int(value):,}"


def _when(value: Any) -> str:
    """``2026-11-24T20:25:55Z`` -> ``2026-11-24 20:25:55 UTC``."""
    if not value:
        return "–"
    text = str(value)
    return text.replace("T", " ").removesuffix("Z") + " UTC" if text.endswith("Z") else text


def create_app() -> FastAPI:
    """The ops app, every route behind Airflow's authentication."""
    from airflow.api_fastapi.core_api.security import requires_authenticated

    app = FastAPI(
        title="Crack ops",
        description="Champion, candidates, batches and nightly runs of the crack workflow's store.",
        dependencies=[Depends(requires_authenticated())],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    templates = _environment()

    @app.get("/api/overview")
    def api_overview(
        limit: int = Query(20, ge=1, le=200), runs: int = Query(5, ge=0, le=100), name: str = "crack"
    ) -> dict[str, Any]:
        """Champion, candidates, recent batches and nightly runs as JSON (links are store keys)."""
        return _overview(name, limit, runs)

    @app.get("/", response_class=HTMLResponse)
    def page(limit: int = Query(20, ge=1, le=200), name: str = "crack") -> HTMLResponse:
        """The operators' page."""
        data = _overview(name, limit, 5)
        html = templates.get_template("ops.html").render(data=data)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/files/{key:path}")
    def stored_file(key: str) -> StreamingResponse:
        """One linked object from the store; 404 for anything outside the reports and results."""
        from crack_model.pipelines.ops_files import iter_object, viewable
        from crack_model.pipelines.stores import CrackModelError

        policy = viewable(key)
        if policy is None:
            raise HTTPException(status_code=404, detail="not found")
        content_type, inline = policy
        try:
            store = open_view_store()
            found = store.exists(key)
        except CrackModelError:
            found = False
        if not found:
            raise HTTPException(status_code=404, detail="not found")
        name = key.rsplit("/", 1)[-1]
        disposition = "inline" if inline else "attachment"
        headers = {
            **FILE_SECURITY_HEADERS,
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name, safe='')}",
        }
        return StreamingResponse(iter_object(store, key), media_type=content_type, headers=headers)

    return app


def _overview(name: str, limit: int, runs: int) -> dict[str, Any]:
    from crack_model.pipelines.overview import overview
    from crack_model.pipelines.stores import CrackModelError

    try:
        return overview(open_view_store(), name, limit, runs=runs)
    except CrackModelError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
