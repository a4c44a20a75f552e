"""The ops view's operator actions: release a failed batch, roll the champion back. Both only trigger a DAG run.

- **Release this batch** (a failed batch's page): ``crack_nightly_scoring`` with
  ``batch_ids=[id]`` and ``release_batches=[id]``: the batch is validated again and scored anyway
  (every decodable, allowed object; the rest get rows with reasons).
- **Roll back the champion** (the overview and the champion's model page): ``crack_champion_rollback``
  with ``model_name``, ``reason`` and ``expected_champion`` (the version the page showed: the run
  refuses if the champion moved since).

Who: the buttons are rendered, and a post is accepted, only for a user the auth manager lets
trigger runs of that DAG (``may_trigger``, the REST API's own check) at the Op level
(``may_operate``): Op and Admin, not Viewer or User. Anyone else's post is a 403.

How: the form posts to the plugin, which calls Airflow's public REST API server-side
(``airflow_rest``) with the user's own JWT as a Bearer token. Airflow then authorizes the trigger
again, records the user as the run's triggering user, logs the call in its audit log and keeps the
reason as the run's note. The web process never writes to the store: the DAG run does, and the
rollback's registry audit entry names the same user and run.

Why a server-side call with a form token, not a script calling the REST API from the page: the
login JWT lives in Airflow's ``_token`` cookie, which is ``HttpOnly`` (no script can read it to put
it in a Bearer header), and the pages carry no script at all (their CSP has no ``script-src``) and
work with scripting off. A form authenticated by a cookie needs protection from cross-site request
forgery, in three layers:

1. Airflow's ``_token`` cookie is ``SameSite=Lax``: a cross-site POST arrives without a login (401);
2. each form carries ``csrf_token``, an HMAC-SHA256 keyed by the session's JWT
   (``ops_security.csrf_token``): bound to this login session, stateless (any API server worker
   checks it, no server secret to share), and impossible to compute without the HttpOnly cookie;
   checked in constant time;
3. a post whose ``Sec-Fetch-Site`` says ``cross-site`` or ``same-site`` is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from crack_model.pipelines.shown import module_logger
from crack_ops.airflow_rest import UNKNOWN_OUTCOME, AirflowApiError, dag_is_paused, trigger_dag_run
from crack_ops.ops_render import batch_link
from crack_ops.ops_security import csrf_problem, csrf_token, may_operate, may_trigger, session_token

log = module_logger(__name__)

RELEASE_DAG = "crack_nightly_scoring"
ROLLBACK_DAG = "crack_champion_rollback"
MAX_REASON = 500
MAX_FORM_BYTES = 8192
NOT_ALLOWED = (
    "you may not {action}: it needs the Op or Admin role (permission to trigger {dag_id} and to change Assets)"
)

Renderer = Callable[..., HTMLResponse]


def offered_actions(request: Request, user: Any) -> dict[str, Any]:
    """What a page may offer this user: ``release`` and ``rollback`` (bools) and the session's ``csrf_token``."""
    token = session_token(request)
    if token is None or not may_operate(user):
        return {"release": False, "rollback": False, "csrf_token": None}
    return {
        "release": may_trigger(user, RELEASE_DAG),
        "rollback": may_trigger(user, ROLLBACK_DAG),
        "csrf_token": csrf_token(token),
    }


