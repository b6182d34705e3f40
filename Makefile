# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch==2.13.0 first: on these machines it is a local CPU build; anything else downloads gigabytes.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: train a small CNN privately on bundled digits (plot: privacy_utility.png), then the accounting
# report for a CIFAR-10-sized run.
demo: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/dpkit train-demo
	OMP_WAIT_POLICY=PASSIVE $(BIN)/dpkit account-report

lint: $(STAMP)
	$(BIN)/ruff check dpkit accountants mechanisms audits tests benchmarks

test: $(STAMP) lint
	OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest

bench: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python benchmarks/accountants.py

clean:
	rm -rf $(VENV) build *.egg-info
