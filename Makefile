# serverless-openclaw — the README's commands. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
# `sam build` runs pip for the python3.12 runtime without Docker, and layers/shared/Makefile compiles the
# layer's bytecode with it (cpython-312 .pyc files), so python3.12 must be on PATH.
PYTHON312 := $(shell for p in "$$(command -v python3.12)" $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	[ -x "$$p" ] && "$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
PYTHON312_DIR := $(if $(PYTHON312),$(shell dirname "$(PYTHON312)"))
MYPY_DIRS := layers/shared bridge/bridge local functions scripts bench
# The real OpenClaw gateway and a Node >= 24.16 runtime, both from npm, cached in a git-ignored folder
# by `python -m local install` (it reads the version from template.yaml; tests check they agree). OpenClaw's
# tree is `npm ci` of the committed bridge/openclaw/package-lock.json, as in the image: a changed lockfile
# installs again.
OPENCLAW_VERSION := 2026.9.6
OPENCLAW_DIR := .cache/openclaw
OPENCLAW_PROJECT := bridge/openclaw/package.json bridge/openclaw/package-lock.json
PYTEST_ARGS ?= -n auto
# The web chat's browser libraries (frontend/package-lock.json), and Debian's Chromium for the browser tests.
FRONTEND_DEPS := frontend/node_modules/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# What every test tier needs; the fast tiers need only the venv.
TEST_DEPS := $(VENV)/.installed $(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION) $(FRONTEND_DEPS) chromium
FAST_TIERS := tests/unit tests/template tests/bridge

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# Progress lines of the installers reach the terminal as they happen, also while make runs jobs in parallel.
export PYTHONUNBUFFERED := 1

.PHONY: help venv openclaw openclaw-pin frontend chromium image-tools image image-test dev dev-reset invoke lint format \
	test test-fast test-all test-durations build deploy destroy bench clean

help: ## list the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt layers/shared/requirements.txt
	@echo "==> creating $(VENV) and installing pinned dependencies"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(SAM_VENV)/.installed:
	@echo "==> installing the SAM CLI $(SAM_CLI_VERSION) in its own venv (it pins its own boto3)"
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

venv: $(VENV)/.installed ## create .venv with the pinned dependencies

# The installer itself decides whether anything changed (the marker holds the lockfile's digest); the
# touch keeps make from asking again when only the lockfile's mtime moved (a checkout).
$(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION): $(VENV)/.installed $(OPENCLAW_PROJECT)
	@$(PY) -m local install
	@touch $@

# One boot of the gateway whose compile cache every later boot starts from (bridge/bridge/compile_cache.py).
$(OPENCLAW_DIR)/compile-cache: | $(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION)
	@$(PY) -m local install

openclaw: $(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION) $(OPENCLAW_DIR)/compile-cache ## install Node 24 and the locked OpenClaw tree, prepare its compile cache (cached)

openclaw-pin: $(VENV)/.installed ## pin another OpenClaw: make openclaw-pin OPENCLAW_VERSION=… (then make test, commit)
	@test "$(origin OPENCLAW_VERSION)" = "command line" || { echo "usage: make openclaw-pin OPENCLAW_VERSION=<release>"; exit 2; }
	@$(PY) scripts/openclaw_pin.py $(OPENCLAW_VERSION)

$(FRONTEND_DEPS): frontend/package.json frontend/package-lock.json
	@echo "==> installing the web chat's pinned libraries (npm ci in frontend/)"
	@command -v npm >/dev/null || { echo "npm is needed for the web chat's libraries (Debian: apt-get install npm)"; exit 2; }
	@cd frontend && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

frontend: $(FRONTEND_DEPS) $(VENV)/.installed ## build the web chat into frontend/dist (publish_frontend.py builds its own)
	@$(PY) scripts/build_frontend.py

chromium: ## install Debian's chromium for the browser tests unless one is on PATH
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		echo "==> installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			-o DPkg::Lock::Timeout=600 --no-install-recommends chromium; }

# The bridge image, built here without Docker or a registry: Debian's buildah builds bridge/Dockerfile on
# stand-in bases (debootstrap, Node from npm, this machine's CPython 3.12); cached by input hash in
# ~/.cache/serverless-openclaw/image (IMAGE_CACHE moves it), outside the checkout so fresh clones reuse it.
# `make test` builds it while lint runs.
image-tools: ## install Debian's buildah and debootstrap for the image unless they are there
	@command -v buildah >/dev/null 2>&1 && { command -v debootstrap || test -x /usr/sbin/debootstrap; } >/dev/null 2>&1 || { \
		echo "==> installing Debian's buildah and debootstrap for the bridge image"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			-o DPkg::Lock::Timeout=600 buildah debootstrap; }

image: image-tools $(VENV)/.installed ## build bridge/Dockerfile with buildah (root; cached, rebuilt when an input changes)
	@$(PY) -m local.image build

image-test: image $(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION) $(FRONTEND_DEPS) ## build the bridge image and chat through the local stack with every agent inside it
	@echo "==> pytest tests/e2e/test_image.py"
	@$(PY) -m pytest -p no:xdist tests/e2e/test_image.py

dev: $(VENV)/.installed $(FRONTEND_DEPS) ## run the whole product on this machine: web chat, APIs, agent (Ctrl-C keeps state)
	@$(PY) -m local up $(if $(PORT_BASE),--port-base $(PORT_BASE)) $(ARGS)

dev-reset: $(VENV)/.installed ## delete the local state (users, conversations, the agent's files)
	@$(PY) -m local reset

invoke: $(VENV)/.installed ## run one function against the running local stack: make invoke F=WsMessageFunction E=events/….json
	@test -n "$(F)" -a -n "$(E)" || { echo "usage: make invoke F=<FunctionLogicalId> E=events/<file>.json"; exit 2; }
	@$(PY) -m local invoke $(F) -e $(E)

lint: $(VENV)/.installed $(SAM_VENV)/.installed ## ruff, mypy, hadolint, cfn-lint, sam validate --lint
	@echo "==> ruff"
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/ruff check .
	@echo "==> mypy $(MYPY_DIRS)"
	@$(VENV)/bin/mypy $(MYPY_DIRS)
	@echo "==> hadolint bridge/Dockerfile"
	@$(VENV)/bin/hadolint bridge/Dockerfile
	@echo "==> cfn-lint template.yaml deploy/images.yaml"
	@$(VENV)/bin/cfn-lint template.yaml deploy/images.yaml
	@echo "==> sam validate --lint"
	@$(SAM) validate --lint --template template.yaml

format: $(VENV)/.installed ## apply ruff's formatting and fixes
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

# Lint runs while OpenClaw, the page's libraries and Chromium download and the bridge image builds (whole
# lines, as they come), then every tier of tests, the image's end-to-end test (`make image-test`) among
# them. `make test-fast` is the inner loop: no OpenClaw, no browser, no npm, no image.
test: ## everything CI runs: lint, then every test (installing what the tests need meanwhile)
	@$(MAKE) --no-print-directory --jobs=4 --output-sync=line lint $(TEST_DEPS) image
	@$(MAKE) --no-print-directory test-all

test-fast: $(VENV)/.installed ## unit, template and bridge tests only (no OpenClaw, browser or npm): about a minute
	@echo "==> pytest $(FAST_TIERS)"
	@$(PY) -m pytest $(PYTEST_ARGS) $(FAST_TIERS)

test-all: $(TEST_DEPS)
	@echo "==> pytest (every tier)"
	@$(PY) -m pytest $(PYTEST_ARGS)

# `pytest -n` hands the longest tests out first by the seconds recorded here (tests/scheduling.py): refresh
# them when tests were added, merged or got much faster or slower, and commit tests/durations.json.
test-durations: $(TEST_DEPS) ## run every test and record each one's seconds in tests/durations.json (the order -n uses)
	@echo "==> pytest (every tier), recording durations"
	@$(PY) -m pytest $(PYTEST_ARGS) --record-durations

build: $(SAM_VENV)/.installed ## sam build without Docker (needs python3.12 on PATH)
	@test -n "$(PYTHON312_DIR)" || { echo "sam build needs python3.12 on PATH (pyenv install 3.12)"; exit 1; }
	PATH="$(PYTHON312_DIR):$$PATH" $(SAM) build --template-file template.yaml

# OPENCLAW_VERSION reaches the script only when given on make's command line (an upgrade: the script pins
# the repository to it first, scripts/openclaw_pin.py); otherwise it builds the version the checkout pins.
deploy: $(VENV)/.installed $(SAM_VENV)/.installed $(FRONTEND_DEPS) ## deploy or upgrade on AWS: make deploy [OPENCLAW_VERSION=…] [ARGS=--rollback|--help]
	@PYTHON312="$(PYTHON312)" $(PY) scripts/deploy.py \
		$(if $(filter command line,$(origin OPENCLAW_VERSION)),--openclaw-version $(OPENCLAW_VERSION)) $(ARGS)

destroy: $(VENV)/.installed ## delete the stack: make destroy STACK=name [ARGS="--purge"] (data, tables, users kept)
	@test -n "$(STACK)" || { echo "usage: make destroy STACK=<stack name> [REGION=…] [ARGS=--purge]"; exit 2; }
	@$(PY) scripts/destroy.py --stack "$(STACK)" $(if $(REGION),--region "$(REGION)") $(ARGS)

bench: $(VENV)/.installed ## print the benchmark figures (never pass/fail on time)
	@for b in bench/bench_*.py; do echo "==> $$b"; $(PY) $$b || exit 1; done

clean: ## remove build output and caches (keeps the venvs)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache frontend/dist
	find . -name __pycache__ -not -path './.venv*' -prune -exec rm -rf {} +
