# The two commands of the README: `make run` (the whole pipeline on the embedded emulator) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint unit integration coverage bench stop clean

$(STAMP): pyproject.toml
	@echo "== installing into $(VENV) (first run takes a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

# Emulator + tables + seed, then API, worker and aggregator in the foreground until Ctrl-C.
run: install
	$(BIN)/costkeeper run

# Lint, type-check, then every test (unit and integration; integration starts its own emulator on test ports).
test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest -m integration

# Every test with coverage of the project's packages (the pipeline's processes included); HTML report in htmlcov/.
coverage: install
	$(BIN)/python -m pytest --cov --cov-report=term --cov-report=html
	@echo "== coverage report: htmlcov/index.html"

bench: install
	$(BIN)/python -m bench.ingest_benchmark

stop: install
	$(BIN)/costkeeper stop

clean:
	rm -rf .run .mypy_cache .ruff_cache .pytest_cache htmlcov .coverage .coverage.*