async def form_fields(request: Request) -> dict[str, str]:
    """The posted ``application/x-www-form-urlencoded`` fields (the last value of each), at most 8 kB."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(status_code=415, detail="post the action's form (application/x-www-form-urlencoded)")
    too_large = HTTPException(status_code=413, detail=f"the form is larger than {MAX_FORM_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise too_large
    # Read up to the limit only: the API server that holds this view serves the whole Airflow UI, and
    # request.body() would buffer any size first (400 MB posted by a viewer grew it by 700 MB).
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise too_large
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status_code=400, detail="the form could not be read (UTF-8 form fields)") from None
    return {name: values[-1] for name, values in parsed.items()}


def add_action_routes(
    app: FastAPI,
    render: Renderer,
    *,
    batch_of: Callable[[str, str], dict[str, Any]],
    rollback_target_of: Callable[[str], str | None],
    champion_of: Callable[[str], str | None],
    store_uri: Callable[[], str],
) -> None:
    """Add ``POST /actions/release-batch`` and ``POST /actions/rollback-champion`` to the ops app.

    Args:
        render: the app's page renderer (template, root, status_code=..., **context).
        batch_of: ``(batch_id, model name) -> the batch page's data`` (404 when unknown).
        rollback_target_of: ``model name -> the version a rollback would restore`` (None: nothing to go back to).
        champion_of: ``model name -> its champion now`` (None: none).
        store_uri: the store the view reads, passed to the DAG run so it acts on what the operator saw.
    """
    from airflow.api_fastapi.core_api.security import get_user

    logged_in, posted = Depends(get_user), Depends(form_fields)  # one each: FastAPI resolves them per request

    def outcome(status: int, action: str, message: str, back: str, run: dict[str, Any] | None = None,
                paused: bool | None = None) -> HTMLResponse:  # fmt: skip
        return render("action.html", "../", status_code=status, action=action, message=message, back=back, run=run,
                      paused=paused, status=status)  # fmt: skip

    def refused(
        request: Request, user: Any, fields: dict[str, str], dag_id: str, action: str, back: str
    ) -> HTMLResponse | None:
        """The page of a post this user may not make, or whose form cannot be trusted; None when it may go on."""
        if not (may_operate(user) and may_trigger(user, dag_id)):
            log.warning("crack ops: %s may not %s", user.get_name(), action)
            return outcome(403, action, NOT_ALLOWED.format(action=action, dag_id=dag_id), back)
        problem = csrf_problem(request, fields.get("csrf_token"))
        if problem:
            log.warning("crack ops: refused %s's %s: %s", user.get_name(), action, problem)
            return outcome(403, action, problem, back)
        return None

    def trigger(request: Request, user: Any, dag_id: str, conf: dict[str, Any], note: str, action: str,
                back: str) -> HTMLResponse:  # fmt: skip
        token = session_token(request) or ""
        try:
            run = trigger_dag_run(dag_id, conf, token, note=note)
        except AirflowApiError as error:
            log.warning("crack ops: %s's %s: the REST API answered %s", user.get_name(), action, error)
            said = (
                "Airflow may have started the run"
                if error.status == UNKNOWN_OUTCOME
                else "Airflow did not start the run"
            )
            return outcome(error.status, action, f"{said}: {error.detail}", back)
        log.info("crack ops: %s triggered %s run %s (%s)", user.get_name(), dag_id, run.get("dag_run_id"), action)
        return outcome(200, action, f"Airflow queued a run of {dag_id}.", back, run=run,
                       paused=dag_is_paused(dag_id, token))  # fmt: skip

    @app.post("/actions/release-batch", response_class=HTMLResponse)
    def release_batch(request: Request, user: Any = logged_in, fields: dict[str, str] = posted) -> HTMLResponse:
        """Trigger crack_nightly_scoring for one batch that failed validation, releasing it."""
        action, batch_id = "release a batch", fields.get("batch_id", "").strip()
        back = batch_link(batch_id) if batch_id else ""
        not_allowed = refused(request, user, fields, RELEASE_DAG, action, back)
        if not_allowed is not None:
            return not_allowed
        reason, problem = _reason(fields)
        if problem:
            return outcome(400, action, problem, back)
        batch = batch_of(batch_id, fields.get("model_name") or "crack")["batch"]
        if batch.get("outcome") != "failed" or batch.get("state") == "scored":
            state = (
                f"its validation outcome is {batch.get('outcome') or 'none yet'}, scoring state {batch.get('state')}"
            )
            return outcome(409, action, f"batch {batch_id} has nothing to release ({state})", back)
        conf = {"store": store_uri(), "batch_ids": [batch_id], "release_batches": [batch_id]}
        note = f"Released batch {batch_id} from Crack ops ({user.get_name()}): {reason}"
        return trigger(request, user, RELEASE_DAG, conf, note, action, back)

    @app.post("/actions/rollback-champion", response_class=HTMLResponse)
    def rollback_champion(request: Request, user: Any = logged_in, fields: dict[str, str] = posted) -> HTMLResponse:
        """Trigger crack_champion_rollback for the champion the page showed."""
        action, name = "roll the champion back", fields.get("model_name", "").strip() or "crack"
        not_allowed = refused(request, user, fields, ROLLBACK_DAG, action, "")
        if not_allowed is not None:
            return not_allowed
        reason, problem = _reason(fields)
        expected = fields.get("expected_champion", "").strip()
        if not problem and not expected:
            problem = "the form names no champion (expected_champion): reload the page and submit again"
        if problem:
            return outcome(400, action, problem, "")
        # A page rendered before another promotion or rollback: the run would refuse it, red, under a note naming
        # a rollback from the version the page showed to one it did not show.
        current = champion_of(name)
        if current != expected:
            msg = (f"the champion of {name} is now {current or 'unset'}, not {expected} as the page showed: it moved "
                   "since; nothing was triggered. Reload the page and look again before rolling back")  # fmt: skip
            return outcome(409, action, msg, "")
        target = rollback_target_of(name)
        if target is None:
            return outcome(409, action, f"model {name} has no earlier champion to roll back to", "")
        conf = {"store": store_uri(), "model_name": name, "reason": reason, "expected_champion": expected}
        note = f"Rollback of {name} from {expected} to {target} from Crack ops ({user.get_name()}): {reason}"
        return trigger(request, user, ROLLBACK_DAG, conf, note, action, "")


def _reason(fields: dict[str, str]) -> tuple[str, str | None]:
    """The form's reason, trimmed, and what is wrong with it (None: fine)."""
    reason = " ".join(fields.get("reason", "").split())
    if not reason:
        return reason, "give a reason: it goes into the run's note and the audit log"
    if len(reason) > MAX_REASON:
        return reason, f"the reason is {len(reason)} characters long; keep it under {MAX_REASON}"
    return reason, None
