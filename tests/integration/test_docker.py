"""The container setup: a compose file docker-compose 1.29 accepts, a lint-clean Dockerfile, exact pins, a hashed lock.

No Docker engine runs here, so nothing is built or started: the compose file is resolved by the real
docker-compose binary (`scripts/system-deps.sh` installs it), the Dockerfile is checked by hadolint and
read for what it installs, and pip proves the lock is what this venv runs and installs in the image.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
DOCKER = PROJECT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
REQUIREMENTS = PROJECT / "requirements.txt"
DEV_REQUIREMENTS = PROJECT / "requirements-dev.txt"
LOCK = PROJECT / "requirements.lock"
DEV_LOCK = PROJECT / "requirements-dev.lock"
HADOLINT = Path(sys.executable).with_name("hadolint")

AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!-]+$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def _normalize(name: str) -> str:
    """PEP 503 name: `Jinja2`, `jinja2` and `great_expectations` compare as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """{normalized name: version} of a requirements file's `name[extras]==version` lines (`-r` lines skipped)."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, _, version = line.partition("==")
        pins[_normalize(name.split("[", 1)[0])] = version
    return pins


def _lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{normalized name: (`name==version` as written, its --hash options)} of a uv/pip-compile lock."""
    entries = {}
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name = requirement.split("==", 1)[0].split("[", 1)[0]
        entries[_normalize(name)] = (requirement, options)
    return entries


def _compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    """Run docker-compose on the project's compose file with a clean environment (only env_file's values)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed: run scripts/system-deps.sh")
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it with docker/.env.example."""
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _command(service: dict[str, Any]) -> str:
    command = service.get("command") or []
    return command if isinstance(command, str) else " ".join(command)


def _airflow_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in config["services"].items()
        if "AIRFLOW__CORE__EXECUTOR" in (service.get("environment") or {})
    }


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def _dockerignore_keeps(path: str) -> bool:
    """Whether the build context keeps `path` under .dockerignore's rules (last match wins, parents count)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: depth + 1]) for depth in range(len(parts))]
    kept = True
    for raw in (PROJECT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        anywhere = pattern.startswith("**/")
        for candidate in candidates:
            names = [candidate]
            if anywhere:
                names += [candidate.rsplit("/", 1)[-1]]
            if any(fnmatch.fnmatchcase(name, pattern.removeprefix("**/")) for name in names) and (
                anywhere or candidate.count("/") == pattern.count("/")
            ):
                kept = negate
                break
    return kept


def test_compose_config_is_valid_for_docker_compose_1_29():
    """`docker-compose config -q` accepts the file (Compose Specification, depends_on conditions included)."""
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_secrets(tmp_path: Path):
    """With no .env, compose stops and names a missing secret instead of starting with blank passwords."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = _compose("config", "-q", env_file=empty)
    assert result.returncode != 0
    assert "in docker/.env" in result.stderr, result.stderr


def test_compose_has_every_component(compose_config: dict[str, Any]):
    """api-server, scheduler, dag-processor, triggerer, 2+ Celery workers, Postgres, Redis, MinIO and its init."""
    services = compose_config["services"]
    for name, command in AIRFLOW_COMPONENTS.items():
        assert _command(services[name]) == command, name
    workers = [service for service in services.values() if _command(service) == "celery worker"]
    replicas = sum((service.get("deploy") or {}).get("replicas", 1) for service in workers)
    assert replicas >= 2
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "minio/minio:" in services["minio"]["image"]
    bucket_init = services["minio-init"]
    assert "minio/mc:" in bucket_init["image"]
    assert "mc mb --ignore-existing" in " ".join(bucket_init["command"])
    assert bucket_init["environment"]["CRACK_BUCKET"] == "inspections"
    assert "db migrate" in " ".join(services["airflow-init"]["command"])


