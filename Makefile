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

.PHONY: help setup run test tier lint typecheck pytest images podman bench-keyproxy bench-terminal bench-images clean

help:
	@echo "make run    start local mode on http://127.0.0.1:8000"
	@echo "make test   install what the suite needs and run it (lint, types, pytest)"
	@echo "make tier T=tests/proxy  run one tier's tests only (no lint, types or image builds)"
	@echo "make images build localhost/claudehub/{sandbox,hub}:dev with podman"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,test,dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The terminal's fonts (claude.css): DejaVu Sans Mono draws the text, box drawing and most of
# Claude Code's symbols; Noto Sans Symbols 2 and Noto Sans Symbols draw the rest (the mode
# line's ⏵⏵ and ⏸, the tool-result ⎿). Served by the extension: no CDN, works air-gapped.
FONT_FILES := node_modules/dejavu-fonts-ttf/ttf/DejaVuSansMono.ttf \
  node_modules/dejavu-fonts-ttf/ttf/DejaVuSansMono-Bold.ttf \
  node_modules/@fontsource/noto-sans-symbols-2/files/noto-sans-symbols-2-symbols-400-normal.woff2 \
  node_modules/@fontsource/noto-sans-symbols/files/noto-sans-symbols-symbols-400-normal.woff2

$(VENDOR)/.copied: $(NODE_STAMP)
	mkdir -p $(VENDOR)/fonts
	cp node_modules/@xterm/xterm/lib/xterm.js node_modules/@xterm/xterm/css/xterm.css \
	   node_modules/@xterm/addon-fit/lib/addon-fit.js $(VENDOR)/
	cp $(FONT_FILES) $(VENDOR)/fonts/
	cp node_modules/dejavu-fonts-ttf/LICENSE $(VENDOR)/fonts/LICENSE-DejaVu
	cp node_modules/@fontsource/noto-sans-symbols-2/LICENSE $(VENDOR)/fonts/LICENSE-Noto-Sans-Symbols-2
	cp node_modules/@fontsource/noto-sans-symbols/LICENSE $(VENDOR)/fonts/LICENSE-Noto-Sans-Symbols
	touch $@

setup: $(STAMP) $(NODE_STAMP) $(VENDOR)/.copied

# Chromium comes from Debian (Playwright's own browser download cannot work here).
/usr/bin/chromium:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# strace watches the real CLI's network calls in tests/sandbox/test_no_outbound.py.
/usr/bin/strace:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null

# checkov pins versions that clash with the project's, so it lives in its own venv.
$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov
	touch $@

# -- Images (podman; docs/building-images.md) ---------------------------------------------------
# No registry is reachable on these machines, so the Debian base the Dockerfiles start FROM is
# made here from Debian packages (images/base/make-base.sh) and passed as BASE_IMAGE; elsewhere
# the Dockerfiles build unchanged against the official image. The host's CA bundle is mounted
# for the build only (TLS to PyPI and npm needs it here); nothing of it lands in an image.
export CONTAINERS_CONF := $(CURDIR)/images/podman/containers.conf
PODMAN := podman
IMAGE_TAG ?= dev
# e.g. BUILD_EXTRA=--no-cache for a build with no layer cached (benchmarks/containers)
BUILD_EXTRA ?=
BASE_IMAGE ?= localhost/claudehub/debian:bookworm-slim
SANDBOX_IMAGE := localhost/claudehub/sandbox:$(IMAGE_TAG)
HUB_IMAGE := localhost/claudehub/hub:$(IMAGE_TAG)
HOST_CA := /etc/ssl/certs/ca-certificates.crt
BUILD_FLAGS := --build-arg BASE_IMAGE=$(BASE_IMAGE) --layers $(BUILD_EXTRA) \
  $(if $(wildcard $(HOST_CA)),--volume $(HOST_CA):/run/host-ca.crt:ro --build-arg BUILD_CA_BUNDLE=/run/host-ca.crt)

podman: /usr/bin/podman /usr/sbin/runc /usr/sbin/debootstrap

/usr/bin/podman /usr/sbin/runc /usr/sbin/debootstrap:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  podman runc debootstrap nftables >/dev/null

images: podman
	@$(PODMAN) image exists $(BASE_IMAGE) || images/base/make-base.sh $(BASE_IMAGE)
	$(PODMAN) build $(BUILD_FLAGS) -f images/sandbox/Dockerfile \
	  --ignorefile images/sandbox/Dockerfile.dockerignore -t $(SANDBOX_IMAGE) . >.images-sandbox.log 2>&1 \
	  || { tail -n 40 .images-sandbox.log; exit 1; }
	$(PODMAN) build $(BUILD_FLAGS) -f images/hub/Dockerfile \
	  --ignorefile images/hub/Dockerfile.dockerignore -t $(HUB_IMAGE) . >.images-hub.log 2>&1 \
	  || { tail -n 40 .images-hub.log; exit 1; }
	@$(PODMAN) images --filter reference='localhost/claudehub/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'

run: setup
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(VENV)/bin/jupyterhub -f hub_config/local_config.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: setup /usr/bin/chromium /usr/bin/strace $(CHECKOV_VENV)/.installed images
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# One tier (or any pytest path), e.g. `make tier T=tests/proxy PYTEST_ARGS="-x -q"`: only what
# pytest needs installed (the venv, npm, chromium, strace, checkov's venv; each a no-op once
# there), no lint, no mypy, no image build. tests/containers needs `make images` first.
tier: setup /usr/bin/chromium /usr/bin/strace $(CHECKOV_VENV)/.installed
	@test -n "$(T)" || { echo "usage: make tier T=tests/<tier> [PYTEST_ARGS=...]"; exit 2; }
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(PY) -m pytest $(T) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules $(VENDOR) .pytest_cache .mypy_cache .ruff_cache
