# ProofNet — one command to set up and run the demo, one to set up and run the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck imports compose browser pytest bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The main job: a local testnet where honest solvers are paid and a cheater is slashed.
demo: install
	$(BIN)/proofnet demo

## Lint, type-check, import contracts, then the whole test suite.
test: lint typecheck imports compose browser pytest

lint: install
	$(BIN)/ruff check protocol contracts_sim services tests bench
	$(BIN)/ruff format --check protocol contracts_sim services tests bench

typecheck: install
	$(BIN)/mypy --strict protocol
	$(BIN)/mypy --strict contracts_sim services tests

imports: install
	$(BIN)/lint-imports
	$(BIN)/python -m contracts_sim.migrations check

compose:
	bash scripts/check-compose.sh

## The explorer's browser test drives Debian's chromium (installed here when missing).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the explorer's browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

pytest: install
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python bench/bench_exact.py
	$(BIN)/python bench/bench_ledger.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
