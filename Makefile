# One entry point for set-up, tests, the demo and the benchmarks. Everything a target needs
# (the virtualenv, the local Kafka broker) is set up by the target itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := bash scripts/kafka/kafka.sh

.PHONY: venv native native-clean kafka-up kafka-down lint typecheck test unit demo run stop bench schemas clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The hot path compiled with mypyc (core/native.py): what is missing or older than its source.
# Without a C compiler the sources run as they are.
native: venv
	$(PY) -m core.native build

native-clean:
	$(PY) -m core.native clean

kafka-up:
	$(KAFKA) up

kafka-down:
	$(KAFKA) down

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

schemas: venv
	$(PY) -m schemas.export

# The whole suite, integration tests on the real broker included; the broker goes down after.
# The console's browser test needs Debian's chromium: scripts/browser.sh installs it.
test: venv lint typecheck native
	bash scripts/browser.sh
	$(KAFKA) up
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; $(KAFKA) down; exit $$status

# Pure-function tests only: no broker.
unit: native
	$(PY) -m pytest -m 'not kafka' $(PYTEST_ARGS)

demo: native
	$(KAFKA) up
	$(PY) -m devtools.demo

# A worker, the API and a jsonl sink in the background for trying it (README, Try it).
run: native
	$(KAFKA) up
	bash scripts/run.sh up

stop:
	bash scripts/run.sh down

# The benchmark suite (docs/benchmarks/report.md); BENCH_ARGS=--quick for a smoke run.
bench: native
	$(KAFKA) up
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean: stop
	$(KAFKA) down
	-$(PY) -m core.native clean
	rm -rf $(VENV) .cache var
