"""What a DAG run has announced already: a task cleared after it succeeded must not emit its Asset event again.

Airflow emits a task's outlet events each time it succeeds, so a ``finalize_batches`` or ``announce_promotion``
cleared and run again (to re-run the tasks after it, say) told the Asset's consumers of the same results or the
same champion twice, and every DAG scheduled on them ran again. The task reads the events back as an inlet.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset


def announced_in_this_run(inlet_events: Any, asset: Asset) -> list[dict[str, Any]]:
    """The extras of the events of ``asset`` that the running task emitted in earlier tries of this DAG run (the task
    must list ``asset`` among its inlets)."""
    from airflow.sdk import get_current_context

    if inlet_events is None:  # called outside a task (a test calling the task's function): no run, no events
        return []
    context = get_current_context()
    ti = context["ti"]
    events = inlet_events[asset]
    if (run_after := getattr(context.get("dag_run"), "run_after", None)) is not None:
        events = events.after(run_after)  # none of this run's can be older: no need to read every night's
    return [
        dict(event.extra or {})
        for event in events
        if (event.source_dag_id, event.source_run_id, event.source_task_id) == (ti.dag_id, ti.run_id, ti.task_id)
    ]


def merge_of(summary: dict[str, Any]) -> str:
    """What tells one merge of a batch from another: the validation it was scored against, its model and tile budget.
    Merged again from the same parts (``finalize_batches`` cleared) it is the same; merged again with other rows (the
    run cleared after late uploads came, the batch validated again) it differs, and that is news."""
    return f"{summary.get('validated_manifest')}/{summary.get('model_version')}/{summary.get('max_tiles')}"


def unannounced(merges: dict[str, str], earlier: list[dict[str, Any]]) -> list[str]:
    """The batches of ``merges`` (batch -> ``merge_of`` its summary) that no earlier event of ``earlier`` announced
    as merged so. An event without ``merges`` (written before they were recorded) counts for its batches' any merge."""
    announced: set[tuple[str, str | None]] = set()
    for extra in earlier:
        recorded = extra.get("merges") or {}
        announced.update((batch, recorded.get(batch)) for batch in extra.get("batches") or [])
    return [batch for batch, merge in merges.items() if not {(batch, merge), (batch, None)} & announced]
