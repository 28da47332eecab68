# sparsevd: `make reproduce` rebuilds Table 1, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test train

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install sparsevd with its pins (idempotent)

test: $(STAMP) ## run the test suite
	$(PY) -m pytest -q

train: $(STAMP) ## train one config: make train ARGS="model=lenet5 method=ard"
	$(PY) scripts/train.py $(ARGS)
