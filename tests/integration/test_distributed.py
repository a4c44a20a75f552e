"""Distributed run: the nightly scoring DAG on a real Airflow cluster with two Celery workers.

PostgreSQL is the metadata database (a fresh one per run), Redis the Celery broker (a queue of
the run's own), and a scheduler, a DAG processor, an API server and two Celery workers run as
separate processes on loopback. The test triggers ``crack_nightly_scoring`` through the REST
API, waits for success, checks that the batch's shards ran on both workers, and that the merged
predictions equal a single-process run of the same batch with the same model. A second night, on
a copy of the store with a bigger batch, SIGKILLs the worker of a shard that has written its first
part: the shard is retried on the other worker, resumes from that part, and the night still ends
with one row per upload, equal to a single-process run.

The cluster and the champion are shared by the module's tests (each night scores its own copy of
the trained store, passed as the DAG's ``store`` param for the second one).

Needs the offline ImageNet weights (the champion model is trained first, on SQLite, by the
retraining DAG) and PostgreSQL/Redis on loopback (``scripts/ensure-services.sh`` starts them).
"""

from __future__ import annotations

import io
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
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2700)]

DAG_ID = "crack_nightly_scoring"
BATCH = "2026-11-24"
MODEL = "models:/crack@champion"
RUN_CONF = {"batch_ids": [BATCH], "objects_per_shard": 10, "max_shards_per_batch": 6}
OBJECTS, QUARANTINED = 62, 2  # the seeded night: 60 images, a truncated upload and a renamed text file
EXPECTED_SHARDS = 6  # 62 objects / 10 per shard, capped at 6
WORKERS = ("worker-a", "worker-b")
RUN_TIMEOUT = 1200.0  # generous: a slow 2-core machine runs the other test process beside it
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
# The kill night: the night's 60 photos plus 28 transposed, re-encoded copies of each (distinct bytes, so
# validation sees no duplicates), in 2 shards of ~870; the first part of a shard holds PART_ROWS rows
# (score_shard's default part size), so the kill lands after a part and ~370 images before the shard's end.
COPY_QUALITIES = (95, 90, 85, 80)
KILL_OBJECTS = OBJECTS + (OBJECTS - QUARANTINED) * 7 * len(COPY_QUALITIES)
KILL_CONF = {"batch_ids": [BATCH], "objects_per_shard": 900, "max_shards_per_batch": 2}
KILL_SHARDS = 2
PART_ROWS = 500
# Scheduler settings of the test cluster: a task whose supervisor stops heartbeating (default every 5 s) is
# failed, and so retried, 30 s later instead of the 300 s default. The DAG's retry delay (60 s, exponential
# with jitter: 60-120 s before the first retry) still applies.
HEARTBEAT_TIMEOUT = 30


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


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo store: labeled pool, holdout, the night's uploads (2 broken) and a blank batch."""
    from demo.seed import seed_store

    path = tmp_path_factory.mktemp("distributed") / "store"
    seed_store(str(path))
    return path


def train_champion(store: Path, weights: str, home: Path) -> dict[str, Any]:
    """``crack_retraining`` with dag.test() on SQLite: its first candidate becomes the champion."""
    environment = airflow_environment(home)
    migrate(environment)
    result = run_dag("crack_retraining", {"store": str(store), "weights": weights}, environment)
    assert result["state"].endswith("success"), result
    return result


@pytest.fixture(scope="module")
def champion(store: Path, imagenet_weights: str, tmp_path_factory: pytest.TempPathFactory, services: None):
    """Train the champion in the background while the cluster starts (the two overlap)."""
    home = tmp_path_factory.mktemp("retraining-home")
    with ThreadPoolExecutor(1, thread_name_prefix="champion") as executor:
        yield executor.submit(train_champion, store, imagenet_weights, home)


