"""Run the project's DAGs with ``dag.test()`` in a private Airflow home (SQLite), for the demo and tests.

Each DAG run happens in a child process so that its Airflow configuration (AIRFLOW_HOME,
folders, connections) never leaks into the caller. ``dag.test()`` runs every task in that one
process and writes no per-task log files, so the child's whole output goes to
``<AIRFLOW_HOME>/logs/dag_test/<dag_id>.log`` with a marker line before each task; a failed
task's part of it is cut out to ``<AIRFLOW_HOME>/logs/dag_test/<dag_id>/<task>.log``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
TASK_MARKER = "DAG-TEST-TASK "
TAIL_LINES = 15
DAG_TEST_LOOP = "[airflow.sdk.definitions.dag]"  # dag.test()'s own lines ("No tasks to run..."), not a task's
# Task states that mean "this task itself went wrong" (not a downstream skip or upstream failure).
FAILED_STATES = ("failed", "up_for_retry")

RUNNER = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

dag_id, conf, folder, result_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
retries = json.loads(sys.argv[5])
try:  # a marker line before each task, so its part of the shared log can be found again
    import airflow.sdk.definitions.dag as definitions
    run_task = definitions._run_task

    def marked(*, ti, **kwargs):
        print(f"TASK_MARKER{ti.task_id} {ti.map_index}", flush=True)
        return run_task(ti=ti, **kwargs)

    definitions._run_task = marked
except (ImportError, AttributeError):  # another Airflow: no markers, the whole log is shown
    pass
bag = DagBag(dag_folder=folder)
if bag.import_errors:
    raise SystemExit(f"DAG import errors: {bag.import_errors}")
dag = bag.get_dag(dag_id)
if retries is not None:  # dag.test() sleeps through each retry delay: a caller may want failures at once
    for each in dag.tasks:
        each.retries = retries
run = dag.test(run_conf=conf)
states = {}
for ti in run.get_task_instances():
    name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    states[name] = str(ti.state)
peak = None
try:  # the run's peak resident memory (dag.test() runs every task in this process)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
with open(result_path, "w") as handle:
    json.dump({"state": str(run.state), "run_id": run.run_id, "tasks": states, "peak_rss_bytes": peak}, handle)
""".replace("TASK_MARKER", TASK_MARKER)


def airflow_environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for an embedded Airflow: SQLite in ``home``, this project's DAGs.

    The crack_ops plugin comes from the installed ``crack-model`` package (its ``airflow.plugins``
    entry point); the plugins folder is an empty one in ``home``. A relative ``home`` is made absolute:
    Airflow refuses a relative SQLite path.
    """
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "plugins").mkdir(exist_ok=True)
    environment = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH", "")])),
    }
    environment.update(extra or {})
    return environment


def migrate(environment: dict[str, str]) -> None:
    """Create (or upgrade) the metadata database.

    Raises:
        RuntimeError: Airflow refused; the message ends with its own last lines (the reason).
    """
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([airflow, "db", "migrate"], env=environment, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        home = environment.get("AIRFLOW_HOME")
        raise RuntimeError(f"airflow db migrate failed (exit {done.returncode}, AIRFLOW_HOME {home}):\n{tail}")


def run_dag(
    dag_id: str, conf: dict[str, Any], environment: dict[str, str], *, echo: bool = False, retries: int | None = None
) -> dict[str, Any]:
    """``dag.test()`` one run.

    Args:
        retries: if set, every task gets this many retries (``dag.test()`` waits out each retry
            delay, minutes with backoff: 0 reports a failure at once).

    Returns:
        ``{"state", "run_id", "tasks": {task: state}, "peak_rss_bytes", "log": path, "failures": [...]}``
        (``peak_rss_bytes``: the run process's peak resident memory, None off Linux), one failure per
        task that failed: ``{"task", "state", "log" (its part of the run's log), "tail" (last lines)}``.

    Raises:
        RuntimeError: the run did not finish (DAG import error, crash); the message ends with the
            last lines of the run's log and its path.
    """
    log_dir = Path(environment["AIRFLOW_HOME"]) / "logs" / "dag_test"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{dag_id}.log"
    result_path = log_dir / f"{dag_id}.result.json"
    result_path.unlink(missing_ok=True)
    with open(log_path, "wb") as log:
        completed = subprocess.run(
            [sys.executable, "-c", RUNNER, dag_id, json.dumps(conf), environment["AIRFLOW__CORE__DAGS_FOLDER"],
             str(result_path), json.dumps(retries)],
            env={**environment, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT, timeout=1800,
            check=False,
        )  # fmt: skip
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if echo:
        sys.stderr.write(text[-20000:])
    if completed.returncode != 0 or not result_path.is_file():
        tail = "\n".join(_tail(text.splitlines(), 40))
        raise RuntimeError(f"dag.test({dag_id}) failed (exit {completed.returncode}); log {log_path}:\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    result["log"] = str(log_path)
    result["failures"] = _failures(text, result["tasks"], log_dir / dag_id, log_path)
    return result


def _failures(text: str, states: dict[str, str], task_log_dir: Path, run_log: Path) -> list[dict[str, Any]]:
    """Each failed task's own lines of the run's log, saved beside it, with their last lines."""
    sections = _task_sections(text)
    failures = []
    for task, state in sorted(states.items()):
        if state.rsplit(".", 1)[-1].lower() not in FAILED_STATES:
            continue
        lines = sections.get(task)
        if lines is None:  # no marker for it (another Airflow version): the whole log is its log
            path, lines = run_log, text.splitlines()
        else:
            task_log_dir.mkdir(parents=True, exist_ok=True)
            path = task_log_dir / (re.sub(r"[^A-Za-z0-9._\[\]-]+", "_", task) + ".log")
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        failures.append(
            {
                "task": task,
                "state": state,
                "log": str(path),
                "error": _error_line(lines),
                "tail": _tail(lines, TAIL_LINES),
            }
        )
    return failures


def _task_sections(text: str) -> dict[str, list[str]]:
    """The lines after each task's marker, up to the next marker (a retried task keeps its last try)."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(TASK_MARKER):
            task_id, _, map_index = line.removeprefix(TASK_MARKER).strip().partition(" ")
            name = task_id if int(map_index or -1) < 0 else f"{task_id}[{map_index}]"
            current = sections[name] = []
        elif current is not None and DAG_TEST_LOOP not in line:
            current.append(line)
    return sections


def _error_line(lines: list[str]) -> str:
    """The exception line ending the task's last traceback, else its last line."""
    in_traceback = False
    error = ""
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and line.strip() and not line[0].isspace():
            error, in_traceback = line.strip(), False
    return error or next((line.strip() for line in reversed(lines) if line.strip()), "")


def _tail(lines: list[str], count: int) -> list[str]:
    kept = [line.rstrip() for line in lines if line.strip()]
    return kept[-count:]