def test_compose_images_are_pinned(compose_config: dict[str, Any]):
    """Every image has an explicit tag that is not `latest`."""
    for name, service in compose_config["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag not in ("", "latest"), f"{name}: {image}"


def test_compose_uses_celery_redis_and_postgres(compose_config: dict[str, Any]):
    """All Airflow services share CeleryExecutor, the Redis broker, the Postgres DB and one JWT secret."""
    airflow = _airflow_services(compose_config)
    assert set(AIRFLOW_COMPONENTS) | {"airflow-init"} <= set(airflow)
    settings = {name: service["environment"] for name, service in airflow.items()}
    for name, env in settings.items():
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert "@redis:6379/" in env["AIRFLOW__CELERY__BROKER_URL"], name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
        assert env["CRACK_STORE"] == "s3://inspections", name
        # An AIRFLOW_VAR_<KEY> hides the Variable <key> set in the UI or CLI: the deployment's defaults are plain.
        assert not [key for key in env if key.startswith("AIRFLOW_VAR_")], name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({env[key] for env in settings.values()}) == 1, f"{key} differs between services"


def test_compose_waits_on_health(compose_config: dict[str, Any]):
    """Long-running services have healthchecks; Airflow starts after healthy Postgres/Redis and both inits."""
    services = compose_config["services"]
    for name, service in services.items():
        if name.endswith("-init"):
            assert service.get("restart") == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in [*AIRFLOW_COMPONENTS, "airflow-worker-1"]:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        assert depends_on["airflow-init"]["condition"] == "service_completed_successfully", name
        assert depends_on["minio-init"]["condition"] == "service_completed_successfully", name
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    volumes = set(compose_config["volumes"])
    assert {"postgres-data", "minio-data"} <= volumes
    assert any(volume.startswith("postgres-data:") for volume in _volume_strings(services["postgres"]))
    assert any(volume.startswith("minio-data:") for volume in _volume_strings(services["minio"]))


def _volume_strings(service: dict[str, Any]) -> list[str]:
    """Volumes as `source:target`, whichever syntax docker-compose printed them in."""
    result = []
    for volume in service.get("volumes", []):
        result.append(volume if isinstance(volume, str) else f"{volume['source']}:{volume['target']}")
    return result


def test_compose_airflow_settings_are_real_options(compose_config: dict[str, Any]):
    """Every AIRFLOW__SECTION__KEY is an option Airflow 3 knows, and aws_default parses as a MinIO connection."""
    from airflow.configuration import conf
    from airflow.models.connection import Connection

    known = conf.configuration_description
    env = compose_config["services"]["airflow-scheduler"]["environment"]
    unknown = []
    for variable in env:
        if variable.startswith("AIRFLOW__"):
            _, section, key = variable.split("__", 2)
            if key.lower() not in known.get(section.lower(), {}).get("options", {}):
                unknown.append(variable)
    assert unknown == []
    connection = Connection.from_json(env["AIRFLOW_CONN_AWS_DEFAULT"], conn_id="aws_default")
    assert connection.conn_type == "aws"
    assert connection.extra_dejson["endpoint_url"] == "http://minio:9000"
    assert connection.login == env["AWS_ACCESS_KEY_ID"]


def test_dockerfile_passes_hadolint():
    """hadolint reports nothing at all (info level included) on docker/Dockerfile."""
    assert HADOLINT.is_file(), f"{HADOLINT} missing: pip install -r requirements-dev.txt"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_installs_the_lock_with_hashes_then_the_project():
    """The image pip-installs requirements.lock with --require-hashes, then the project with --no-deps, non-root."""
    instructions = _dockerfile_instructions()
    base = next(arguments for instruction, arguments in instructions if instruction == "FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    copies = [arguments.split() for instruction, arguments in instructions if instruction == "COPY"]
    lock_copy = next(parts for parts in copies if parts[0] == "requirements.lock")
    target = lock_copy[-1]
    runs = [arguments for instruction, arguments in instructions if instruction == "RUN"]
    requirement_install = [run for run in runs if re.search(rf"pip install .*-r {re.escape(target)}(\s|$)", run)]
    assert requirement_install, f"no RUN pip-installs -r {target}"
    assert "--require-hashes" in requirement_install[0], "the image must refuse unhashed or altered packages"
    assert "--no-cache-dir" in requirement_install[0]
    assert not any(parts[0] in ("requirements.txt", "requirements-dev.txt") for parts in copies), (
        "the image installs the lock, not the top-level pins"
    )
    project_install = [run for run in runs if re.search(r"pip install .*--no-deps \.(\s|$)", run)]
    assert project_install, "no RUN pip-installs the project with --no-deps"
    assert runs.index(requirement_install[0]) < runs.index(project_install[0])
    sources = {source for parts in copies for source in parts[:-1] if not source.startswith("--")}
    assert {"pyproject.toml", "README.md", "crack_model/", "dags/", "plugins/"} <= sources
    for source in sorted(sources):
        assert _dockerignore_keeps(source.rstrip("/")), f".dockerignore drops {source}, which the Dockerfile copies"
    assert not _dockerignore_keeps(".venv") and not _dockerignore_keeps(".git")
    user = [arguments for instruction, arguments in instructions if instruction == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0"), user
    env = " ".join(arguments for instruction, arguments in instructions if instruction == "ENV")
    assert "AIRFLOW_HOME=/opt/airflow" in env


def test_requirements_are_exact_pins():
    """Every top-level requirement line is `name==version`: the locks are resolved from exact pins."""
    for path in (REQUIREMENTS, DEV_REQUIREMENTS):
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        requirements = [line for line in lines if line and line != "-r requirements.txt"]
        assert requirements, path.name
        loose = [line for line in requirements if not PIN.match(line)]
        assert loose == [], path.name


def test_locks_are_hashed_and_match_the_pins():
    """Both locks pin every package with sha256 hashes, hold every top-level pin at its version, and agree."""
    lock, dev_lock = _lock_entries(LOCK), _lock_entries(DEV_LOCK)
    for path, entries in ((LOCK, lock), (DEV_LOCK, dev_lock)):
        header = path.read_text().splitlines()[:2]
        assert "uv pip compile" in header[1] and "--generate-hashes" in header[1], f"{path.name}: {header}"
        assert entries, path.name
        for name, (requirement, options) in entries.items():
            assert PIN.match(requirement), f"{path.name}: {requirement}"
            hashes = [option for option in options if option.startswith("--hash")]
            assert hashes and all(HASH.match(option) for option in hashes), f"{path.name}: {name} has no sha256 hash"
    for pins, entries, path in ((_pins(REQUIREMENTS), lock, LOCK), (_pins(DEV_REQUIREMENTS), dev_lock, DEV_LOCK)):
        stale = {
            name: version
            for name, version in pins.items()
            if name not in entries or entries[name][0].split("==", 1)[1] != version
        }
        assert stale == {}, f"{path.name} does not hold these pins: run `make lock`"
    differ = {name for name, (requirement, _) in lock.items() if dev_lock.get(name, ("",))[0] != requirement}
    assert differ == set(), "the dev venv and the image would run different versions: run `make lock`"
    assert {"great-expectations", "pandas", "scipy", "jinja2", "keras", "apache-airflow"} <= set(lock)


def test_requirements_resolve_in_this_venv():
    """pip resolves requirements-dev.lock against this venv with nothing to install: the lock is what tests ran on."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-input", "--no-deps", "--require-hashes"]
    result = subprocess.run(
        [*command, "-r", str(DEV_LOCK)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Would install" not in result.stdout, result.stdout[-2000:]


def test_requirements_have_wheels_for_the_image(tmp_path: Path):
    """Every package of the image's lock has a cp311 manylinux x86_64 wheel: the slim image needs no compiler."""
    base = next(arguments for instruction, arguments in _dockerfile_instructions() if instruction == "FROM")
    image_python = re.fullmatch(r"python:(3\.11\.\d+)-slim-bookworm", base)
    assert image_python, base
    # The pins without their hashes: with hashes pip would download every archive (GBs) to check it, while the
    # question here is only whether a wheel exists; the hashes are checked by every real install (`make venv`).
    pins = tmp_path / "image-pins.txt"
    pins.write_text("".join(f"{requirement}\n" for requirement, _ in _lock_entries(LOCK).values()))
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-input", "--quiet", "--ignore-installed"]
    command += ["--only-binary=:all:", "--no-deps", "--python-version", image_python.group(1), "--implementation", "cp"]
    command += [part for platform in platforms for part in ("--platform", platform)]
    with_target = ["--target", str(PROJECT / "build" / "docker-wheel-check"), "-r", str(pins)]
    result = subprocess.run(
        command + with_target, capture_output=True, text=True, timeout=300, check=False, cwd=PROJECT
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_system_deps_script_is_idempotent():
    """scripts/system-deps.sh exits 0 and prints one line when its packages are present."""
    if any(shutil.which(tool) is None for tool in ("docker-compose", "chromium", "pg_isready", "redis-server")):
        pytest.skip("system packages missing: run scripts/system-deps.sh")
    result = subprocess.run(
        ["bash", str(PROJECT / "scripts" / "system-deps.sh")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    expected = "system-deps: docker-compose, chromium, postgresql and redis-server already present"
    assert result.stdout.strip().splitlines() == [expected]


def _shell_script(service: dict[str, Any]) -> str:
    """The `sh -c` script of a service as its container's shell gets it (compose's `$$` is a literal `$`)."""
    assert service["entrypoint"] == ["/bin/sh", "-c"], service.get("entrypoint")
    return service["command"][0].replace("$$", "$")


def test_minio_refuses_the_example_root_password(compose_config: dict[str, Any], tmp_path: Path):
    """MinIO's start script exits with a message while a CHANGE_ME is left, and compose needs the password set."""
    script = _shell_script(compose_config["services"]["minio"])
    base = {"PATH": os.environ["PATH"], "MINIO_ROOT_USER": "minio-admin"}
    refused = subprocess.run(["sh", "-c", script], env={**base, "MINIO_ROOT_PASSWORD": "CHANGE_ME"},
                             capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert refused.returncode == 1 and "replace CHANGE_ME" in refused.stderr, refused.stderr
    started = subprocess.run(["sh", "-c", script], env={**base, "MINIO_ROOT_PASSWORD": "a-real-secret-1"},
                             capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert started.returncode == 127 and "docker-entrypoint.sh" in started.stderr  # past the guard, on to MinIO
    without = tmp_path / "no-minio-password.env"
    without.write_text("".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines()
                               if not line.startswith("MINIO_ROOT_PASSWORD=")))  # fmt: skip
    result = _compose("config", "-q", env_file=without)
    assert result.returncode != 0 and "MINIO_ROOT_PASSWORD" in result.stderr, result.stderr


# Stands in for MinIO's `mc`: logs each call's arguments, keeps the policy document, fails an attachment with
# $MC_ATTACH_ERROR, and answers `stat --json` from the files under $MC_BUCKET as mc does (indented JSON, or its
# error and exit status 1).
FAKE_MC = r"""#!/bin/sh
echo "$*" >> "$MC_LOG"
case "$*" in
  "admin policy create "*) cp "$6" "$MC_LOG.policy.json" ;;
  "admin policy attach "*) if [ -n "$MC_ATTACH_ERROR" ]; then echo "$MC_ATTACH_ERROR" >&2; exit 1; fi ;;
  "stat --json local/inspections/"*)
    object="$MC_BUCKET/${3#local/inspections/}"
    if [ ! -f "$object" ]; then echo '{"status": "error", "error": {"message": "Object does not exist."}}'; exit 1; fi
    printf '{\n "status": "success",\n "size": %s,\n "type": "file"\n}\n' "$(wc -c < "$object" | tr -d ' ')" ;;
esac
"""


def _run_minio_init(
    script: str, tmp_path: Path, attach_error: str, objects: dict[str, int] | None = None
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run minio-init's script against a stand-in `mc` that logs its arguments and keeps the policy document.

    `objects` ({key: size}) are in the bucket already: `mc stat --json` answers for them as mc does (indented
    JSON), and for any other key with mc's error.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "mc.log"
    bucket = tmp_path / "bucket"
    for key, size in (objects or {}).items():
        (bucket / key).parent.mkdir(parents=True, exist_ok=True)
        (bucket / key).write_bytes(b"x" * size)
    fake = bin_dir / "mc"
    fake.write_text(FAKE_MC)
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
        "MC_LOG": str(log),
        "MC_BUCKET": str(bucket),
        "MC_ATTACH_ERROR": attach_error,
        "MINIO_ROOT_USER": "minio-admin",
        "MINIO_ROOT_PASSWORD": "root-secret-1",
        "CRACK_BUCKET": "inspections",
        "CRACK_S3_ACCESS_KEY": "crack-workflow",
        "CRACK_S3_SECRET_KEY": "workflow-secret-1",
    }
    result = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False)
    return result, log


def test_minio_workflow_user_gets_a_policy_of_its_bucket_only(compose_config: dict[str, Any], tmp_path: Path):
    """minio-init creates a policy from a JSON document scoped to the one bucket, attaches it, and drops readwrite."""
    script = _shell_script(compose_config["services"]["minio-init"])
    assert "|| true" not in script
    result, log = _run_minio_init(script, tmp_path, attach_error="")
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    create = next(call for call in calls if call.startswith("admin policy create local "))
    policy = create.split()[4]
    assert f"admin policy attach local {policy} --user crack-workflow" in calls
    assert not any(call.startswith("admin policy attach local readwrite") for call in calls)
    assert "admin policy detach local readwrite --user crack-workflow" in calls
    document = json.loads(Path(f"{log}.policy.json").read_text())
    granted = {(action, resource) for statement in document["Statement"] if statement["Effect"] == "Allow"
               for action in statement["Action"] for resource in statement["Resource"]}  # fmt: skip
    assert granted == {
        ("s3:ListBucket", "arn:aws:s3:::inspections"),
        ("s3:GetObject", "arn:aws:s3:::inspections/*"),
        ("s3:PutObject", "arn:aws:s3:::inspections/*"),
        ("s3:DeleteObject", "arn:aws:s3:::inspections/*"),
        ("s3:AbortMultipartUpload", "arn:aws:s3:::inspections/*"),  # boto3 cleans up a failed upload over 16 MB
        ("s3:ListMultipartUploadParts", "arn:aws:s3:::inspections/*"),
    }


def test_minio_init_writes_no_folder_markers_and_takes_back_the_old_keep_files(
    compose_config: dict[str, Any], tmp_path: Path
):
    """minio-init writes no object (an incoming/.keep was an upload outside a batch, alerted every night); the empty
    .keep files earlier versions wrote are removed, an object named .keep that holds bytes is left alone."""
    script = _shell_script(compose_config["services"]["minio-init"])
    earlier = {"incoming/.keep": 0, "labeled/.keep": 0, "holdout/.keep": 0, "models/.keep": 5}
    result, log = _run_minio_init(script, tmp_path, attach_error="", objects=earlier)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    writes = [call for call in calls if call.split()[0] in ("pipe", "cp", "put", "mv", "mirror")]
    assert writes == []
    removed = sorted(call.split()[-1] for call in calls if call.startswith("rm "))
    assert removed == [f"local/inspections/{folder}/.keep" for folder in ("holdout", "incoming", "labeled")]
    fresh, fresh_log = _run_minio_init(script, tmp_path / "fresh", attach_error="")
    assert fresh.returncode == 0 and "ready" in fresh.stdout, fresh.stderr
    assert not [call for call in fresh_log.read_text().splitlines() if call.startswith("rm ")]


def test_minio_init_tolerates_only_an_existing_attachment(compose_config: dict[str, Any], tmp_path: Path):
    """A re-run's "already in effect" passes; any other mc failure stops minio-init with mc's message."""
    script = _shell_script(compose_config["services"]["minio-init"])
    already = (
        "mc: <ERROR> Unable to make user/group policy association. The specified policy change is already in effect"
    )
    rerun, _ = _run_minio_init(script, tmp_path / "rerun", attach_error=already)
    assert rerun.returncode == 0 and "ready" in rerun.stdout, rerun.stderr
    denied, _ = _run_minio_init(script, tmp_path / "denied", attach_error="mc: <ERROR> Access Denied.")
    assert denied.returncode != 0 and "Access Denied" in denied.stderr
    assert "ready" not in denied.stdout


def test_minio_ports_listen_on_loopback_unless_configured(compose_config: dict[str, Any], tmp_path: Path):
    """The MinIO API and console are published on 127.0.0.1; MINIO_BIND=0.0.0.0 opts into every interface."""
    assert compose_config["services"]["minio"]["ports"] == ["127.0.0.1:9000:9000/tcp", "127.0.0.1:9001:9001/tcp"]
    everywhere = tmp_path / "public.env"
    everywhere.write_text(ENV_EXAMPLE.read_text() + "MINIO_BIND=0.0.0.0\n")
    result = _compose("config", env_file=everywhere)
    assert result.returncode == 0, result.stderr
    ports = yaml.safe_load(result.stdout)["services"]["minio"]["ports"]
    assert all(str(port).startswith("0.0.0.0:") for port in ports), ports


FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


def _env_file(tmp_path: Path, **settings: str | None) -> Path:
    """docker/.env.example with each CHANGE_ME replaced by a secret of the kind its comment asks for, then `settings`
    (a value replaces or adds the line, None drops it)."""
    from cryptography.fernet import Fernet

    generated = {"AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(), "AIRFLOW_API_SECRET_KEY": secrets.token_hex(32),
                 "AIRFLOW_JWT_SECRET": secrets.token_hex(64)}  # fmt: skip
    values: dict[str, str | None] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        name, separator, value = line.partition("=")
        if separator and not line.startswith("#"):
            values[name] = generated.get(name, secrets.token_hex(12)) if value == "CHANGE_ME" else value
    values.update(settings)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "real.env"
    path.write_text("".join(f"{name}={value}\n" for name, value in values.items() if value is not None))
    return path


def _run_airflow_init(
    tmp_path: Path, **settings: str | None
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """Run airflow-init's script with the environment compose gives it from a real .env (`_env_file`), against a
    stand-in `airflow` that logs each call's arguments; returns the result and the calls."""
    resolved = _compose("config", env_file=_env_file(tmp_path, **settings))
    assert resolved.returncode == 0, resolved.stderr
    init = yaml.safe_load(resolved.stdout)["services"]["airflow-init"]
    assert init["entrypoint"] == ["/bin/bash", "-c"]
    script = init["command"][0].replace("$$", "$")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "airflow.log"
    log.write_text("")
    fake = bin_dir / "airflow"
    fake.write_text('#!/bin/sh\nfor argument in "$@"; do printf "%s|" "$argument"; done >> "$AIRFLOW_LOG"\necho >> '
                    '"$AIRFLOW_LOG"\n')  # fmt: skip
    fake.chmod(0o755)
    # The image's python (with cryptography) is this venv's here.
    path = f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**{name: str(value) for name, value in init["environment"].items()}, "PATH": path, "AIRFLOW_LOG": str(log)}
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    return result, [line.rstrip("|").split("|") for line in log.read_text().splitlines()]


def test_airflow_logs_in_with_fab_and_init_creates_the_admin_from_env(compose_config: dict[str, Any], tmp_path: Path):
    """Every Airflow service runs the FAB auth manager; airflow-init migrates, then creates the Admin from .env."""
    for name, service in _airflow_services(compose_config).items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER, name
        assert not [key for key in env if "SIMPLE_AUTH_MANAGER" in key], name
    admin = {"AIRFLOW_ADMIN_USER": "ops-lead", "AIRFLOW_ADMIN_PASSWORD": "a-real-secret",
             "AIRFLOW_ADMIN_EMAIL": "ops-lead@example.org"}  # fmt: skip
    result, calls = _run_airflow_init(tmp_path / "real", **admin)
    assert result.returncode == 0, result.stderr
    assert calls[0] == ["db", "migrate"] and calls[-1] == ["version"]
    create = calls[1]
    assert create[:2] == ["users", "create"]
    options = dict(zip(create[2::2], create[3::2], strict=True))
    assert options["--role"] == "Admin" and options["--username"] == "ops-lead"
    assert options["--password"] == "a-real-secret" and options["--email"] == "ops-lead@example.org"
    # A CHANGE_ME left anywhere stops it before the database is touched.
    refused, calls = _run_airflow_init(tmp_path / "left", **{**admin, "AIRFLOW_ADMIN_PASSWORD": "CHANGE_ME"})
    assert refused.returncode == 1 and "replace every CHANGE_ME" in refused.stderr
    assert calls == []


@pytest.mark.parametrize(
    ("variable", "weak", "advice"),
    [
        ("AIRFLOW_JWT_SECRET", "short", "openssl rand -hex 64"),
        ("AIRFLOW_JWT_SECRET", "a" * 63, "openssl rand -hex 64"),
        ("AIRFLOW_API_SECRET_KEY", "s3cr3t", "openssl rand -hex 32"),
        ("AIRFLOW_FERNET_KEY", "not-a-fernet-key", "Fernet.generate_key()"),
        ("AIRFLOW_FERNET_KEY", "0123456789abcdef" * 2 + "0123456789ab", "Fernet.generate_key()"),  # 44 hex digits
    ],
)
def test_airflow_init_refuses_weak_secrets(tmp_path: Path, variable: str, weak: str, advice: str):
    """A JWT secret under 64 characters, an API secret key under 32 or a key Fernet cannot load stops airflow-init
    before the database is touched, naming the docker/.env variable and how to make one, never the secret."""
    refused, calls = _run_airflow_init(tmp_path, **{variable: weak})
    assert refused.returncode == 1 and calls == [], refused.stderr
    assert f"airflow-init: {variable} in docker/.env" in refused.stderr and advice in refused.stderr
    assert weak not in refused.stderr


def test_airflow_init_takes_fernet_keys_being_rotated(tmp_path: Path):
    """`new,old` Fernet keys, as Airflow's key rotation has them, pass the check."""
    from cryptography.fernet import Fernet

    rotating = f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}"
    result, calls = _run_airflow_init(tmp_path, AIRFLOW_FERNET_KEY=rotating)
    assert result.returncode == 0 and calls[0] == ["db", "migrate"], result.stderr


def test_the_store_is_the_bucket_minio_init_creates(tmp_path: Path):
    """CRACK_STORE is built from CRACK_BUCKET, so tasks use the bucket minio-init creates and grants; a CRACK_STORE
    left in docker/.env naming another store stops airflow-init (one naming the same bucket, as in old files, not)."""
    resolved = _compose("config", env_file=_env_file(tmp_path, CRACK_BUCKET="site-a-inspections"))
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    assert services["minio-init"]["environment"]["CRACK_BUCKET"] == "site-a-inspections"
    for name, service in _airflow_services({"services": services}).items():
        assert service["environment"]["CRACK_STORE"] == "s3://site-a-inspections", name
    refused, calls = _run_airflow_init(
        tmp_path / "old", CRACK_BUCKET="site-a-inspections", CRACK_STORE="s3://inspections"
    )
    assert refused.returncode == 1 and calls == []
    assert "CRACK_STORE=s3://inspections" in refused.stderr and "s3://site-a-inspections" in refused.stderr
    assert "delete that CRACK_STORE line" in refused.stderr and "exported in the shell" in refused.stderr
    same, calls = _run_airflow_init(tmp_path / "same", CRACK_BUCKET="site-a-inspections",
                                    CRACK_STORE="s3://site-a-inspections/")  # fmt: skip
    assert same.returncode == 0 and calls[0] == ["db", "migrate"], same.stderr


@pytest.mark.parametrize("variable", ["AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_ADMIN_USER", "AIRFLOW_ADMIN_EMAIL"])
def test_compose_has_no_default_admin(tmp_path: Path, variable: str):
    """Without the admin's name, password or e-mail in .env compose refuses to run, naming the missing one."""
    without = tmp_path / "no-admin.env"
    without.write_text("".join(line + "\n" for line in ENV_EXAMPLE.read_text().splitlines()
                               if not line.startswith(f"{variable}=")))  # fmt: skip
    result = _compose("config", "-q", env_file=without)
    assert result.returncode != 0 and variable in result.stderr, result.stderr
