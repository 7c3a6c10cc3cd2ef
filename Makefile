# ctdm: `make install` then `make test`. Everything runs from the project's .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Two pytest-xdist workers by default (work-stealing balances the slow end-to-end runs); WORKERS=0 runs
# in one process (pytest -n 0), e.g. to read a failing test's output in order.
WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: install test test-fast train sweep lint bench clean

install:  ## create .venv and install ctdm (editable) with the dev tools
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'

test:  ## the whole suite, slow end-to-end runs included (what CI runs; prints the 30 slowest tests)
	WANDB_MODE=disabled HYDRA_FULL_ERROR=1 $(PY) -m pytest -n $(WORKERS) --dist worksteal --durations=30 $(PYTEST_ARGS)

test-fast:  ## skip the slow end-to-end runs
	WANDB_MODE=disabled $(PY) -m pytest -n $(WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

train:  ## the embedded default run (2-D eight Gaussians, CPU, about a minute); ARGS=... for overrides
	$(PY) -m ctdm.train $(ARGS)

sweep:  ## the CPU-sized dino comparison (5 arms x 3 seeds x 2 recipes, joblib) and its report.md; ARGS=...
	$(PY) -m experiments.compare_arms $(ARGS)

lint:
	$(PY) -m ruff check ctdm tests benchmarks experiments
	$(PY) -m ruff format --check ctdm tests benchmarks experiments

bench:  ## benchmark scripts under benchmarks/ (each prints side-by-side figures)
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf logs multirun outputs .pytest_cache .ruff_cache
