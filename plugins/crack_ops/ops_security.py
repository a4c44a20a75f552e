"""Who may see the crack ops view, and the headers on every one of its responses.

Airflow mounts plugin apps without authentication or authorization, so the app carries its own
dependency, ``crack_reader_dependency``: the caller must be logged in (the UI's ``_token`` cookie
or an ``Authorization: Bearer`` JWT, resolved by Airflow's ``get_user``: 401 otherwise) and the
configured auth manager must let that user read the crack DAGs: ``is_authorized_dag(method="GET",
details=DagDetails(id=...))`` for each of ``CRACK_DAG_IDS``, as the core API's ``requires_access_dag``
asks (403 otherwise). With the SimpleAuthManager that is every role from viewer up; with FAB or
Keycloak it follows the per-DAG permissions.

``SecurityHeaders`` adds a Content-Security-Policy with no external source, ``frame-ancestors
'self'`` (the page lives in the Airflow UI's iframe, nowhere else), ``nosniff`` and a same-origin
referrer policy to every response, error pages included; a response that sets its own policy
(a page with its style nonce, a stored report's sandbox) keeps it.

Airflow is imported inside the functions: every Airflow component loads the plugin. No
``from __future__ import annotations`` here: FastAPI reads the dependency's ``Annotated`` type,
which names Airflow's ``get_user`` imported inside the factory, so it must be evaluated where it is written.
"""

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException

log = logging.getLogger(__name__)

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
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.configuration import conf

    teams: dict[str, str | None] = {}
    if conf.getboolean("core", "multi_team", fallback=False):  # a DAG's team decides too, as in requires_access_dag
        from airflow.models.dag import DagModel

        teams = DagModel.get_dag_id_to_team_name_mapping(list(CRACK_DAG_IDS))
    requests: list[Any] = [
        {"method": "GET", "details": DagDetails(id=dag_id, team_name=teams.get(dag_id))} for dag_id in CRACK_DAG_IDS
    ]
    return bool(get_auth_manager().batch_is_authorized_dag(requests, user=user))


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
