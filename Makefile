# ado-dbt bridge — the two commands a fresh machine needs: `make demo` and `make test`.
# Both create .venv, install the package, and start what they need (Redis, PostgreSQL) as private
# processes on free ports from the system's binaries (installed with apt-get when missing and root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test unit integration lint demo clean lock audit deploy-check

help:
	@echo "make demo        set up and play the CI demo (ONCE=1: play once, exit 0 on success)"
	@echo "make test        set up and run lint + all tests (unit, contract, integration)"
	@echo "make unit        unit and contract tests only (fast)"
	@echo "make lint        ruff"
	@echo "make bench       (not in make test) the benchmark; writes docs/benchmarks.md"
	@echo "make soak        (not in make test) sustained events with random faults; SOAK_SECONDS, SOAK_RATE, SEED"
	@echo "make cluster     (not in make test; root) hosts as network namespaces and faults across them; ONLY=a,b"
	@echo "make deploy-check render each Kubernetes overlay with kubectl kustomize and validate every object"
	@echo "make lock        remake requirements/*.lock (pinned, with hashes) from pyproject.toml"
	@echo "make audit       pip-audit of requirements/runtime.lock (needs PyPI's or OSV's advisory data)"
	@echo "make clean       remove .venv and local state"

# Every package comes from requirements/dev.lock, pinned with its hash (the image installs runtime.lock).
$(STAMP): pyproject.toml requirements/dev.lock
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	  else echo "Python's venv module is missing: install it with 'sudo apt-get install python3-venv'"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check bridge workers tests
	$(BIN)/lint-imports --no-cache

test: venv lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: venv
	$(BIN)/python -m pytest tests/unit tests/contract $(PYTEST_ARGS)

integration: venv
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

demo: venv
	$(BIN)/bridge demo $(if $(ONCE),--once,)

# The base is validated offline by `make test`; this renders every overlay (kubectl's built-in kustomize).
deploy-check: venv
	$(BIN)/python -m tests.kubernetes_manifests

LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: venv
	$(BIN)/python -m pip install --quiet 'pip-tools>=7.4'
	$(BIN)/pip-compile $(LOCK_FLAGS) -o requirements/runtime.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra test -o requirements/dev.lock pyproject.toml

# pip-audit asks PyPI's JSON API (or OSV) which pinned versions have advisories. Where neither is reachable
# it cannot tell, and this target fails saying so rather than passing on no data.
audit: venv
	$(BIN)/python -m pip install --quiet 'pip-audit>=2.7'
	@$(BIN)/pip-audit --strict --require-hashes --disable-pip -r requirements/runtime.lock || { \
	  echo "make audit: no verdict (see above). If the advisory services (pypi.org/pypi/<name>/json, osv.dev) are \
	unreachable from here, run make audit where they are, e.g. in CI with internet access."; exit 1; }

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache .hypothesis *.egg-info bridge.db*

# Not part of `make test`: a sustained stream of events with faults injected at random.
SOAK_SECONDS ?= 120
SOAK_RATE ?= 5
.PHONY: soak
soak: venv
	$(BIN)/python -m tests.load.soak --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE) $(if $(SEED),--seed $(SEED),)

# Not part of `make test`: the real stack measured; prints a table and rewrites docs/benchmarks.md.
.PHONY: bench
bench: venv
	$(BIN)/python -m tests.load.bench

# Not part of `make test` (needs root): hosts as network namespaces, faults across them; writes docs/reliability.md.
.PHONY: cluster
cluster: venv
	$(BIN)/python -m tests.load.cluster $(if $(ONLY),--only $(ONLY),)
