# synthner developer commands. `make test` and `make demo` set everything up themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help install test check lint typecheck unit demo bench bench-generator snapshots constraints clean deploy-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: ## create .venv with every package installed editable, plus the dev tools
	@bash scripts/bootstrap.sh

test: install ## the test command: broker check, lint, types, then every test tier against the real RabbitMQ
	@bash scripts/ensure-rabbitmq.sh
	@bash scripts/ensure-browser.sh
	@$(MAKE) --no-print-directory check
	$(PY) -m pytest $(PYTEST_ARGS)

check: lint typecheck ## lint and type-check

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy shared/src services/generator/src services/annotator/src services/trainer/src cli/src \
		services/ner-api/src shared/tests services/generator/tests cli/tests tests conftest.py benchmarks deploy/llama-cpp services/trainer/tests services/annotator/tests scripts/device

unit: install ## the quick tests: no broker, no fine-tune, no compiler, no llama.cpp (`make test` runs them all)
	$(PY) -m pytest -m "not rabbitmq and not slow" $(PYTEST_ARGS)

demo: install ## the main job: synthner demo (local LLM -> annotate -> train -> evaluate -> serve -> report.html)
	@bash scripts/ensure-rabbitmq.sh || echo "no RabbitMQ: synthner demo runs the stages in one process"
	$(VENV)/bin/synthner demo $(DEMO_ARGS)

deploy-check: install ## offline validation of Dockerfiles, compose.yaml and every k8s overlay (also part of make test)
	$(PY) -m tests.deploy.checks

bench: install ## broker throughput, annotator alignment (NCBI-disease, MEDDOCAN dev) and annotator throughput
	@bash scripts/ensure-rabbitmq.sh
	$(PY) benchmarks/broker_throughput.py $(BENCH_ARGS)
	$(PY) benchmarks/alignment.py --gold ../shared/data/ncbi_disease/dev.jsonl
	$(PY) benchmarks/alignment.py --gold ../shared/data/meddocan/dev.jsonl
	$(PY) benchmarks/annotator_throughput.py

bench-generator: install ## generator throughput (local LLM server, fixed latency) and leak-gate recall/fpr
	@bash scripts/ensure-rabbitmq.sh
	$(PY) benchmarks/generator_throughput.py $(BENCH_ARGS)
	$(PY) benchmarks/leak_gate.py

snapshots: install ## regenerate the contract JSON-schema snapshots after an intended change
	SYNTHNER_UPDATE_SNAPSHOTS=1 $(PY) -m pytest -q tests/contracts

constraints: install ## re-pin constraints.txt from the current environment
	@(echo "# Exact versions of everything in the development environment (regenerate: make constraints)."; \
	  $(VENV)/bin/pip freeze --exclude-editable | grep -v '^-e' | sed -E 's/^(torch==[0-9.]+)\+[a-z0-9]+$$/\1/') > constraints.txt

clean: ## remove the environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
