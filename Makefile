# modelmeter - `make help` lists the targets. Every target sets up .venv/ first when needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MM := $(BIN)/modelmeter
KAFKA := ops/kafka/kafka.sh
S3 := ops/s3/s3proxy.sh
DATE ?=
DEMO_EVENTS ?= 200000
DEMO_DAYS ?= 30
date_opt = $(if $(DATE),--date $(DATE),)
# pytest-xdist workers: make test's mostly wait for brokers and consumers (more workers than
# cores pays; each starts its own broker), make test-unit's compute (one per core). With
# --dist loadgroup the tests of an xdist_group mark (a module whose module-scoped fixture
# is costly) run on one worker; every other test goes to the next free worker.
TEST_WORKERS ?= 4
UNIT_TEST_WORKERS ?= 2

.PHONY: help setup kafka-up kafka-down s3-up s3-down demo daily-report dq test test-unit bench chaos lint clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/modelmeter: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || \
	  { echo "make: error: Python 3.11+ is required as '$(PYTHON)' (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
	@echo "setup: creating $(VENV)/ and installing modelmeter with its dependencies" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

setup: $(BIN)/modelmeter ## create .venv/ and install the project (the modelmeter command)

kafka-up: ## start the local Kafka broker on 127.0.0.1:9092 (fetches the jars once)
	@$(KAFKA) up

kafka-down: ## stop the local Kafka broker started by kafka-up
	@$(KAFKA) down

s3-up: ## start the local S3 API server (S3Proxy) on 127.0.0.1:9000; prints its client env (export lines)
	@$(S3) up

s3-down: ## stop the local S3 API server started by s3-up
	@$(S3) down

demo: setup kafka-up ## end to end: simulate ~30 days of traffic, consume, build, check, report
	@echo "== 1/5 simulate $(DEMO_EVENTS) events over $(DEMO_DAYS) days" >&2
	@$(MM) simulate --events $(DEMO_EVENTS) --days $(DEMO_DAYS) --seed 7 --bad-fraction 0.002 --duplicate-fraction 0.005 --kafka-client confluent
	@echo "== 2/5 consume until idle" >&2
	@$(MM) consume --until-idle 5 --progress-seconds 2
	@echo "== 3/5 build the warehouse" >&2
	@$(MM) build
	@echo "== 4/5 data-quality checks for yesterday" >&2
	@$(MM) dq || echo "(data-quality checks reported failures; see above)" >&2
	@echo "== 5/5 yesterday's report" >&2
	@mkdir -p reports
	@$(MM) report --format html --output reports/daily-report.html
	@$(MM) report --format text
	@echo "HTML report: $(CURDIR)/reports/daily-report.html" >&2

daily-report: setup ## the daily report (DATE=YYYY-MM-DD, default yesterday); rebuilds when the lake is newer
	@$(MM) build --if-stale
	@$(MM) report $(date_opt) --format text

dq: setup ## data-quality checks (DATE=YYYY-MM-DD, default yesterday)
	@$(MM) dq $(date_opt)

test: setup lint ## lint, then unit and integration tests against real brokers the tests start themselves
	@$(KAFKA) fetch
	@$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup

test-unit: setup ## the broker-free tests only (tests/unit, -m "not kafka and not s3"): no Java, no broker
	@$(BIN)/pytest -q -n $(UNIT_TEST_WORKERS) --dist loadgroup -m "not kafka and not s3" tests/unit

bench: setup ## benchmarks (JSON to stdout and bench/results.json)
	@$(KAFKA) fetch
	@$(BIN)/python bench/run.py

chaos: setup ## fault injection (kills, broker restart, rebalances, compaction kills; CHAOS_ARGS=--object-store: a bucket); verifies exactly-once
	@$(KAFKA) fetch
	@$(BIN)/python ops/chaos.py $(CHAOS_ARGS)

lint: setup ## ruff (lint and format check) and mypy
	@$(BIN)/ruff check pipeline tests bench ops
	@$(BIN)/ruff format --check pipeline tests bench ops
	@$(BIN)/mypy pipeline

clean: ## remove local data, reports and caches (keeps .venv and the Kafka jars)
	rm -rf data reports .pytest_cache