@pytest.fixture(scope="module")
def trained_store(store: Path, champion: Future, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the store once the champion is trained, before any night scored it (each test copies it)."""
    champion.result(timeout=1800)  # the retraining DAG finished: the store has a champion
    path = tmp_path_factory.mktemp("trained") / "store"
    shutil.copytree(store, path)
    return path


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
        self.killed: set[str] = set()  # services this test SIGKILLed on purpose
        self.prepared = False
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
                # A killed worker's task is noticed in seconds, not minutes (see HEARTBEAT_TIMEOUT).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
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
        dead = [service.name for service in self.services if not service.running() and service.name not in self.killed]
        if dead:
            raise AssertionError(f"{', '.join(dead)} exited early\n{self.logs()}")

    def kill(self, name: str) -> list[int]:
        """SIGKILL a service's process group and every descendant (Celery pool, task supervisors and tasks)."""
        import psutil

        service = next(service for service in self.services if service.name == name)
        assert service.process is not None and service.running(), f"{name} is not running"
        processes = [psutil.Process(service.process.pid)]
        processes += processes[0].children(recursive=True)
        self.killed.add(name)
        service.kill(processes[1:])
        _gone, alive = psutil.wait_procs(processes[1:], timeout=10)
        assert not alive and not service.running(), f"{name} survived SIGKILL: {alive}"
        return [process.pid for process in processes]

    def prepare(self, dag_id: str) -> None:
        """Once per cluster: the DAG is parsed without import errors, both workers answer, the DAG is unpaused."""
        if self.prepared:
            return
        api = self.api
        assert api is not None

        def parsed() -> dict[str, Any] | None:
            errors = api.import_errors()
            if errors:
                raise AssertionError(f"DAG import errors: {errors}")
            return api.dag(dag_id)

        wait_for(parsed, timeout=180, interval=2, what=f"{dag_id} to be parsed", check=self.check_alive)
        wait_for(self.workers_ready, timeout=120, interval=1, what="both Celery workers", check=self.check_alive)
        assert api.unpause(dag_id)["is_paused"] is False
        self.prepared = True

    @staticmethod
    def worker_nodes() -> list[str]:
        """The Celery node names of the workers (``--celery-hostname``)."""
        from celery.utils.nodenames import host_format

        return [host_format(f"{name}@%h") for name in WORKERS]

    def workers_ready(self) -> bool:
        """Both Celery workers answer a ping on the run's broker."""
        from celery import Celery

        app = Celery(broker=self.env["AIRFLOW__CELERY__BROKER_URL"])
        try:
            names = self.worker_nodes()
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
            # A killed service is reaped already: its process group id must not be signalled again.
            stop_all(service for service in self.services if service.name not in self.killed)
        finally:
            try:
                if self.created_database:
                    drop_database(self.database)
            finally:
                forget_celery_queue(self.redis_db, self.queue, self.worker_nodes())


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, store: Path, champion: Future, services: None, celery_executor: None
):
    started = time.monotonic()
    running = Cluster(tmp_path_factory.mktemp("cluster"), store)
    try:
        running.start()
        print(
            f"cluster up in {time.monotonic() - started:.0f} s (database {running.database}, "
            f"queue {running.queue} in Redis db {running.redis_db})"
        )
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


def wait_for_success(cluster: Cluster, run_id: str, timeout: float = RUN_TIMEOUT) -> list[dict[str, Any]]:
    """Wait for the run to end; unless it succeeded, fail with task states, task logs and service logs.

    Returns the run's task instances.
    """
    api = cluster.api
    assert api is not None

    def finished() -> dict[str, Any] | None:
        current = api.dag_run(DAG_ID, run_id)
        return current if current["state"] in ("success", "failed") else None

    try:
        final = wait_for(finished, timeout=timeout, interval=3, what=f"run {run_id}", check=cluster.check_alive)
    except TimeoutError as error:
        instances = api.task_instances(DAG_ID, run_id)
        states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in instances}
        unfinished = sorted({ti["task_id"] for ti in instances if ti["state"] not in ("success", "skipped", None)})
        task_logs = "\n".join(cluster.task_logs(task_id) for task_id in unfinished)
        raise AssertionError(f"{error}; task states {states}\n{task_logs}\n{cluster.logs()}") from None
    instances = api.task_instances(DAG_ID, run_id)
    if final["state"] != "success":
        states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in instances}
        failed = sorted({ti["task_id"] for ti in instances if ti["state"] not in ("success", "skipped")})
        task_logs = "\n".join(cluster.task_logs(task_id) for task_id in failed)
        raise AssertionError(f"run {run_id} ended {final['state']}: {states}\n{task_logs}\n{cluster.logs()}")
    return instances


def test_scoring_dag_on_two_celery_workers(tmp_path: Path, store: Path, cluster: Cluster, trained_store: Path):
    """Trigger through the REST API; shards spread over both workers; results equal a one-process run."""
    from crack_model.core import layout
    from crack_model.core.storage import open_store

    started = time.monotonic()
    api = cluster.api
    assert api is not None
    cluster.prepare(DAG_ID)
    print(f"DAG parsed and workers ready after {time.monotonic() - started:.0f} s")
    reference = tmp_path / "reference-store"
    shutil.copytree(trained_store, reference)  # before any scoring: the single-process run starts from here

    run = api.trigger(DAG_ID, RUN_CONF)
    run_id = run["dag_run_id"]
    triggered = time.monotonic()

    instances = wait_for_success(cluster, run_id)
    run_seconds = time.monotonic() - triggered
    states = {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in instances}
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


