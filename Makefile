# DeepTree: two commands for a new user.
#   make reproduce   run every notebook on the synthetic cohort (PROFILE=cpu by default)
#   make test        ruff + pytest + every notebook with the smoke profile (what CI runs)
# Both set themselves up first: a .venv with the locked packages, and the Debian packages
# that napari needs to render headless under Xvfb. A second run skips what is installed.

PROFILE ?= cpu
# Empty: every notebook in order; or a subset, e.g. NOTEBOOKS=notebooks/00_overview.ipynb
NOTEBOOKS ?=
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deeptree-installed
XVFB := xvfb-run -a -s "-screen 0 1280x1024x24"

.PHONY: setup system-deps test lint pytest notebooks reproduce clean

setup: $(STAMP) system-deps

# Reinstall when the package definition or the lock changes.
$(STAMP): pyproject.toml requirements/lock.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/lock.txt -e '.[test]'
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

lint: setup
	$(VENV)/bin/ruff check deeptree tests benchmarks notebooks

pytest: setup
	$(XVFB) $(VENV)/bin/pytest -q

notebooks: setup
	$(XVFB) $(PY) -m deeptree notebooks --profile smoke --out runs/ci --stop-on-error

test: lint pytest notebooks

reproduce: setup
	$(XVFB) $(PY) -m deeptree notebooks --profile $(PROFILE) --html --summary $(NOTEBOOKS)

clean:
	rm -rf runs/ci .pytest_cache .ruff_cache
