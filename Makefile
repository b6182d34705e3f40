# Two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

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

SOURCES := dpkit accountants mechanisms audits tests benchmarks
# mypy reads the installed layout: a tree of links where accountants/ is dpkit/accountants and so on.
TYPES := $(VENV)/typecheck

lint: $(STAMP)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/ruff check $(SOURCES)
	$(MAKE) --no-print-directory typecheck

typecheck: $(STAMP)
	rm -rf $(TYPES) && mkdir -p $(TYPES)/dpkit
	for f in dpkit/*; do ln -s "$(CURDIR)/$$f" $(TYPES)/dpkit/; done
	for d in accountants mechanisms audits; do ln -s "$(CURDIR)/$$d" $(TYPES)/dpkit/$$d; done
	cd $(TYPES) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml --cache-dir $(CURDIR)/$(VENV)/mypy_cache dpkit

# Two pytest workers, one thread each (pytest-xdist): the notebooks and the multi-process tests overlap.
test: $(STAMP) lint
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n 2

# The benchmarks (results in benchmarks/results/, more than an hour on a quiet 2-core machine), then the tables of
# benchmarks/README.md and README.md. Each script sets OMP_WAIT_POLICY=PASSIVE and 2 threads in its processes.
bench: $(STAMP)
	$(BIN)/python benchmarks/accountants.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/ldp.py
	$(BIN)/python benchmarks/heavy_hitters.py
	$(BIN)/python benchmarks/range_queries.py
	$(BIN)/python benchmarks/audit.py
	$(BIN)/python benchmarks/poisoning.py
	$(BIN)/python benchmarks/clipping_bias.py
	$(BIN)/python benchmarks/mf.py
	$(BIN)/python benchmarks/distributed.py
	$(BIN)/python benchmarks/tables.py

clean:
	rm -rf $(VENV) build *.egg-info
