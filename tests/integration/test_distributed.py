"""Distributed run: the nightly scoring DAG on a real Airflow cluster with two Celery workers.

PostgreSQL is the metadata database (a fresh one per run), Redis the Celery broker (a queue of
the run's own), and a scheduler, a DAG processor, an API server and two Celery workers run as
separate processes on loopback. The test triggers ``crack_nightly_scoring`` through the REST
API, waits for success, checks that the batch's shards ran on both workers, and that the merged
predictions equal a single-process run of the same batch with the same model.

Needs the offline ImageNet weights (the champion model is trained first, on SQLite, by the
retraining DAG) and PostgreSQL/Redis on loopback (``scripts/ensure-services.sh`` starts them).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from demo.airflow_env import airflow_environment, migrate, run_dag
from tests.distributed_support import (
    HOSTNAME_CALLABLE,
    PG_HOST,
    PG_PORT,
    PG_USER,
    REDIS_HOST,
    REDIS_PORT,
    WORKER_NAME_ENV,
    AirflowApi,
    Service,
    create_database,
    drop_database,
    forget_celery_queue,
    free_port,
    is_loopback,
    listening_addresses,
    logs_report,
    prediction_differences,
    read_predictions_bytes,
    services_unavailable,
    stop_all,
    wait_for,
)

# The timeout is a last resort against a hang; the run itself fails with logs after RUN_TIMEOUT.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

DAG_ID = "crack_nightly_scoring"
BATCH = "2026-11-24"
MODEL = "models:/crack@champion"
RUN_CONF = {"batch_ids": [BATCH], "objects_per_shard": 10, "max_shards_per_batch": 6}
OBJECTS, QUARANTINED = 62, 2  # the seeded night: 60 images, a truncated upload and a renamed text file
EXPECTED_SHARDS = 6  # 62 objects / 10 per shard, capped at 6
WORKERS = ("worker-a", "worker-b")
RUN_TIMEOUT = 480.0
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@pytest.fixture(scope="module")
def services() -> None:
    reason = services_unavailable()
    if reason:
        pytest.skip(reason)


CELERY_PROBE = """
import celery
try:
    import airflow.providers.celery.executors.celery_executor_utils
except ImportError as error:
    raise SystemExit(f"celery {celery.__version__}: {error}")
"""


@pytest.fixture(scope="module")
def celery_executor(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The CeleryExecutor must import with the installed Celery (5.7.0 dropped what provider 3.26.0 imports)."""
    environment = airflow_environment(tmp_path_factory.mktemp("celery-probe"))
    result = subprocess.run(
        [sys.executable, "-c", CELERY_PROBE], env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            "the CeleryExecutor cannot be imported, so no scheduler or Celery worker can start: "
            f"{(result.stderr.strip().splitlines() or ['?'])[-1]} (pin a Celery release the installed "
            "apache-airflow-providers-celery supports, e.g. celery==5.6.3)",
            pytrace=False,
        )


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """The demo store: labeled pool, holdout, the night's uploads (2 broken) and a blank batch."""
    from demo.seed import seed_store

    path = tmp_path / "store"
    seed_store(str(path))
    return path


def train_champion(store: Path, weights: str, home: Path) -> dict[str, Any]:
    """``crack_retraining`` with dag.test() on SQLite: its first candidate becomes the champion."""
    environment = airflow_environment(home)
    migrate(environment)
    result = run_dag("crack_retraining", {"store": str(store), "weights": weights}, environment)
    assert result["state"].endswith("success"), result
    return result


@pytest.fixture()
def champion(store: Path, imagenet_weights: str, tmp_path: Path, services: None):
    """Train the champion in the background while the cluster starts (the two overlap)."""
    with ThreadPoolExecutor(1, thread_name_prefix="champion") as executor:
        yield executor.submit(train_champion, store, imagenet_weights, tmp_path / "retraining-home")


