# Two commands for a fresh machine (Python 3.11, no GPU): `make demo` and `make test`.
# Both create the environment in .venv/ first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned to the local CPU build in pyproject.toml; an unpinned torch would pull GBs of CUDA.
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	# The browser tests drive Debian's chromium (never `playwright install`); EGL/Mesa render the views offscreen.
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium libegl1 libgl1-mesa-dri)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/weakannotate demo --output demo_output

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
