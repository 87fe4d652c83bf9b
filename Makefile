# pgwarden: `make demo` to see it run, `make test` to check it. Both set themselves up.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))

.PHONY: setup demo demo-clean test lint unit bench format

# uv is installed with pip when missing; the lock file (uv.lock) is our constraints file.
$(UV):
	python3 -m pip install --user --quiet uv || python3 -m pip install --quiet --break-system-packages uv

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python 3.11 || $(UV) sync --frozen
	touch $@

setup: $(VENV)/.synced

demo: setup
	$(PY) scripts/demo.py

demo-clean:
	-$(PY) scripts/demo.py --stop; rm -rf .demo

lint: setup
	$(VENV)/bin/ruff check .

unit: setup
	$(VENV)/bin/pytest tests/unit -q

test: setup lint
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) -m bench.run

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .
