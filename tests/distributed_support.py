"""Helpers for the distributed (Celery) integration test: services, processes, the REST API, results.

``worker_name`` is imported by the Airflow processes themselves (``[core] hostname_callable``),
so this module imports only the standard library at the top: every task's supervisor calls it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER_NAME_ENV = "CRACK_WORKER_NAME"
HOSTNAME_CALLABLE = "tests.distributed_support.worker_name"  # Airflow's import_string wants dots, no colon

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PROJECT = Path(__file__).resolve().parents[1]
ENSURE_SERVICES = PROJECT / "scripts" / "ensure-services.sh"


def worker_name() -> str:
    """The hostname Airflow records for task instances: $CRACK_WORKER_NAME, else the FQDN.

    Both Celery workers of the test run on one machine; each gets its own name through the
    environment, so the task instances say which worker ran them.
    """
    return os.environ.get(WORKER_NAME_ENV) or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- PostgreSQL and Redis -------------------------------------------------------------------------


def postgres_answers() -> bool:
    try:
        import psycopg2

        psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3).close()
    except Exception:
        return False
    return True


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=3).ping())
    except Exception:
        return False


def services_unavailable() -> str | None:
    """None when PostgreSQL and Redis answer (starting them with scripts/ensure-services.sh if needed),
    else why not."""
    if postgres_answers() and redis_answers():
        return None
    result = subprocess.run(["bash", str(ENSURE_SERVICES)], capture_output=True, text=True, timeout=120, check=False)
    missing = [name for name, up in (("PostgreSQL", postgres_answers()), ("Redis", redis_answers())) if not up]
    if not missing:
        return None
    detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
    return (
        f"{' and '.join(missing)} not reachable on loopback ({PG_HOST}:{PG_PORT}, {REDIS_HOST}:{REDIS_PORT}) "
        f"even after {ENSURE_SERVICES.name}: {' | '.join(detail) or 'no output'}"
    )


def _admin_connection():
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=10)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return connection


def create_database(name: str) -> str:
    """A fresh, empty database; returns its SQLAlchemy URL (psycopg2 driver)."""
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_database(name: str) -> None:
    connection = _admin_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def forget_celery_queue(db: int, queue: str, workers: Iterable[str] = ()) -> None:
    """Remove what kombu keeps in Redis for one queue and its workers (node names): nothing else is touched
    while another app still uses the database."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
    keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
    if keys:
        client.delete(*keys)
    # A worker killed with tasks in hand leaves their messages in kombu's shared "unacked" hash (the broker
    # would hand them out again after the visibility timeout): drop the ones routed to this queue.
    for tag, entry in client.hgetall("unacked").items():
        with contextlib.suppress(ValueError, TypeError, IndexError):
            _message, exchange, routing_key = json.loads(entry)
            if queue in (exchange, routing_key):
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    # A killed worker never unbinds its remote-control queue from the shared pidbox exchange.
    pidboxes = {f"{worker}.celery.pidbox".encode() for worker in workers}
    for member in client.smembers(PIDBOX_BINDINGS):
        if any(member.endswith(pidbox) for pidbox in pidboxes):
            client.srem(PIDBOX_BINDINGS, member)
    # kombu's shared keys of fanout exchanges (events, remote control: a killed worker's event queue stays
    # bound) and their expiry index outlive the workers; drop them once no other app uses the database
    # (it would have a pidbox binding or keys of its own), so a run leaves no trace.
    left = set(client.scan_iter(count=1000))
    if left and left <= SHARED_KOMBU_KEYS:
        client.delete(*left)


PIDBOX_BINDINGS = b"_kombu.binding.celery.pidbox"
SHARED_KOMBU_KEYS = frozenset(
    {b"_kombu.binding_deadlines", b"_kombu.binding.celeryev", b"_kombu.binding.reply.celery.pidbox"}
)


def listening_addresses(pids: Iterable[int]) -> dict[str, list[str]]:
    """The TCP addresses the processes (and their descendants) listen on, by process name and pid."""
    import psutil

    wanted: dict[int, str] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                wanted[process.pid] = f"{process.name()}[{process.pid}]"
        except psutil.Error:
            continue
    found: dict[str, list[str]] = {}
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.pid in wanted:
            address = f"{connection.laddr.ip}:{connection.laddr.port}"
            found.setdefault(wanted[connection.pid], []).append(address)
    return found


