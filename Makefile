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

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

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

test: $(STAMP) system-deps services
	$(BIN)/python -m pytest -q

test-fast: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check crack_model tests demo dags plugins bench
	$(BIN)/ruff format --check crack_model tests demo dags plugins bench
	$(BIN)/mypy
	$(BIN)/hadolint docker/Dockerfile

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf build .pytest_cache
