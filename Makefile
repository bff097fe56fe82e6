# Quittance: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN := $(UV) run --frozen --no-sync
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv

.DEFAULT_GOAL := help
.PHONY: help install up chaos k8s test conformance scan security-lint audit audit-offline advisories test-system test-unit test-integration test-e2e fuzz lint typecheck asyncapi bench ci clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(UV):
	@# Only Python is assumed: uv comes from PyPI into a private folder.
	$(PYTHON) -m venv $(TOOLS) || $(PYTHON) -m pip install --quiet --target $(TOOLS)/lib uv==$(UV_VERSION)
	@if [ -x $(TOOLS)/bin/pip ]; then $(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); \
	 else mkdir -p $(TOOLS)/bin && ln -sf ../lib/bin/uv $(UV); fi

.venv/.synced: $(UV) uv.lock pyproject.toml shared/pyproject.toml devstack/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

install: .venv/.synced ## Install the workspace (uv, one lock file)

up: install ## Run the whole system on its embedded defaults (Ctrl-C stops it); TLS=1 serves HTTPS with a local CA
	$(RUN) quittance-devstack up $(if $(TLS),--tls)

test: install ## Run the suite against real servers (embedded unless QUITTANCE_TEST_* say otherwise); `make test-system` and `make fuzz` run the rest
	$(RUN) lint-imports
	$(RUN) pytest -m "not fuzz and not system and not network" --conformance var/conformance

conformance: install ## The whole suite, then the privacy conformance report in var/conformance (report.md, report.html)
	$(RUN) pytest -m "not network" --conformance var/conformance

scan: security-lint audit ## The security scans: static lint, then the dependency audit and its live test
	$(RUN) pytest -m network

security-lint: install ## Static security lint (ruff's bandit rules) over the project
	$(RUN) python -m devstack.security_scan lint

audit: install ## Vulnerability audit of uv.lock's pins (pip-audit, PyPI's advisory data): fails on a fixable one
	$(RUN) python -m devstack.security_scan audit

audit-offline: install ## The same audit against the advisories kept in security/advisories (what CI runs: no network needed)
	$(RUN) python -m devstack.security_scan audit --offline

advisories: install ## Take a new advisory snapshot for every locked package: make advisories ADVISORY_DB=<clone of pypa/advisory-database>
	@test -n "$(ADVISORY_DB)" || { echo "set ADVISORY_DB to a clone of https://github.com/pypa/advisory-database"; exit 2; }
	$(RUN) python -m devstack.security_scan advisories "$(ADVISORY_DB)"

test-system: install ## The runs of minutes: `make up` as a user runs it, the dashboard in Chromium, the stack in TLS mode, two consumer instances
	$(RUN) pytest -m system

test-unit: install ## Fast tests: pure rules and handler unit tests
	$(RUN) pytest -m "not integration and not e2e"

test-integration: install ## Tests against the real PostgreSQL and broker
	$(RUN) pytest -m integration

test-e2e: install ## The four services as processes, driven over HTTP
	$(RUN) pytest -m e2e

fuzz: install ## The API fuzz run over every HTTP service, with a fresh seed (FUZZ_SEED=<n> repeats one)
	FUZZ_SEED=$${FUZZ_SEED:-$$RANDOM$$RANDOM} FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-50} $(RUN) pytest -m fuzz services/billing/tests/integration/test_billing_fuzz.py tests/e2e/test_fuzz_consumer_services.py

lint: install ## ruff and the services-never-import-each-other check
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports

typecheck: install ## mypy, strict
	$(RUN) mypy

chaos: install ## Load with kill -9 of every service and PostgreSQL for CHAOS_MINUTES (5), then check nothing was lost or doubled (CHAOS_INSTANCES=2: two instances of each service)
	$(RUN) python -m devstack.chaos --minutes $${CHAOS_MINUTES:-5} --instances $${CHAOS_INSTANCES:-1} $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

k8s: install ## Regenerate deploy/k8s (Kubernetes and Strimzi manifests) from the services and topics
	$(RUN) python -m devstack.k8s deploy/k8s

asyncapi: install ## Regenerate docs/asyncapi.yaml from the contracts and subscribers
	$(RUN) python -m shared.asyncapi > docs/asyncapi.yaml

bench: install ## Print one JSON line per metric with its raw-infrastructure baseline (BENCH=name runs one)
	$(RUN) python -m bench $(BENCH)

ci: lint typecheck test ## What .ci/run does

clean: ## Remove the environment and local data
	rm -rf .venv $(TOOLS) var