def add_copies(store: Path) -> int:
    """Turn the night's batch into a bigger one: 7 transposes x len(COPY_QUALITIES) JPEG qualities of each photo.

    The copies decode, look like the originals to validation (brightness, contrast, focus) and have bytes of
    their own (validation quarantines byte-for-byte duplicates); the broken uploads get none.
    """
    from PIL import Image

    from crack_model.core import layout
    from crack_model.core.storage import open_store

    opened = open_store(str(store))
    prefix = layout.incoming_prefix(BATCH)
    added = 0
    for info in list(opened.list(prefix)):
        try:
            with Image.open(io.BytesIO(opened.read(info.key))) as image:
                photo = image.convert("RGB")
        except (OSError, SyntaxError):  # the truncated upload and the renamed text file
            continue
        for turn in (transpose for transpose in Image.Transpose):  # every one but the identity: 7
            turned = photo.transpose(turn)
            for quality in COPY_QUALITIES:
                buffer = io.BytesIO()
                turned.save(buffer, format="JPEG", quality=quality)
                name = f"{prefix}copies/{turn.name.lower()}-q{quality}/{info.key[len(prefix) :]}"
                opened.write(name, buffer.getvalue())
                added += 1
    return added


def shard_parts(store: Path, shard_index: int) -> dict[str, bytes]:
    """The files (parts, their stats, _DONE) of one shard of the kill night, by name: one model version."""
    from crack_model.core import layout
    from crack_model.core.storage import open_store

    opened = open_store(str(store))
    prefix = layout.results_key(BATCH, layout.PARTS) + "/"
    shard = layout.Shard(shard_index, KILL_SHARDS).name
    files = {info.key[len(prefix) :]: opened.read(info.key) for info in opened.list(prefix)}
    versions = {name.split("/")[0] for name in files}
    assert len(versions) <= 1, f"parts of more than one model version: {sorted(files)}"
    return {name.split("/", 2)[2]: data for name, data in files.items() if name.split("/")[1] == shard}


def csv_keys(data: bytes) -> list[str]:
    return [row["key"] for row in read_csv_rows(data)]


