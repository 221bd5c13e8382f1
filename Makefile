# Plain entry points. `make run` and `make test` are the two commands a fresh machine needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Put the project's environment first so that snakemake, dvc and `python` all resolve to it.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: all setup run test test-fast lint
all: run

# The stamp is rebuilt when the pins change. --build-constraint (pip >= 25.3) reaches pip's isolated
# build of the Chainer sdist (it needs setuptools<81); see requirements/build-constraints.txt.
$(VENV)/.installed: requirements/lock.txt requirements/dev.txt requirements/build-constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==25.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		--build-constraint requirements/build-constraints.txt -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

# `import chainer` works in this environment from anywhere (a notebook, python -c): see
# deeppose/backends/chainer_import.py.
$(VENV)/.chainer-hook: $(VENV)/.installed deeppose/backends/chainer_import.py
	$(BIN)/python -c "from deeppose.backends.chainer_import import install_startup_hook as i; i()"
	touch $@

setup: $(VENV)/.installed $(VENV)/.chainer-hook

# Runs the whole pipeline on the embedded synthetic dataset and writes reports/report.md.
# Snakemake loads the workflow profile profiles/default/ by itself, as for a plain `snakemake`.
run: setup
	$(BIN)/snakemake --cores all

# The whole suite (what .ci/run calls) and the fast tier (minutes: no training, timing or engine
# run). Both print the 15 slowest tests, so a test that grows shows up in CI's log. Two worker
# processes (pytest-xdist), one per core of the 2-core machines the suite is sized for; each test
# file runs whole in one worker, so its module fixtures are built once, and tests/conftest.py starts
# the longest files first.
PYTEST_WORKERS := -n 2 --dist loadfile --no-loadscope-reorder
test: setup
	$(BIN)/python -m pytest $(PYTEST_WORKERS) --durations=15

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_WORKERS) --durations=15

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	# snakemake --lint asks every rule for a conda environment, which the rules leave out on purpose
	# (the environment is this .venv); the test fails on any other lint.
	$(BIN)/python -m pytest -q tests/test_workflow.py -k snakemake_lint
