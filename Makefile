# The two commands of the README: `make run` and `make test`. Both install what is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test deps system-deps lint check bench clean

system-deps:
	@deploy/system-deps.sh $(if $(filter test,$(MAKECMDGOALS)),test,run)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

deps: system-deps $(STAMP)

run: deps
	$(VENV)/bin/orrery serve --data-dir ./data --local-hosts 1

check: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) deploy/check-module-sizes.py

test: check
	ORRERY_TEST_DATABASE_URL=$$(deploy/dev-postgres.sh) \
	  ORRERY_TEST_DATABASE_OWNER_URL=$$(deploy/dev-postgres.sh --owner) ORRERY_REQUIRE_SERVICES=1 \
	  $(VENV)/bin/pytest -p no:cacheprovider tests

bench: deps
	ORRERY_DATABASE_URL=$$(deploy/dev-postgres.sh) \
	  ORRERY_DATABASE_OWNER_URL=$$(deploy/dev-postgres.sh --owner) $(PY) -m bench write --json

clean:
	rm -rf $(VENV) data
