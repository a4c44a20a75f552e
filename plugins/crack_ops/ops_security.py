"""Who may see the crack ops view, and the headers on every one of its responses.

Airflow mounts plugin apps without authentication or authorization, so the app carries its own
dependency, ``crack_reader_dependency``: the caller must be logged in (the UI's ``_token`` cookie
or an ``Authorization: Bearer`` JWT, resolved by Airflow's ``get_user``: 401 otherwise) and the
configured auth manager must let that user read the crack DAGs: ``is_authorized_dag(method="GET",
details=DagDetails(id=...))`` for each of ``CRACK_DAG_IDS``, as the core API's ``requires_access_dag``
asks (403 otherwise). With the SimpleAuthManager that is every role from viewer up; with FAB or
Keycloak it follows the per-DAG permissions.

The operator actions (``ops_actions``) need more: ``may_trigger`` (the auth manager lets the user
trigger runs of the action's DAG, ``is_authorized_dag(method="POST", access_entity=RUN)``, as the
REST API itself asks) and ``may_operate`` (the Op level: ``is_authorized_asset(method="PUT")``,
granted from Op up by both SimpleAuthManager and FAB, while their User role may trigger DAG runs
too). ``csrf_token`` binds a form to the login session that rendered it: an HMAC of the session's
JWT, which a page on another site can neither read nor compute.

``SecurityHeaders`` adds a Content-Security-Policy with no external source, ``frame-ancestors
'self'`` (the page lives in the Airflow UI's iframe, nowhere else), ``nosniff`` and a same-origin
referrer policy to every response, error pages included; a response that sets its own policy
(a page with its style nonce, a stored report's sandbox) keeps it.

Airflow is imported inside the functions: every Airflow component loads the plugin. No
``from __future__ import annotations`` here: FastAPI reads the dependency's ``Annotated`` type,
which names Airflow's ``get_user`` imported inside the factory, so it must be evaluated where it is written.
"""

import hashlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from crack_model.pipelines.shown import module_logger

log = module_logger(__name__)

# The view shows what these DAGs produce: a user must be allowed to read both.
CRACK_DAG_IDS = ("crack_nightly_scoring", "crack_retraining")
FORBIDDEN = "you may not read the crack DAGs (" + ", ".join(CRACK_DAG_IDS) + "): ask an Airflow admin for access"
# JSON, errors and redirects: nothing may load, nothing may frame it but the Airflow UI.
DEFAULT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
SECURITY_HEADERS = {
    "Content-Security-Policy": DEFAULT_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
}

# Keys the form-token HMAC to its one use: the same JWT signs nothing else of ours.
CSRF_CONTEXT = b"crack-ops operator actions"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def page_csp(nonce: str) -> str:
    """A server-rendered page's policy: its one nonce'd style block, images from this origin, no script at all."""
    return (
        f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'self'"
    )


def may_read_crack_dags(user: Any) -> bool:
    """Does the configured auth manager let ``user`` read (GET) every one of ``CRACK_DAG_IDS``?"""
    from airflow.api_fastapi.app import get_auth_manager

    requests: list[Any] = [{"method": "GET", "details": details} for details in _dag_details(list(CRACK_DAG_IDS))]
    return bool(get_auth_manager().batch_is_authorized_dag(requests, user=user))


def _dag_details(dag_ids: list[str]) -> list[Any]:
    """``DagDetails`` of these DAGs, with each one's team when Airflow runs multi-team (as the core API asks)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.configuration import conf

    teams: dict[str, str | None] = {}
    if conf.getboolean("core", "multi_team", fallback=False):
        from airflow.models.dag import DagModel

        teams = DagModel.get_dag_id_to_team_name_mapping(dag_ids)
    return [DagDetails(id=dag_id, team_name=teams.get(dag_id)) for dag_id in dag_ids]


def may_trigger(user: Any, dag_id: str) -> bool:
    """May ``user`` trigger a run of ``dag_id``? What ``POST /api/v2/dags/{dag_id}/dagRuns`` checks."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    (details,) = _dag_details([dag_id])
    return bool(
        get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=details,
                                             user=user)
    )  # fmt: skip


def may_operate(user: Any) -> bool:
    """Is ``user`` at the auth manager's Op level? May they change Assets (PUT), not just add asset events.

    The actions move the champion and score refused data, which the crack Assets announce; both
    SimpleAuthManager and FAB grant this from Op up, so a User who may trigger DAG runs gets no action.
    """
    from airflow.api_fastapi.app import get_auth_manager

    return bool(get_auth_manager().is_authorized_asset(method="PUT", user=user))


def session_token(request: Request) -> str | None:
    """The JWT this request is authenticated with, in ``get_user``'s order: a Bearer header, else the UI cookie."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME_JWT_TOKEN) or None


def csrf_token(token: str) -> str:
    """The form token of a login session: an HMAC keyed by its JWT (secret to the browser's own origin)."""
    return hmac.new(token.encode("utf-8"), CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_problem(request: Request, submitted: str | None) -> str | None:
    """Why a form post may not be trusted, or None: a cross-site origin, no session, or a wrong form token."""
    if request.headers.get("sec-fetch-site", "same-origin") in ("cross-site", "same-site"):
        return "the form was posted from another site"
    token = session_token(request)
    if not token or not submitted or not hmac.compare_digest(csrf_token(token), submitted):
        return "the form's token does not match your login session: reload the page and submit again"
    return None


def crack_reader_dependency() -> Callable[..., Any]:
    """A FastAPI dependency: the logged-in user, if they may read the crack DAGs; 401 or 403 otherwise."""
    from airflow.api_fastapi.core_api.security import get_user

    def require_crack_reader(user: Annotated[Any, Depends(get_user)]) -> Any:
        if not may_read_crack_dags(user):
            log.info("crack ops: refused %s (may not read %s)", getattr(user, "get_name", lambda: "?")(), CRACK_DAG_IDS)
            raise HTTPException(status_code=403, detail=FORBIDDEN)
        return user

    return require_crack_reader


class SecurityHeaders:
    """ASGI middleware: ``SECURITY_HEADERS`` on every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in
                        SECURITY_HEADERS.items()]  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.headers if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
