# sparsevd: `make reproduce` rebuilds Table 1, `make test` runs the quick tests, `make test-all` every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Row knobs: ROWS, SEEDS=3 (seeds 0,1,2), EPOCHS=2 (overrides the recipe: a smoke run), EXTRA.
ROWS ?= lenet300_dense,lenet300_sparsevd,lenet300_ard,lenet5_dense,lenet5_sparsevd,lenet5_ard
SEEDS ?= 1
EPOCHS ?=
FORCE ?= 0
EXTRA ?=
# Machine knobs: each run holds THREADS CPU threads (trainer.threads), and JOBS runs train at once
# (default: cores // THREADS) through hydra-joblib-launcher; LAUNCHER=basic trains one run at a time,
# LAUNCHER=slurm submits each run as a job of THREADS CPUs (configs/hydra/launcher/).
THREADS ?= 1
JOBS ?= $(shell n=$$(( $$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN) / $(THREADS) )); echo $$(( n > 0 ? n : 1 )))
LAUNCHER ?= local_parallel
LAUNCH := hydra/launcher=$(LAUNCHER) trainer.threads=$(THREADS) \
	$(if $(filter local_parallel,$(LAUNCHER)),hydra.launcher.n_jobs=$(JOBS)) \
	$(if $(filter slurm submitit_local,$(LAUNCHER)),hydra.launcher.cpus_per_task=$(THREADS))
SEED_LIST := $(shell seq -s, 0 $$(( $(SEEDS) - 1 )))
# make reproduce writes here only; a smoke run (EPOCHS=) gets a folder of its own.
REPRO ?= outputs/reproduce$(if $(EPOCHS),/quick-$(EPOCHS)ep)
TRAIN_ROWS := $(PY) scripts/train.py -m experiment=$(ROWS) seed=$(SEED_LIST) resume=auto results.save=true \
	$(LAUNCH) trainer.progress=false $(if $(EPOCHS),trainer.epochs=$(EPOCHS))

.DEFAULT_GOAL := help
.PHONY: help install test test-all train reproduce reproduce-timing records report notebook bench throughput export compress

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,onnx]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install sparsevd with its pins and the dev and onnx extras (idempotent)

test: $(STAMP) ## the quick suite (a few minutes): every test not marked slow, one worker per core (pytest-xdist), ending with its ten slowest
	$(PY) -m pytest -q -n auto --dist loadfile --durations=10 -m "not slow"

test-all: $(STAMP) ## every test, the slow end-to-end ones too (trainings, resumes, notebooks, make reproduce): what CI runs
	$(PY) -m pytest -q -n auto --dist loadfile --durations=10

train: $(STAMP) ## train one config: make train ARGS="model=lenet5 method=ard"
	$(PY) scripts/train.py $(ARGS)

reproduce: $(STAMP) ## train the Table 1 rows (ROWS, SEEDS, EPOCHS; JOBS at once, THREADS each, LAUNCHER=basic: one at a time) into outputs/reproduce/ and table them beside the paper and the committed records
	$(TRAIN_ROWS) outputs=$(REPRO)/work results.dir=$(REPRO)/runs $(EXTRA)
	$(PY) scripts/report.py --runs $(REPRO)/runs --out $(REPRO) --readme "" --compare results/runs

reproduce-timing: $(STAMP) ## time make reproduce EPOCHS=3 one run at a time on 2 threads and by default, on a quiet machine; writes results/reproduce_timing.json (then make report)
	$(PY) scripts/reproduce_timing.py --epochs 3 --out results/reproduce_timing.json

records: $(STAMP) ## train rows into the committed results/runs (FORCE=1 replaces a record), then make report
	$(TRAIN_ROWS) results.dir=results/runs results.force=$(if $(filter 1,$(FORCE)),true,false) $(EXTRA)
	$(MAKE) report

report: $(STAMP) ## rebuild results/table.{md,csv,tex}, results/figures and the README table from results/runs
	$(PY) scripts/report.py --runs results/runs --out results --readme README.md

notebook: $(STAMP) ## re-execute notebooks/results.ipynb (the records) and notebooks/talk.ipynb (the method, its full training: minutes) in place, outputs saved
	for nb in results talk; do SPARSEVD_TALK_QUICK= $(PY) -c "import nbformat, sys; from nbclient import NotebookClient as C; \
	path = f'notebooks/{sys.argv[1]}.ipynb'; nb = nbformat.read(path, 4); \
	C(nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': 'notebooks'}}).execute(); \
	nbformat.write(nb, path)" $$nb || exit 1; done

RECORD ?= results/runs/lenet300_sparsevd/seed0
FORMAT ?= svd
FILE ?= outputs/export/$(notdir $(patsubst %/,%,$(dir $(RECORD))))_$(notdir $(RECORD)).$(FORMAT)
export: $(STAMP) ## export a record to one compact file: make export RECORD=results/runs/lenet5_sparsevd/seed0 FILE=net.svd (FORMAT=onnx: as ONNX)
	$(PY) scripts/export.py $(RECORD) --out $(FILE) --format $(FORMAT)

compress: $(STAMP) ## bytes of the sparse Table 1 rows stage by stage (and as ONNX), threshold sweep of every sparse record with weights, Pareto figures; writes results/compression.*, threshold.csv, figures
	$(PY) scripts/compress.py

bench: $(STAMP) ## time training epochs vs a plain reference and pytorch-ard, and inference of exported files (torch, onnxruntime); writes results/bench.json (DEVICE=cuda: results/bench_cuda.json)
	$(PY) -m pip install -q --no-deps "pytorch-ard==0.2.4"
	$(PY) scripts/bench.py $(if $(DEVICE),--device $(DEVICE) --out results/bench_$(DEVICE).json)

throughput: $(STAMP) ## RUNS (18) training processes of the Table 1 rows x seeds share the device for EPOCHS (3); writes results/throughput.json
	$(PY) scripts/throughput.py --runs $(or $(RUNS),18) --epochs $(or $(EPOCHS),3) --out results/throughput.json $(EXTRA)
