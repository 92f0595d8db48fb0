# Fieldpool: `make run` serves the demo city, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := dispatch/web/vendor/.built
PORT ?= 8000
export PORT
# Migrations run as the tables' owner; the API, worker and CLI as a role that owns nothing
# (created and granted by `fieldpool db upgrade`).
export MIGRATION_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool
export DATABASE_URL ?= postgresql+psycopg://fieldpool_app:fieldpool_app@127.0.0.1:5432/fieldpool
export TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool_test
export REDIS_URL ?= redis://127.0.0.1:6379/0
export FIELDPOOL_DEMO_PASSWORD ?= demo

.DEFAULT_GOAL := help
.PHONY: help install services browser migrate seed run worker test fuzz bench bench-grabs lint simulate

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(WEB_STAMP): web/package-lock.json scripts/build-web.sh
	@bash scripts/build-web.sh
	touch $(WEB_STAMP)

install: $(STAMP) $(WEB_STAMP) ## create .venv, install the project with its dev tools and the pages' npm libraries

services: ## make sure PostgreSQL+PostGIS and Redis run (installs them as root when missing)
	@bash scripts/ensure-services.sh

.env:
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > .env
	@echo "wrote .env with a fresh SECRET_KEY"

browser: ## make sure Chromium and a CJK font are there for the browser tests (installs as root)
	@bash scripts/ensure-browser.sh

migrate: install services .env ## apply the database migrations
	$(BIN)/fieldpool db upgrade

seed: migrate ## load the demo city (idempotent)
	$(BIN)/fieldpool seed demo

worker: install services ## run a background worker with the scheduler
	$(BIN)/fieldpool worker

run: seed ## install, migrate, seed, start the API and a worker
	@echo ""
	@echo "  Fieldpool on http://127.0.0.1:$(PORT), one API process per core (WEB_CONCURRENCY to choose)"
	@echo "    console    http://127.0.0.1:$(PORT)/console   (dispatchers, clerks, payroll, admin)"
	@echo "    technician http://127.0.0.1:$(PORT)/m/tech    (phones)"
	@echo "    report     http://127.0.0.1:$(PORT)/m/report  (subscribers, signed in through WeChat)"
	@echo "    API docs   http://127.0.0.1:$(PORT)/docs"
	@echo "    readiness  http://127.0.0.1:$(PORT)/readyz"
	@echo "  demo log-ins (password: $(FIELDPOOL_DEMO_PASSWORD)):"
	@echo "    admin, dispatcher.xl, clerk.xl, dispatcher.eh, dispatcher.xl.g01, payroll, manager.xl, manager.eh,"
	@echo "    tech01 … tech40"
	@echo ""
	@$(BIN)/fieldpool worker & worker=$$!; trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
	  $(BIN)/fieldpool serve --port $(PORT)

test: install services browser ## run the whole suite on real PostgreSQL+PostGIS and Redis
	$(BIN)/pytest -q

fuzz: install services ## the Schemathesis run of every operation, longer: coverage phase too, FUZZ_EXAMPLES (50) each
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50} FUZZ_PHASES=$${FUZZ_PHASES:-examples,coverage,fuzzing} \
	  $(BIN)/pytest -q tests/api/test_fuzz.py

bench: install services ## load at the door (64 clients vs GET /me), nearest, workload, grabs, webhooks, lists, the simulation headline, a 10-min soak
	$(BIN)/python -m tests.bench

bench-grabs: install services ## only the grab benchmark (issue 4): pool vs SELECT ... FOR UPDATE, with floors
	$(BIN)/python -m tests.bench grabs

# Its own database (dropped and seeded again from a template) and Redis (flushed): never the deployment's.
export SIMULATION_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/fieldpool_simulation
export SIMULATION_REDIS_URL ?= redis://127.0.0.1:6379/13

simulate: install services ## a city-day under every dispatch policy: the scorecard, PNG charts in var/simulation/
	$(BIN)/fieldpool simulate --city fixtures/ --day 2026-11-16 --seed 7 --out var/simulation

lint: install ## ruff, mypy and the layer contract
	$(BIN)/ruff check .
	$(BIN)/mypy dispatch geo grab_pool wechat technicians workload simulation
	$(BIN)/lint-imports