class Cluster:
    """Scheduler, DAG processor, API server and two Celery workers sharing one PostgreSQL database."""

    def __init__(self, root: Path, store: Path) -> None:
        self.root = root
        token = secrets.token_hex(4)
        self.database = f"crack_it_{token}"
        self.queue = f"crack-it-{token}"
        self.redis_db = 1 + secrets.randbelow(15)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.services: list[Service] = []
        self.api: AirflowApi | None = None
        self.created_database = False
        home = root / "airflow-home"
        home.mkdir(parents=True)
        passwords = home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({"admin": "admin"}))
        self.env = airflow_environment(
            home,
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/"
                f"{self.database}",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.database}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
                # Only the triggered run: a schedule (even a paused-then-unpaused one) must not add its own.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW_VAR_CRACK_STORE": str(store),
                "TF_CPP_MIN_LOG_LEVEL": "3",
            },
        )
        self.env.pop(WORKER_NAME_ENV, None)

    def service(self, name: str, *args: str, **extra_env: str) -> Service:
        environment = {**self.env, **extra_env}
        return Service(name, [AIRFLOW, *args], environment, self.root / "logs" / f"{name}.log").start()

    def start(self) -> None:
        create_database(self.database)
        self.created_database = True
        migrate(self.env)
        self.services.append(self.service("api-server", "api-server", "--host", "127.0.0.1", "--port",
                                          str(self.port), "--workers", "1"))  # fmt: skip
        self.services.append(self.service("scheduler", "scheduler"))
        self.services.append(self.service("dag-processor", "dag-processor"))
        for name in WORKERS:
            self.services.append(
                self.service(
                    name, "celery", "worker", "--queues", self.queue, "--concurrency", "2",
                    "--celery-hostname", f"{name}@%h", "--pid", str(self.root / f"{name}.pid"),
                    "--skip-serve-logs",  # its log server binds every interface; the logs are local files anyway
                    **{WORKER_NAME_ENV: name},
                )
            )  # fmt: skip
        self.api = AirflowApi(self.base_url, "admin", "admin")
        wait_for(self.api.healthy, timeout=120, interval=1, what="the API server", check=self.check_alive)
        self.api.login()

    def check_alive(self) -> None:
        dead = [service.name for service in self.services if not service.running()]
        if dead:
            raise AssertionError(f"{', '.join(dead)} exited early\n{self.logs()}")

    def workers_ready(self) -> bool:
        """Both Celery workers answer a ping on the run's broker."""
        from celery import Celery
        from celery.utils.nodenames import host_format

        app = Celery(broker=self.env["AIRFLOW__CELERY__BROKER_URL"])
        try:
            names = [host_format(f"{name}@%h") for name in WORKERS]
            replies = app.control.ping(destination=names, timeout=1.0)
        finally:
            app.close()
        answered = {name for reply in replies for name in reply}
        return answered == set(names)

    def listening(self) -> dict[str, list[str]]:
        return listening_addresses(service.process.pid for service in self.services if service.process)

    def logs(self, lines: int = 40) -> str:
        return logs_report(self.services, lines)

    def task_logs(self, task_id: str, lines: int = 30) -> str:
        files = sorted((Path(self.env["AIRFLOW_HOME"]) / "logs").rglob(f"*task_id={task_id}*/**/*.log"))
        return "\n".join(
            f"----- {path} -----\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in files[-3:]
        )

    def stop(self) -> None:
        try:
            if self.api is not None:
                self.api.close()
            stop_all(self.services)
        finally:
            try:
                if self.created_database:
                    drop_database(self.database)
            finally:
                forget_celery_queue(self.redis_db, self.queue)


@pytest.fixture()
def cluster(tmp_path: Path, store: Path, champion: Future, services: None, celery_executor: None):
    started = time.monotonic()
    running = Cluster(tmp_path / "cluster", store)
    try:
        running.start()
        print(f"cluster up in {time.monotonic() - started:.0f} s (database {running.database}, queue {running.queue})")
        yield running
    finally:
        running.stop()


def single_process_predictions(reference: Path) -> bytes:
    """The same batch scored in this process, in one shard, after the same validation (quarantine)."""
    from crack_model.core import layout
    from crack_model.core.storage import open_store
    from crack_model.pipelines.nightly import pin_model, validate_incoming
    from crack_model.serving.batch import score_batch

    pinned = pin_model(str(reference), MODEL)
    validation = validate_incoming(str(reference), BATCH, pinned["drift_reference"])
    assert validation["outcome"] == "passed_with_quarantine", validation
    score_batch(str(reference), BATCH, MODEL, shards=1)
    return open_store(str(reference)).read(layout.results_key(BATCH, layout.PREDICTIONS))


