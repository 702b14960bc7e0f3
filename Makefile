# stockpipe: `make run` runs the pipeline locally, `make test` tests it. `make help` lists the rest.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
LOCAL_DIR ?= $(CURDIR)/.local
export STOCKPIPE_LOCAL_DIR := $(LOCAL_DIR)
# One BLAS thread per process: with two, model fits under load ran 50-100x slower here.
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

PYPROJECTS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
# Loads .local/env (written by infra-up) into a recipe's shell.
WITH_ENV := set -a; source $(LOCAL_DIR)/env; set +a;
SERVICES := producer ingestor analytics notifier
SERVICES += dashboard
SERVICES += forecaster
# Each service's /metrics /healthz /readyz port under `make run` (one machine, one port each).
PORT_producer := 8001
PORT_ingestor := 8002
PORT_analytics := 8003
PORT_notifier := 8006
PORT_forecaster := 8004
PORT_dashboard := 8050
# The dashboard's Pipeline health page reads the other services' /metrics.
comma := ,
empty :=
space := $(empty) $(empty)
export DASHBOARD_METRICS_URLS ?= $(subst $(space),$(comma),$(foreach s,$(filter-out dashboard,$(SERVICES)),$(s)=http://127.0.0.1:$(PORT_$(s))/metrics))

.PHONY: cluster-test cluster-down
.PHONY: help deps system-deps infra-up infra-down infra-status topics db-migrate run test test-unit lint images images-test bench soak clean
.PHONY: chart-tools helm-lint chart-test kind-up kind-down

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

deps: system-deps $(VENV)/.installed ## install what is missing: Java, Maven, PostgreSQL, kcat, Kafka jars, .venv

system-deps:
	@deploy/local/install-deps.sh

# The analytics kernel (C) is compiled at install: a change to it re-installs.
$(VENV)/.installed: requirements-dev.txt $(PYPROJECTS) $(wildcard services/*/setup.py services/*/src/stockpipe/*/*.c)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

infra-up: deps ## start Kafka and PostgreSQL on 127.0.0.1 (unless KAFKA_BOOTSTRAP_SERVERS / POSTGRES_DSN are set)
	@deploy/local/infra.sh up

infra-down: ## stop the local Kafka and PostgreSQL
	@deploy/local/infra.sh down

infra-status: ## show whether the local Kafka and PostgreSQL run
	@deploy/local/infra.sh status

topics: infra-up ## create the Kafka topics (idempotent)
	@$(WITH_ENV) $(PY) -m stockpipe.common.topics

db-migrate: infra-up ## apply the database migrations in db/ (idempotent)
	@$(WITH_ENV) $(PY) -m stockpipe.common.migrate

run: deps ## run the whole pipeline locally, logs prefixed; Ctrl-C stops it (and the servers it started)
	@echo "run: the dashboard will be on http://127.0.0.1:$(PORT_dashboard)/ (API: /api/v1, OpenAPI: /api/v1/openapi.json)"
	@deploy/local/run.sh $(PY) $(foreach s,$(SERVICES),$(s)=$(PORT_$(s)))

test: deps lint ## lint, unit and integration tests (starts its own Kafka and PostgreSQL under .local/test)
	$(PY) -m pytest

lint: deps ## ruff over the whole tree (settings in pyproject.toml)
	$(VENV)/bin/ruff check libs services tests bench deploy

test-unit: deps ## unit tests only (no Kafka, no PostgreSQL)
	$(PY) -m pytest tests/unit

images: ## build the image of every service in services/ (stockpipe-<service>:<version>, :latest; Docker + BuildKit; see deploy/docker)
	@deploy/docker/build.sh

images-test: system-deps images ## smoke-test the images in locked-down containers against a local Kafka + PostgreSQL
	@SMOKE_LOCAL_DIR=$(LOCAL_DIR)/docker deploy/docker/smoke-test.sh

chart-tools: ## install helm, kubeconform, promtool and offline Kubernetes/CRD schemas into a cache outside the clone
	@deploy/helm/tools/install.sh

helm-lint: chart-tools ## helm lint --strict, helm template and kubeconform of every deploy/helm/stockpipe/ci/*-values.yaml
	@deploy/helm/lint.sh

chart-test: deps chart-tools ## the chart's tests: rendered objects, promtool rules, chart-vs-code drift, kind steps
	$(PY) -m pytest tests/deploy/test_chart.py tests/deploy/test_chart_monitoring.py tests/deploy/test_chart_drift.py tests/deploy/test_kind.py

kind-up: ## a local kind cluster: images built and loaded, kube-prometheus-stack, the chart; prints the URLs
	@deploy/kind/kind-up.sh

kind-down: ## delete the kind cluster made by kind-up
	@deploy/kind/kind-down.sh
cluster-test: deps ## the Helm chart on a real single-node Kubernetes built here from Go modules (root; tests/cluster/run.sh)
	@tests/cluster/run.sh

cluster-down: ## stop the cluster-test cluster and remove everything it made (after an interrupted run)
	@python3 deploy/cluster/cluster.py down

bench: deps ## benchmarks (message decoding, indicator engine, ingest vs COPY, analytics end to end); figures in bench/results/
	$(PY) bench/decode.py
	$(PY) bench/indicators.py
	$(PY) bench/ingest.py
	$(PY) bench/analytics.py
	$(PY) bench/dashboard.py
	$(PY) bench/forecast.py

soak: deps ## 10 minutes at 5,000 bars/s through producer, analytics, ingestor: memory, lag, latency (bench/results/soak.json)
	$(PY) bench/soak.py

clean: ## stop local infrastructure (make run's, the tests', the benchmarks') and delete .venv and .local
	@for d in $(LOCAL_DIR) $(LOCAL_DIR)/test $(LOCAL_DIR)/bench $(LOCAL_DIR)/docker; do \
		[ -d $$d ] && STOCKPIPE_LOCAL_DIR=$$d deploy/local/infra.sh down || true; done
	rm -rf $(VENV) $(LOCAL_DIR)
