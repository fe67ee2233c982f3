# Two commands for a fresh machine (Python 3.11, no GPU): `make app` and `make test` (`make demo`: the scripted demo).
# Each creates the environment in .venv/ first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

APP_CASE ?= ibsi_STS_001_PET
APP_PORT ?= 8080

.PHONY: setup app demo test lint bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned to the local CPU build in pyproject.toml; an unpinned torch would pull GBs of CUDA.
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	# The browser tests drive Debian's chromium (never `playwright install`); EGL/Mesa render the views offscreen.
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium libegl1 libgl1-mesa-dri)
	touch $(STAMP)

# The browser app on a sample case; prints "Open http://127.0.0.1:8080/?secret=…" (each tab its own session).
# Saves go to ~/.local/share/weakannotate/work (APP_WORK=DIR for another folder). Ctrl-C stops it.
app: setup
	$(VENV)/bin/weakannotate serve --case $(APP_CASE) --port $(APP_PORT) $(if $(APP_WORK),--work $(APP_WORK))

demo: setup
	$(VENV)/bin/weakannotate demo --output demo_output

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
