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

.PHONY: help setup run test tier lint typecheck pytest images images-previous podman bench-keyproxy bench-terminal bench-images clean

help:
	@echo "make run    start local mode on http://127.0.0.1:8000"
	@echo "make test   install what the suite needs and run it (lint, types, pytest)"
	@echo "make tier T=tests/proxy  run one tier's tests only (no lint, types or image builds)"
	@echo "make images build localhost/claudehub/{sandbox,hub}:dev with podman"
	@echo "make images-previous  the previous version's images (:previous) for the upgrade test"

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
# the author sandbox (docs/authoring.md): the sandbox image with the author policy
AUTHOR_IMAGE := localhost/claudehub/sandbox-author:$(IMAGE_TAG)
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
	$(PODMAN) build --layers --build-arg SANDBOX_IMAGE=$(SANDBOX_IMAGE) -f images/sandbox/Dockerfile.author \
	  --ignorefile images/sandbox/Dockerfile.dockerignore -t $(AUTHOR_IMAGE) . >.images-author.log 2>&1 \
	  || { tail -n 40 .images-author.log; exit 1; }
	$(PODMAN) build $(BUILD_FLAGS) -f images/hub/Dockerfile \
	  --ignorefile images/hub/Dockerfile.dockerignore -t $(HUB_IMAGE) . >.images-hub.log 2>&1 \
	  || { tail -n 40 .images-hub.log; exit 1; }
	@$(PODMAN) images --filter reference='localhost/claudehub/*' --format '{{.Repository}}:{{.Tag}} {{.Size}}'

# The previous version, for the upgrade test (tests/containers/test_upgrade.py): both images
# of a fixed older commit under the tag `previous`, labelled with the commit (the test renders
# that commit's chart). While its build inputs other than the code (PREVIOUS_INPUTS) are
# today's and every package it pins (images/constraints.txt) is pinned today at the same
# version, its images are today's with its claudehub package (and hub configuration, managed
# settings, entrypoint) copied in from its tree (git archive; images/previous/*.Dockerfile):
# seconds instead of minutes, and the same files its own Dockerfiles would install (packages
# new since then are present and unused). Otherwise (or with PREVIOUS_FULL=1) the old tree is
# built whole by its own Dockerfiles. Nothing is built when both images carry the commit's
# label already. A file added since (images/sandbox/Dockerfile.author) is no input of the old
# build, so only files it has count (--diff-filter without A). Why this commit:
# docs/operator-guide.md, "Upgrading".
PREVIOUS_COMMIT := b592ba698bbe47dbfd2bc7e025ee483fe8c6c4b9
PREVIOUS_TREE := build/previous
PREVIOUS_INPUTS := package.json package-lock.json images/hub images/sandbox jupyter-config
PREVIOUS_FULL ?=
export PREVIOUS_FULL
PREVIOUS_LABEL := io.claudehub.previous-commit
PREVIOUS_BUILD = $(PODMAN) build --layers --label $(PREVIOUS_LABEL)=$(PREVIOUS_COMMIT)

images-previous: images
	@git cat-file -e '$(PREVIOUS_COMMIT)^{commit}' 2>/dev/null || { echo "images-previous:\
	 commit $(PREVIOUS_COMMIT) (the upgrade test's previous version) is not in this clone;\
	 a shallow clone lacks it: git fetch --unshallow"; exit 1; }
	@built=$${PREVIOUS_FULL:+no}; for i in hub sandbox; do \
	  $(PODMAN) image inspect --format '{{index .Config.Labels "$(PREVIOUS_LABEL)"}}' \
	    localhost/claudehub/$$i:previous 2>/dev/null | grep -qx '$(PREVIOUS_COMMIT)' || built=no; \
	  done; \
	if [ "$$built" != no ]; then echo "images-previous: built already from $(PREVIOUS_COMMIT)"; else \
	  set -e; rm -rf $(PREVIOUS_TREE) .images-previous.log && mkdir -p $(PREVIOUS_TREE); \
	  git archive $(PREVIOUS_COMMIT) | tar -x -C $(PREVIOUS_TREE); \
	  if [ -z "$(PREVIOUS_FULL)" ] && git diff --quiet --diff-filter=CDMRT $(PREVIOUS_COMMIT) -- $(PREVIOUS_INPUTS) \
	    && ! git show $(PREVIOUS_COMMIT):images/constraints.txt | grep -vxFf images/constraints.txt; then \
	    echo "images-previous: today's images with the code of $(PREVIOUS_COMMIT)"; \
	    for i in sandbox hub; do \
	      $(PREVIOUS_BUILD) --build-arg CURRENT=localhost/claudehub/$$i:$(IMAGE_TAG) \
	        -f images/previous/$$i.Dockerfile -t localhost/claudehub/$$i:previous $(PREVIOUS_TREE) \
	        >>.images-previous.log 2>&1 || { tail -n 40 .images-previous.log; exit 1; }; \
	    done; \
	  else \
	    echo "images-previous: building $(PREVIOUS_COMMIT) whole (its build inputs differ from today's)"; \
	    for i in sandbox hub; do \
	      $(PREVIOUS_BUILD) $(BUILD_FLAGS) -f $(PREVIOUS_TREE)/images/$$i/Dockerfile \
	        --ignorefile $(PREVIOUS_TREE)/images/$$i/Dockerfile.dockerignore \
	        -t localhost/claudehub/$$i:previous $(PREVIOUS_TREE) \
	        >>.images-previous.log 2>&1 || { tail -n 40 .images-previous.log; exit 1; }; \
	    done; \
	  fi; \
	  rm -rf $(PREVIOUS_TREE); \
	fi

run: setup
	PATH="$(CURDIR)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$$PATH" \
	  $(VENV)/bin/jupyterhub -f hub_config/local_config.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: setup /usr/bin/chromium /usr/bin/strace $(CHECKOV_VENV)/.installed images images-previous
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
