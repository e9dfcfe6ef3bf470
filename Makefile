# The two commands of the README: `make run` and `make test`. Both install what is missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORTAL := api/portal
VENDOR := $(PORTAL)/vendor
VENDOR_STAMP := $(VENDOR)/.installed
PF := $(PORTAL)/node_modules/@patternfly/patternfly

.PHONY: run test deps system-deps lint check bench clean

system-deps:
	@deploy/system-deps.sh $(if $(filter test,$(MAKECMDGOALS)),test,run)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

# The portals' browser assets: npm packages pinned by package-lock.json, copied into the
# git-ignored vendor/ folder that the server serves (nothing comes from a CDN at run time).
$(VENDOR_STAMP): $(PORTAL)/package.json $(PORTAL)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: run deploy/system-deps.sh" >&2; exit 1; }
	cd $(PORTAL) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)/patternfly/assets/images
	cp $(PF)/patternfly.min.css $(PF)/patternfly-addons.css $(VENDOR)/patternfly/
	cp -r $(PF)/assets/fonts $(PF)/assets/pficon $(VENDOR)/patternfly/assets/
	cp $(PF)/assets/images/*Bkg-Generic*.svg $(VENDOR)/patternfly/assets/images/
	@touch $(VENDOR_STAMP)

deps: system-deps $(STAMP) $(VENDOR_STAMP)

# HTTPS with a certificate of the Manager's CA (made at the first start in data/pki);
# serve prints the URL and the CA file clients pass as ca_file.
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