def read_csv_rows(data: bytes) -> list[dict[str, str]]:
    import csv

    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_killed_worker_shard_resumes_on_the_other(tmp_path: Path, cluster: Cluster, trained_store: Path) -> None:
    """SIGKILL the worker of a shard that has written its first part: the retry on the other worker resumes."""
    from crack_model.core import layout
    from crack_model.core.storage import open_store

    started = time.monotonic()
    api = cluster.api
    assert api is not None
    cluster.prepare(DAG_ID)
    night = tmp_path / "kill-store"
    shutil.copytree(trained_store, night)
    assert add_copies(night) == KILL_OBJECTS - OBJECTS
    reference = tmp_path / "reference-store"
    shutil.copytree(night, reference)  # before any scoring: the single-process run starts from here
    uploads = [info.key for info in open_store(str(night)).list(layout.incoming_prefix(BATCH))]
    sizes = [sum(layout.Shard(index, KILL_SHARDS).owns(key) for key in uploads) for index in range(KILL_SHARDS)]
    assert len(uploads) == KILL_OBJECTS and min(sizes) > PART_ROWS + 100, sizes  # room to die after a part
    print(f"kill night: {len(uploads)} objects, shards of {sizes}, ready after {time.monotonic() - started:.0f} s")

    run_id = api.trigger(DAG_ID, {**KILL_CONF, "store": str(night)})["dag_run_id"]
    triggered = time.monotonic()

    # Watch the store: the first shard to finish its first part (its stats are written last), but not the
    # whole shard, loses its worker, with ~370 images of it still to score.
    parts = night / layout.results_key(BATCH, layout.PARTS)
    names = {layout.Shard(index, KILL_SHARDS).name: index for index in range(KILL_SHARDS)}
    last_look = [time.monotonic()]

    def shard_with_a_part() -> list[int]:
        found = [names[marker.parent.name] for marker in sorted(parts.glob("*/shard-*/part-000000-*.json"))
                 if not (marker.parent / layout.DONE).exists()]  # fmt: skip
        if not found and time.monotonic() - last_look[0] > 3:  # the run must not end unseen
            last_look[0] = time.monotonic()
            state = api.dag_run(DAG_ID, run_id)["state"]
            assert state not in ("success", "failed"), (
                f"run {run_id} ended {state} before a shard was caught between its first part and its end: "
                f"{sorted(str(path.relative_to(parts)) for path in parts.rglob('*'))}"
            )
        return found[:1]

    (watched,) = wait_for(shard_with_a_part, timeout=RUN_TIMEOUT, interval=0.1, what="a shard's first part",
                          check=cluster.check_alive)  # fmt: skip
    running = {ti["map_index"]: ti for ti in api.mapped_task_instances(DAG_ID, run_id, "score_shard")}
    victim = running[watched]["hostname"]
    assert running[watched]["state"] == "running" and victim in WORKERS, running[watched]
    survivor = next(name for name in WORKERS if name != victim)
    killed_pids = cluster.kill(victim)
    killed_at = time.monotonic()
    before_kill = shard_parts(night, watched)
    print(f"killed {victim} ({len(killed_pids)} processes) {killed_at - triggered:.0f} s after the trigger, "
          f"shard {watched} holding {sorted(before_kill)}")  # fmt: skip
    assert layout.DONE not in before_kill, f"the kill came too late: shard {watched} had finished"
    cut = sorted(str(path.relative_to(parts)) for path in parts.rglob(".tmp-*"))
    if cut:
        print(f"writes cut short by the kill (temporary files, never listed): {cut}")
    rows_before = sum(len(csv_keys(data)) for name, data in before_kill.items() if name.endswith(".csv"))
    assert rows_before >= PART_ROWS, before_kill.keys()

    instances = wait_for_success(cluster, run_id)
    run_seconds = time.monotonic() - triggered
    states = {f"{ti['task_id']}[{ti['map_index']}]": (ti["state"], ti["try_number"]) for ti in instances}
    print(f"run {run_id} succeeded in {run_seconds:.0f} s ({run_seconds - (killed_at - triggered):.0f} s after "
          f"the kill): {states}")  # fmt: skip

    # Every shard whose worker died was retried and finished on the other worker.
    shards = {ti["map_index"]: ti for ti in api.mapped_task_instances(DAG_ID, run_id, "score_shard")}
    assert sorted(shards) == list(range(KILL_SHARDS)), shards
    tries = {index: api.task_instance_tries(DAG_ID, run_id, "score_shard", index) for index in shards}
    print("score_shard tries: " + "; ".join(
        f"{index}: " + ", ".join(f"#{t['try_number']} {t['hostname']} {t['state']}" for t in tries[index])
        for index in sorted(tries)))  # fmt: skip
    died = {index for index, history in tries.items() if any(t["hostname"] == victim and t["state"] != "success"
                                                             for t in history)}  # fmt: skip
    assert watched in died, tries
    for index in sorted(died):
        final = shards[index]
        assert final["state"] == "success" and final["try_number"] >= 2, final
        assert final["hostname"] == survivor, f"shard {index} finished on {final['hostname']}, not {survivor}"
        assert tries[index][0]["hostname"] == victim and tries[index][0]["state"] != "success", tries[index]

    # The watched shard resumed: what it wrote before the kill is still there, unchanged, and the retry
    # scored only the rest, in parts of its own.
    after = shard_parts(night, watched)
    assert layout.DONE in after
    for name, data in before_kill.items():
        assert after.get(name) == data, f"{name} of shard {watched} changed after the kill"
    new_parts = sorted(name for name in after if name.endswith(".csv") and name not in before_kill)
    assert new_parts, f"the retry of shard {watched} wrote no part: {sorted(after)}"
    report = api.xcom(DAG_ID, run_id, "score_shard", watched)
    print(f"shard {watched} retry report: {report}")
    assert report["skipped_already_done"] == rows_before, report
    assert report["images"] == sum(len(csv_keys(after[name])) for name in new_parts), report

    # Nothing lost, nothing scored twice: every part row is a distinct key of its shard, and every upload
    # validation let through is in exactly one part.
    opened = open_store(str(night))
    quarantined = set()
    for index in range(KILL_SHARDS):
        files = shard_parts(night, index)
        keys = [key for name, data in sorted(files.items()) if name.endswith(".csv") for key in csv_keys(data)]
        duplicated = sorted({key for key in keys if keys.count(key) > 1})
        assert not duplicated, f"shard {index} scored {len(duplicated)} keys twice: {duplicated[:5]}"
        assert all(layout.Shard(index, KILL_SHARDS).owns(key) for key in keys)
        quarantined |= {key for key in uploads if layout.Shard(index, KILL_SHARDS).owns(key)} - set(keys)
    assert len(quarantined) == QUARANTINED, sorted(quarantined)

    distributed = read_predictions_bytes(opened.read(layout.results_key(BATCH, layout.PREDICTIONS)))
    assert sorted(distributed) == sorted(uploads), set(distributed) ^ set(uploads)
    single = read_predictions_bytes(single_process_predictions(reference))
    assert len(single) == KILL_OBJECTS
    assert {key for key, row in single.items() if row["status"] == "quarantined"} == quarantined
    differences = prediction_differences(distributed, single)
    assert not differences, "distributed != single-process:\n" + "\n".join(differences[:40])
    print(f"test body {time.monotonic() - started:.0f} s (run {run_seconds:.0f} s)")
