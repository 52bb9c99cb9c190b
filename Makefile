# recsys: common commands. `make install` once, then `make run`, `make test`, `make bench`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch by default (no multi-GB CUDA download). On a GPU machine:
#   make install TORCH_SPEC="torch"
TORCH_SPEC ?= torch==2.13.0
DATA_DIR ?= $(abspath ../shared/datasets)
# make bench measures this commit's bench too, in the same run, and prints new / previous
# ratios (the main before the SASRec speed work); BENCH_BASELINE=none skips it.
BENCH_BASELINE ?= fc7e0ee
BENCH_ARGS ?=

.PHONY: install run test test-slow test-all bench report clean

install: ## create .venv and install recsys with its dev and cluster extras (the tests need both)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,cluster]"

run: ## the main command: SASRec + full cross-entropy on the built-in synthetic data
	$(PY) -m recsys.run

test: ## the fast suite (slow and gpu tests skipped)
	RECSYS_DATA_DIR=$${RECSYS_DATA_DIR:-$(DATA_DIR)} $(PY) -m pytest -q

test-slow: ## only the slow tests (real datasets, longer training)
	RECSYS_DATA_DIR=$${RECSYS_DATA_DIR:-$(DATA_DIR)} $(PY) -m pytest -q -m slow

test-all: test test-slow

bench: ## speed figures beside the previous main's (BENCH_BASELINE): ml1m (load, SASRec epoch and its profile, evaluation, memory), default runs, reward service, 1M-item bounded memory
	RECSYS_DATA_DIR=$${RECSYS_DATA_DIR:-$(DATA_DIR)} $(PY) -m experiments.bench --baseline $(BENCH_BASELINE) $(BENCH_ARGS)

report: ## compare the runs of a sweep: make report SWEEP=logs/loss_comparison/multiruns/<time>
	@test -n "$(SWEEP)" || { echo "usage: make report SWEEP=<multirun dir>"; exit 2; }
	$(PY) -m recsys.report $(SWEEP)

clean:
	rm -rf logs outputs multirun .pytest_cache
