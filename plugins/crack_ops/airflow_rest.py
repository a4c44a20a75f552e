"""Airflow's public REST API, called by the ops view on behalf of the logged-in user (their own JWT).

Only two calls: trigger a DAG run (``POST /api/v2/dags/{dag_id}/dagRuns``) and read whether a DAG
is paused (``GET /api/v2/dags/{dag_id}``). The user's JWT goes in the ``Authorization: Bearer``
header, so Airflow authorizes the call with that user's permissions, records them as the run's
triggering user and writes its own audit log entry; the view never writes to the store.

Where the API is: ``CRACK_OPS_API_URL`` (for example ``http://airflow-apiserver:8080``; needed when
the API server listens elsewhere than ``[api] port`` on this host, serves TLS, or sits under a base
path not in ``[api] base_url``), else ``http://127.0.0.1:<[api] port><path of [api] base_url>``: the
API server calls itself over loopback. No proxy and no redirect is followed: the token goes to that
address and nowhere else.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

API_URL_ENVIRONMENT = "CRACK_OPS_API_URL"
TIMEOUT_SECONDS = 20
# The status of a call sent whose answer was lost: the gateway timed out, the outcome is unknown.
UNKNOWN_OUTCOME = 504


class AirflowApiError(Exception):
    """The REST API refused the call (its status and detail) or could not be reached (502)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error here: following it would send the user's token to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def api_url() -> str:
    """The REST API's base URL (no trailing slash): ``CRACK_OPS_API_URL``, else this API server over loopback."""
    configured = os.environ.get(API_URL_ENVIRONMENT, "").strip()
    if configured:
        return configured.rstrip("/")
    from airflow.configuration import conf

    port = conf.get("api", "port", fallback="8080")
    base_path = urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")
    return f"http://127.0.0.1:{port}{base_path}"


def trigger_dag_run(dag_id: str, conf: dict[str, Any], token: str, note: str | None = None) -> dict[str, Any]:
    """Trigger a manual run of ``dag_id`` with ``conf`` as the token's user; Airflow's DAGRunResponse.

    Raises:
        AirflowApiError: refused (400 bad params, 401 expired login, 403 no permission, 404 unknown
            DAG, 409 run exists), unreachable (502), or sent with its answer lost (504: the run may exist).
    """
    body = {"logical_date": None, "conf": conf, "note": note}
    return _call("POST", f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns", token, body)


def dag_is_paused(dag_id: str, token: str) -> bool | None:
    """Whether ``dag_id`` is paused (a triggered run then waits), or None when Airflow would not say."""
    try:
        dag = _call("GET", f"/api/v2/dags/{quote(dag_id, safe='')}", token)
    except AirflowApiError:
        return None
    paused = dag.get("is_paused")
    return paused if isinstance(paused, bool) else None


def _call(method: str, path: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base = api_url()
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode("utf-8"),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/json"},
    )
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            document = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise AirflowApiError(error.code, _detail(error.read())) from None
    except (urllib.error.URLError, http.client.InvalidURL) as error:  # raised before or while sending: not received
        reason = getattr(error, "reason", error)
        msg = f"could not reach Airflow's REST API at {base} ({reason}); set {API_URL_ENVIRONMENT} to its address"
        raise AirflowApiError(502, msg) from None
    except (OSError, ValueError, http.client.HTTPException) as error:
        # Sent, and its answer lost or unreadable (a read timeout, a reset, a body that is not JSON): it may have
        # been carried out.
        msg = (
            f"Airflow's REST API at {base} took the request but no answer could be read ({error}): it may have been "
            "carried out; look at the DAG's runs in Airflow before you try again"
        )
        raise AirflowApiError(UNKNOWN_OUTCOME, msg) from None
    return document if isinstance(document, dict) else {}


def _detail(body: bytes) -> str:
    """The ``detail`` of a FastAPI error body (a string, or a list of validation errors), else the text."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return body.decode("utf-8", errors="replace")[:500] or "no detail"
    if isinstance(detail, list):
        return "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return str(detail)[:500] if detail else "no detail"