def is_loopback(address: str) -> bool:
    import ipaddress

    host = address.rsplit(":", 1)[0].strip("[]")
    return ipaddress.ip_address(host).is_loopback


# --- Processes ------------------------------------------------------------------------------------


@dataclass
class Service:
    """One long-running process in its own process group, output to a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: teardown kills the children too
            )  # fmt: skip
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> list[Any]:
        """SIGTERM the process group; returns the descendants seen first (for ``kill``)."""
        if self.process is None:
            return []
        import psutil

        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        _signal_group(self.process.pid, signal.SIGTERM)
        return descendants

    def kill(self, descendants: Iterable[Any] = ()) -> None:
        """SIGKILL the process group and any descendant that left it (its own session)."""
        if self.process is None:
            return
        import psutil

        _signal_group(self.process.pid, signal.SIGKILL)
        for child in descendants:  # psutil checks the process identity: a reused pid is left alone
            with contextlib.suppress(psutil.Error):
                child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def stop_all(services: Iterable[Service], grace: float = 15.0) -> None:
    """SIGTERM every service at once, give them ``grace`` seconds together, then SIGKILL what is left."""
    services = list(services)
    descendants = {id(service): service.terminate() for service in services}
    deadline = time.monotonic() + grace
    for service in services:
        if service.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for service in services:
        service.kill(descendants[id(service)])


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def logs_report(services: Iterable[Service], lines: int = 40) -> str:
    parts = []
    for service in services:
        state = "running" if service.running() else f"exited {service.process.returncode if service.process else '-'}"
        parts.append(f"----- {service.name} ({state}; {service.log}) -----\n{service.tail(lines)}")
    return "\n".join(parts)


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 2.0,
    what: str,
    check: Callable[[], None] | None = None,
) -> Any:
    """Poll ``condition`` until it returns something truthy; ``check`` may raise to stop early."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- REST API -------------------------------------------------------------------------------------


class AirflowApi:
    """A few public REST API (v2) calls with a SimpleAuthManager JWT."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.username, self.password = username, password
        self.client = httpx.Client(base_url=self.base_url, timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def healthy(self) -> bool:
        import httpx

        try:
            return self.client.get("/api/v2/monitor/health").status_code == 200
        except httpx.HTTPError:
            return False

    def login(self) -> None:
        response = self.client.post("/auth/token", json={"username": self.username, "password": self.password})
        response.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200,), **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code not in set(ok):
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:1000]}")
        return response.json() if response.content else None

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        response = self.client.get(f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v2/importErrors")["import_errors"])

    def unpause(self, dag_id: str) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False}))

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        body = {"logical_date": None, "conf": conf}
        return dict(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body))

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self.request("GET", path, params={"limit": 1000})["task_instances"])

    def mapped_task_instances(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/listMapped"
        return list(self.request("GET", path, params={"limit": 1000})["task_instances"])

    def task_instance_tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        """Every try of one (mapped) task instance, oldest first: earlier tries come from the history."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
        tries = list(self.request("GET", path)["task_instances"])
        return sorted(tries, key=lambda item: item["try_number"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        value = self.request("GET", path, params={"map_index": map_index})["value"]
        return json.loads(value) if isinstance(value, str) else value


# --- Results --------------------------------------------------------------------------------------


def read_predictions_bytes(data: bytes) -> dict[str, dict[str, str]]:
    """predictions.csv as {key: row}, without the ``scored_at`` column (it differs between runs)."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    table = {row["key"]: {name: value for name, value in row.items() if name != "scored_at"} for row in rows}
    assert len(table) == len(rows), "predictions.csv has duplicate keys"
    return table


def prediction_differences(
    actual: dict[str, dict[str, str]], expected: dict[str, dict[str, str]], *, tolerance: float = 1e-6
) -> list[str]:
    """Human-readable differences; crack_probability compared as floats, every other column exactly."""
    differences = []
    for key in sorted(set(actual) | set(expected)):
        if key not in actual or key not in expected:
            differences.append(f"{key}: only in {'expected' if key in expected else 'actual'}")
            continue
        for column in sorted(set(actual[key]) | set(expected[key])):
            got, want = actual[key].get(column), expected[key].get(column)
            if column == "crack_probability" and got and want:
                # Both files print 6 decimals: allow one unit in the last place besides the tolerance.
                if math.isclose(float(got), float(want), rel_tol=0.0, abs_tol=tolerance + 1e-9):
                    continue
            elif got == want:
                continue
            differences.append(f"{key}: {column} {got!r} != {want!r}")
    return differences
