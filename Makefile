# sparsevd: `make reproduce` rebuilds Table 1, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# make reproduce knobs: SEEDS=3 runs seeds 0,1,2; EPOCHS=2 overrides the recipe (a smoke run, whose
# records go to outputs/quick, never results/runs); FORCE=1 replaces existing records.
ROWS ?= lenet300_dense,lenet300_sparsevd,lenet300_ard,lenet5_dense,lenet5_sparsevd,lenet5_ard
SEEDS ?= 1
EPOCHS ?=
FORCE ?= 0
LAUNCHER ?= basic
SEED_LIST := $(shell seq -s, 0 $$(( $(SEEDS) - 1 )))
RUNS_DIR ?= $(if $(EPOCHS),outputs/quick/runs,results/runs)
OUT ?= results
README ?= $(if $(EPOCHS),,README.md)
EXTRA ?=
RUN_ARGS := -m experiment=$(ROWS) seed=$(SEED_LIST) resume=auto results.dir=$(RUNS_DIR) \
	results.force=$(if $(filter 1,$(FORCE)),true,false) hydra/launcher=$(LAUNCHER) \
	$(if $(EPOCHS),trainer.epochs=$(EPOCHS)) $(EXTRA)

.DEFAULT_GOAL := help
.PHONY: help install test train runs report reproduce bench export compress

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

runs: $(STAMP) ## train the Table 1 rows (ROWS, SEEDS, EPOCHS, FORCE), skipping existing records
	$(PY) scripts/train.py $(RUN_ARGS) trainer.progress=false

report: $(STAMP) ## rebuild results/table.{md,csv,tex}, results/figures and the README table from records
	$(PY) scripts/report.py --runs $(RUNS_DIR) --out $(OUT) --readme "$(README)"

reproduce: runs report ## run every Table 1 row (SEEDS=, EPOCHS=, FORCE=) and rebuild the table

RECORD ?= results/runs/lenet300_sparsevd/seed0
FILE ?= outputs/export/$(notdir $(patsubst %/,%,$(dir $(RECORD))))_$(notdir $(RECORD)).svd
export: $(STAMP) ## export a record to one compact file: make export RECORD=results/runs/lenet5_sparsevd/seed0 FILE=net.svd
	$(PY) scripts/export.py $(RECORD) --out $(FILE)

compress: $(STAMP) ## bytes table and threshold sweep of every record with weights; writes results/compression.*, threshold.*
	$(PY) scripts/compress.py

bench: $(STAMP) ## time training epochs vs a plain reference and pytorch-ard, and inference of exported files; writes results/bench.json
	$(PY) -m pip install -q --no-deps "pytorch-ard==0.2.4"
	$(PY) scripts/bench.py
