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
