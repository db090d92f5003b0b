# The two commands of the README: `make run` (the whole pipeline on the embedded emulator) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock run test lint unit integration coverage bench stop clean

# Exactly the locked versions, each checked against its hash; then the project itself, built with the locked setuptools.
$(STAMP): pyproject.toml requirements-dev.lock
	@echo "== installing into $(VENV) (first run takes a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP)

# Re-resolve the lock files from pyproject.toml (PyPI only, every file's hash), after changing a dependency.
lock:
	python3 -m venv .cache/pip-tools && .cache/pip-tools/bin/python -m pip install --quiet pip-tools
	for extra in "" dev; do \
	  PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= .cache/pip-tools/bin/pip-compile --quiet --generate-hashes \
	    --allow-unsafe --all-build-deps --strip-extras --index-url https://pypi.org/simple --no-emit-index-url \
	    $${extra:+--extra $$extra} -o requirements$${extra:+-$$extra}.lock pyproject.toml; \
	done

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

# Both benchmarks run even if the first misses a target; make fails if either does.
bench: install
	$(BIN)/python -m bench.ingest_benchmark; ingest=$$?; \
	$(BIN)/python -m bench.client_benchmark; client=$$?; \
	exit $$(( ingest || client ))

stop: install
	$(BIN)/costkeeper stop

clean:
	rm -rf .run .mypy_cache .ruff_cache .pytest_cache htmlcov .coverage .coverage.*
