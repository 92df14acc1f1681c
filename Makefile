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

test: lint typecheck schema-check workflow-security pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

schema-check: $(STAMP)
	$(BIN)/together-reconcile schema --check

pytest: $(STAMP)
	$(BIN)/pytest

# The workflows' security audit (issue 15): zizmor, offline, its strictest persona; any finding
# above "low" fails. tests/test_workflow_security.py checks what may run next to a secret.
.PHONY: workflow-security lock
workflow-security: $(STAMP)
	$(BIN)/zizmor --offline --no-progress --persona auditor --min-severity medium .github/workflows/

# requirements/ci.lock: the hash-pinned dependencies (and build backend) that the workflow jobs
# holding secrets install with `pip install --require-hashes`. Run after changing dependencies
# in pyproject.toml; `make lock ARGS=--upgrade` moves every pin to the newest allowed version.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --all-build-deps --strip-extras --allow-unsafe \
	  --no-emit-find-links --no-emit-index-url --no-emit-trusted-host $(ARGS) \
	  --output-file requirements/ci.lock pyproject.toml

clean:
	rm -rf $(VENV) .together .pytest_cache .mypy_cache .ruff_cache
