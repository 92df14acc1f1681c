# The README's two commands: `make demo` and `make test`. Both build .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck schema-check pytest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/together-reconcile demo

test: lint typecheck schema-check pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

schema-check: $(STAMP)
	$(BIN)/together-reconcile schema --check

pytest: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .together .pytest_cache .mypy_cache .ruff_cache
