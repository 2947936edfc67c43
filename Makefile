# pe-risk: every target creates what it needs. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 3000
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install test test-clock test-fast lint format bench serve clean-state

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/$$(PORT)/$(PORT)/g' \
	  | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)  ## create .venv from the lock files and install pe-risk (editable)

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest

# libfaketime from the dev lock (python-libfaketime's build): Debian's 0.9.10 hangs Python's
# timed waits. The monotonic clock stays real so that timeouts and sleeps keep working.
FAKETIME_LIB = $(shell $(BIN)/python -c "import libfaketime, pathlib; print(pathlib.Path(libfaketime.__file__).parent / 'vendor/libfaketime/src/libfaketime.so.1')")

test-clock: $(STAMP)  ## the whole suite with the system clock a year ahead, then a year behind
	@for offset in +365d -365d; do \
	  echo "== the suite with the clock moved $$offset"; \
	  LD_PRELOAD=$(FAKETIME_LIB) FAKETIME=$$offset FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_NO_CACHE=1 \
	    $(BIN)/python -c "import datetime; print('today is', datetime.date.today())" && \
	  LD_PRELOAD=$(FAKETIME_LIB) FAKETIME=$$offset FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_NO_CACHE=1 \
	    $(BIN)/python -m pytest -q -p no:cacheprovider || exit 1; \
	done

test-fast: $(STAMP)  ## run the fast hermetic tests only
	$(BIN)/python -m pytest -m "not data and not model and not service and not integration"

lint: $(STAMP)  ## ruff lint and format check, and the import-linter layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)  ## run the benchmarks and print their tables
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_cohort.py
	$(BIN)/python benchmarks/bench_training.py
	$(BIN)/python benchmarks/bench_report.py
	$(BIN)/python benchmarks/bench_fhir.py
	$(BIN)/python benchmarks/bench_unknowns.py
	$(BIN)/python benchmarks/bench_treeshap.py

serve: $(STAMP)  ## serve predictions on localhost:$(PORT) (trains on the synthetic cohort when no champion exists)
	$(BIN)/pe-risk serve --port $(PORT)

clean-state:  ## delete runtime state (.pe-risk/): MLflow store, models, cohorts, logs
	rm -rf .pe-risk
