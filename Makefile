# renkei — the commands a newcomer needs. Everything installs into ./.venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: serve test check fmt bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

## serve: migrate the embedded SQLite database under ./var, seed the demo network once, serve
serve: $(VENV)/.installed
	$(BIN)/renkei serve --host $(HOST) --port $(PORT) --demo

## test: lint, type-check and run the whole suite (SQLite; PostgreSQL too when RENKEI_TEST_POSTGRES_URL is set)
test: $(STAMP)
	$(MAKE) --no-print-directory check
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

LINT_PATHS := renkei tests $(wildcard bench)

check: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

## bench: reproducible figures (SQLite always, PostgreSQL when RENKEI_BENCH_POSTGRES_URL is set)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
