"""Rolling the champion back: the step the ``crack_champion_rollback`` DAG runs, and what the ops view offers.

The registry's ``rollback`` points the champion at the champion before it (the audit log's
lineage: a promotion pushes a version, a rollback pops one) and writes an audit entry with the
actor, the run id and the reason. This step adds what an unattended, retried task needs:

- **once per run**: an audit entry of this ``run_id`` means the rollback is done; a retry after
  a lost connection returns that entry instead of rolling back a second version;
- **the champion the operator saw**: with ``expected_champion`` the step refuses when the champion
  moved since (another promotion or rollback), instead of rolling back something else.
"""

from __future__ import annotations

from typing import Any

from crack_model.core.errors import CrackModelError
from crack_model.core.log_lines import module_logger
from crack_model.pipelines.stores import StoreLike, step_store
from crack_model.registry.audit_log import CHAMPION, RollbackDoneError, champion_lineage
from crack_model.registry.naming import DEFAULT_NAME
from crack_model.registry.versions import Registry

log = module_logger(__name__)


def rollback_target(store: StoreLike, name: str = DEFAULT_NAME) -> str | None:
    """The version a rollback would make champion now, or None when there is none to go back to."""
    with step_store(store) as opened:
        lineage = champion_lineage(Registry(opened).history(name))
    return lineage[-2] if len(lineage) >= 2 else None


def current_champion(store: StoreLike, name: str = DEFAULT_NAME) -> str | None:
    """The version ``name``'s champion alias points at now (None: no champion): what ``expected_champion`` is
    compared with."""
    with step_store(store) as opened:
        return Registry(opened).aliases(name).get(CHAMPION)


def roll_back_champion(
    store: StoreLike,
    name: str = DEFAULT_NAME,
    *,
    reason: str,
    actor: str,
    run_id: str | None = None,
    expected_champion: str | None = None,
) -> dict[str, Any]:
    """Point ``name``'s champion back at the previous champion, at most once per ``run_id``.

    Args:
        reason: why (required; recorded in the audit log).
        actor: who asked for it (the user who triggered the DAG run).
        run_id: the Airflow run; recorded in the audit entry, and a second call with it changes nothing.
        expected_champion: the champion the requester saw; refused if it is no longer the champion.

    Returns:
        The audit entry (``from``, ``to``, ``actor``, ``run_id``, ``reason``, ``revision``, ...) and
        ``already_done`` (True when an earlier try of the same run had rolled back).

    Raises:
        CrackModelError: no reason, no previous champion, or the champion is not ``expected_champion``.
    """
    if not reason or not reason.strip():
        raise CrackModelError("a rollback needs a reason: pass reason=... (it goes into the audit log)")
    with step_store(store) as opened:
        registry = Registry(opened)
        if run_id:
            done = [
                entry
                for entry in registry.history(name)
                if entry.event == "rollback" and entry.alias == CHAMPION and entry.run_id == run_id
            ]
            if done:
                log.info("run %s already rolled %s back (revision %d)", run_id, name, done[-1].revision)
                return {**done[-1].as_dict(), "already_done": True}
        current = registry.aliases(name).get(CHAMPION)
        if expected_champion and current != expected_champion:
            msg = (
                f"the champion of {name} is {current or 'unset'}, not {expected_champion} as the rollback "
                "request expected: it moved since; nothing was rolled back. Look at the model again and retrigger"
            )
            raise CrackModelError(msg)
        try:
            entry = registry.rollback(name, reason=reason.strip(), actor=actor, run_id=run_id,
                                      expected_champion=expected_champion)  # fmt: skip
        except RollbackDoneError as done:  # an overlapping try of this run committed between the check and here
            log.info("%s", done)
            return {**done.entry.as_dict(), "already_done": True}
    log.info("%s@%s rolled back: %s -> %s by %s", name, CHAMPION, entry.from_version, entry.to_version, actor)
    return {**entry.as_dict(), "already_done": False}
