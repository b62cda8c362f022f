# claudehub: `make run` starts local mode, `make test` runs the whole suite.
# Both install what they need (virtualenv, pip, npm, and Debian's chromium for the browser tests).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
VENDOR := claudehub/server_ext/static/vendor
CHECKOV_VENV := .venv-checkov

.PHONY: help setup run test lint typecheck pytest bench-keyproxy bench-terminal clean

help:
	@echo "make run    start local mode on http://127.0.0.1:8000"
	@echo "make test   install what the suite needs and run it (lint, types, pytest)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENDOR)/.copied: $(NODE_STAMP)
	mkdir -p $(VENDOR)
	cp node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css \
	   node_modules/@xterm/addon-fit/lib/addon-fit.js $(VENDOR)/
	touch $@

setup: $(STAMP) $(NODE_STAMP) $(VENDOR)/.copied

# Chromium comes from Debian (Playwright's own browser download cannot work here).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# checkov pins versions that clash with the project's, so it lives in its own venv.
$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov
	touch $@

run: setup
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(VENV)/bin/jupyterhub -f hub_config/local_config.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: setup /usr/bin/chromium $(CHECKOV_VENV)/.installed
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules $(VENDOR) .pytest_cache .mypy_cache .ruff_cache
