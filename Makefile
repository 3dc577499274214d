# ado-dbt bridge — the two commands a fresh machine needs: `make demo` and `make test`.
# Both create .venv, install the package, and start what they need (Redis, PostgreSQL) as private
# processes on free ports from the system's binaries (installed with apt-get when missing and root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv test unit integration lint demo clean

help:
	@echo "make demo        set up and play the CI demo (ONCE=1: play once, exit 0 on success)"
	@echo "make test        set up and run lint + all tests (unit, contract, integration)"
	@echo "make unit        unit and contract tests only (fast)"
	@echo "make lint        ruff"
	@echo "make bench       (not in make test) the benchmark; writes docs/benchmarks.md"
	@echo "make soak        (not in make test) sustained events with random faults; SOAK_SECONDS, SOAK_RATE, SEED"
	@echo "make clean       remove .venv and local state"

$(STAMP): pyproject.toml
	@$(PYTHON) -c "import venv, ensurepip" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	  else echo "Python's venv module is missing: install it with 'sudo apt-get install python3-venv'"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
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
