# The README's two commands: `make demo` and `make test`. Both build .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck imports schema-check pytest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/together-reconcile demo

test: lint typecheck imports schema-check workflow-security pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# Regenerate the account JSON Schema: the committed copy editors use, and the packaged copy
# `validate` applies (src/together_reconcile/config/account.schema.json).
.PHONY: schema
schema: $(STAMP)
	$(BIN)/together-reconcile schema > schemas/account.schema.json
	cp schemas/account.schema.json src/together_reconcile/config/account.schema.json

schema-check: $(STAMP)
	$(BIN)/together-reconcile schema --check

pytest: $(STAMP)
	$(BIN)/pytest -m "not slow"

# The slow proofs (real processes under load and faults: tests/test_faults.py; the workflows'
# own shell steps against the sandbox): left out of `make test` to keep it fast; `.ci/run` and
# ci.yml run them too.
.PHONY: test-slow
test-slow: $(STAMP)
	$(BIN)/pytest -m slow -p no:cacheprovider

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

# The slow operations proofs (issue 14), not part of `make test`: a real Prometheus scraping
# serve, real nginx in front of two replicas on PostgreSQL (rolling restart, slow clients,
# OAuth across replicas), the container image built from a debootstrapped base and run with
# podman. Bounded: 30 minutes in all; each test stops what it started.
.PHONY: test-ops
test-ops: $(STAMP)
	TOGETHER_OPS_TESTS=1 timeout --kill-after=30 1800 $(BIN)/pytest -p no:cacheprovider tests/ops

# Mutation testing of the core (issue 16): slow, so not part of `make test`. The dev extra
# brings mutmut; a .venv made before it was added gets it here. ARGS are passed on, e.g.
# `make mutation ARGS="--only secrets.py --max-children 1"`.
.PHONY: mutation
mutation: $(STAMP)
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/python -m pip install --quiet 'mutmut>=3.8,<4'
	$(BIN)/python tools/mutation.py $(ARGS)

clean:
	rm -rf $(VENV) .together .pytest_cache .mypy_cache .ruff_cache mutants
