# bayes_nlme developer commands. Every target creates .venv when missing and installs into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e ".[test,lint]"
	touch $(STAMP)

## Fit the bundled Theophylline data (4 chains x 1000 warmup + 1000 draws) into runs/theophylline
demo: $(STAMP)
	$(BIN)/bayes-nlme fit theophylline --out runs/theophylline

## The whole test suite (slow statistical tests included), two workers (one per CI core;
## a test file stays on one worker so its module fixtures are built once)
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

## Unit tests only
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/theophylline.py
	$(BIN)/python bench/ode_vs_analytic.py --quick --diffrax
	$(BIN)/python bench/ode_scaling.py --quick --diffrax
	$(BIN)/python bench/pkpd_coupled.py

lint: $(STAMP)
	$(BIN)/ruff check bayes_nlme tests model_zoo bench
	$(BIN)/ruff format --check bayes_nlme tests model_zoo bench

clean:
	rm -rf $(VENV) runs .pytest_cache