def test_scoring_dag_on_two_celery_workers(tmp_path: Path, store: Path, champion: Future, cluster: Cluster):
    """Trigger through the REST API; shards spread over both workers; results equal a one-process run."""
    from crack_model.core import layout
    from crack_model.core.storage import open_store

    started = time.monotonic()
    api = cluster.api
    assert api is not None

    def parsed() -> dict[str, Any] | None:
        errors = api.import_errors()
        if errors:
            raise AssertionError(f"DAG import errors: {errors}")
        return api.dag(DAG_ID)

    wait_for(parsed, timeout=180, interval=2, what=f"{DAG_ID} to be parsed", check=cluster.check_alive)
    wait_for(cluster.workers_ready, timeout=120, interval=1, what="both Celery workers", check=cluster.check_alive)
    print(f"DAG parsed and workers ready after {time.monotonic() - started:.0f} s")

    champion.result(timeout=600)  # the retraining DAG finished: the store has a champion
    print(f"champion trained after {time.monotonic() - started:.0f} s")
    reference = tmp_path / "reference-store"
    shutil.copytree(store, reference)  # before any scoring: the single-process run starts from here

    assert api.unpause(DAG_ID)["is_paused"] is False
    run = api.trigger(DAG_ID, RUN_CONF)
    run_id = run["dag_run_id"]
    triggered = time.monotonic()

    def finished() -> dict[str, Any] | None:
        current = api.dag_run(DAG_ID, run_id)
        return current if current["state"] in ("success", "failed") else None

    try:
        final = wait_for(finished, timeout=RUN_TIMEOUT, interval=3, what=f"run {run_id}", check=cluster.check_alive)
    except TimeoutError as error:
        instances = api.task_instances(DAG_ID, run_id)
        states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in instances}
        unfinished = sorted({ti["task_id"] for ti in instances if ti["state"] not in ("success", "skipped", None)})
        task_logs = "\n".join(cluster.task_logs(task_id) for task_id in unfinished)
        raise AssertionError(f"{error}; task states {states}\n{task_logs}\n{cluster.logs()}") from None
    run_seconds = time.monotonic() - triggered
    instances = api.task_instances(DAG_ID, run_id)
    states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in instances}
    if final["state"] != "success":
        failed = sorted({ti["task_id"] for ti in instances if ti["state"] not in ("success", "skipped")})
        task_logs = "\n".join(cluster.task_logs(task_id) for task_id in failed)
        raise AssertionError(f"run {run_id} ended {final['state']}: {states}\n{task_logs}\n{cluster.logs()}")
    print(f"run {run_id} succeeded in {run_seconds:.0f} s: {states}")

    shards = api.mapped_task_instances(DAG_ID, run_id, "score_shard")
    assert len(shards) == EXPECTED_SHARDS, shards
    assert all(ti["state"] == "success" for ti in shards), {ti["map_index"]: ti["state"] for ti in shards}
    hostnames = {ti["map_index"]: ti["hostname"] for ti in shards}
    print(f"score_shard hostnames by map index: {hostnames}")
    assert set(hostnames.values()) == set(WORKERS), f"shards did not run on both workers: {hostnames}"

    listening = cluster.listening()
    print(f"listening sockets of the cluster: {listening}")
    assert any(f"127.0.0.1:{cluster.port}" in addresses for addresses in listening.values()), listening
    exposed = {name: addresses for name, addresses in listening.items() if not all(map(is_loopback, addresses))}
    assert not exposed, f"cluster processes listen beyond loopback: {exposed}"

    distributed = read_predictions_bytes(open_store(str(store)).read(layout.results_key(BATCH, layout.PREDICTIONS)))
    single = read_predictions_bytes(single_process_predictions(reference))
    assert len(single) == OBJECTS, sorted(single)
    assert sum(row["status"] == "quarantined" for row in single.values()) == QUARANTINED, single
    differences = prediction_differences(distributed, single)
    assert not differences, "distributed != single-process:\n" + "\n".join(differences[:40])
    print(f"test body {time.monotonic() - started:.0f} s (run {run_seconds:.0f} s)")
