# One command runs the service, one runs the tests; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: run test test-core check lint typecheck unit browser postgres audit openapi lock clean

# make run installs only the runtime pins (requirements-run.lock); the other targets add the dev set
$(RUN_STAMP): requirements-run.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-run.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check -q
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

## run: a cluster on 127.0.0.1:8500 with its data in ./data
run: $(RUN_STAMP)
	$(BIN)/peering serve

## test: lint, type-check, then the test suite with coverage
test: $(STAMP) lint typecheck unit interop

## test-core: the same gates with the fast core of the suite only (no slow reliability tier)
test-core: $(STAMP) lint typecheck postgres
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check peering tests bench scripts
	$(BIN)/ruff format --check peering tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) browser postgres
	$(BIN)/pytest --cov --cov-report=term -q

## interop: the official Consul Go client (interop/go) against real clusters; no Go: fails in CI, skipped elsewhere
.PHONY: interop
interop: $(STAMP)
	@go=$$(bash scripts/ensure-go.sh) && if [ -n "$$go" ]; then cd interop/go && \
	  GOTOOLCHAIN=local PEERING_PYTHON=$(CURDIR)/$(BIN)/python "$$go" test -mod=readonly -count=1 -timeout 10m -v ./...; fi

## postgres: a PostgreSQL server (15+) for the tests' throwaway clusters (Debian's package when missing; no server in CI: a failure)
postgres:
	bash scripts/ensure-postgres.sh

## browser: Debian's chromium for the docs-page test (installed when missing and possible)
browser:
	bash scripts/ensure-chromium.sh

## audit: known vulnerabilities in the locked dependencies (pip-audit)
audit: $(STAMP)
	bash scripts/audit.sh

## openapi: regenerate openapi/openapi.json from the code
openapi: $(STAMP)
	$(BIN)/peering openapi > openapi/openapi.json

## lock: re-resolve the pinned dependency set (requirements.lock) and its runtime part (requirements-run.lock)
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install -q '.[dev]' && .lockenv/bin/pip freeze --exclude peering > requirements.lock
	.lockenv/bin/python scripts/runtime_lock.py
	rm -rf .lockenv

clean:
	rm -rf $(VENV)
