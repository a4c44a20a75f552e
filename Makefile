# The few targets people type. Each sets itself up: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Offline machines: use the ImageNet weights shipped beside the project when present.
SHARED_WEIGHTS := $(abspath ../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5)
export CRACK_MODEL_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)),$(SHARED_WEIGHTS),imagenet)
export TF_CPP_MIN_LOG_LEVEL ?= 2
DEMO_OUT ?= build/demo

.PHONY: venv demo airflow test test-fast lint bench clean system-deps services

# Installs exactly the hashed lock (every package, transitive ones too), then the project without deps.
$(STAMP): requirements-dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

.PHONY: lock deps-check

# Re-resolve the locks after editing pyproject.toml or requirements*.txt (needs PyPI). Versions already in a
# lock are kept unless a pin moved; `make lock LOCK_FLAGS=--upgrade` takes the newest allowed of everything.
# The upstream Airflow constraints file is applied when vendored at $(AIRFLOW_CONSTRAINTS) (see README).
# Resolved for CPython 3.11.7 (this machine's; the image has 3.11.14) on glibc 2.36 x86_64 (Debian bookworm).
AIRFLOW_CONSTRAINTS := constraints/airflow-3.3.2-py3.11.txt
LOCK_FLAGS ?=
UV_COMPILE = $(BIN)/uv pip compile --python-version 3.11.7 --python-platform x86_64-manylinux_2_36 --quiet \
	--generate-hashes $(if $(wildcard $(AIRFLOW_CONSTRAINTS)),--constraint $(AIRFLOW_CONSTRAINTS)) $(LOCK_FLAGS)
lock: $(STAMP)
	$(UV_COMPILE) pyproject.toml requirements.txt --extra airflow --extra fab --output-file requirements.lock
	$(UV_COMPILE) pyproject.toml requirements-dev.txt --all-extras --constraint requirements.lock \
		--output-file requirements-dev.lock

# Every import in crack_model/, dags/ and plugins/ is declared in pyproject.toml, and nothing declared is unused.
deps-check: $(STAMP)
	$(BIN)/deptry .

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m demo.run --out $(DEMO_OUT)

# The Airflow UI on http://127.0.0.1:8080 with the DAGs and the ops view (reads the demo's store).
airflow: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m demo.standalone

# Debian packages some tests need (docker-compose to validate the compose file, chromium for the UI test).
system-deps:
	@bash scripts/system-deps.sh

# PostgreSQL and Redis for the distributed (CeleryExecutor) test; started only if not answering.
services:
	@bash scripts/ensure-services.sh

# Two processes, each taking whole files (module fixtures, such as a DAG run, are built once), in collection order
# (tests/conftest.py puts the longest first; xdist would otherwise sort files by test count): the suite is about a
# third CPU-idle in one (servers starting, DAG runs polled), so two finish it sooner on 2 cores (times: README).
# Each process can hold ~3 GB (TensorFlow, an Airflow server); TEST_WORKERS=1 runs the suite in one.
TEST_WORKERS ?= 2
test: $(STAMP) system-deps services
	$(BIN)/python -m pytest -q --durations=25 $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# The unit tier: tests/unit mirrors crack_model; no services, nothing installed beyond the venv.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit -m "not slow"

# Lint, strict types (mypy over crack_model, plugins and dags; settings in pyproject.toml), the
# Dockerfile, and undeclared or unused dependencies.
lint: $(STAMP)
	$(BIN)/ruff check crack_model tests demo dags plugins bench
	$(BIN)/ruff format --check crack_model tests demo dags plugins bench
	$(BIN)/mypy
	$(BIN)/hadolint docker/Dockerfile
	$(BIN)/deptry .

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf build .pytest_cache
