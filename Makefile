# DeepTree: two commands for a new user.
#   make reproduce   run every notebook on the synthetic cohort (PROFILE=cpu by default)
#   make test        ruff + pytest + every notebook with the smoke profile (what CI runs)
# and where the book lands:
#   make book        the tutorial as a static site (from the last cpu run, else the committed
#                    one in results/, else a smoke run)
# All set themselves up first: a .venv with the locked packages, and the Debian packages
# that napari needs to render headless under Xvfb. A second run skips what is installed.

PROFILE ?= cpu
# Empty: every notebook in order; or a subset, e.g. NOTEBOOKS=notebooks/00_overview.ipynb
NOTEBOOKS ?=
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deeptree-installed
XVFB := xvfb-run -a -s "-screen 0 1280x1024x24"

# Where `make book` writes the site (open site/index.html from the folder).
BOOK_OUT ?= site

.PHONY: setup system-deps system-deps-book test lint pytest notebooks book book-test reproduce readme demo-weights clean

setup: $(STAMP) system-deps

# Reinstall when the package definition or the lock changes.
$(STAMP): pyproject.toml setup.py requirements/lock.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c requirements/lock.txt -e '.[all]'
	@touch $(STAMP)

system-deps:
	@bash scripts/system-deps.sh

# Debian's Chromium for the browser checks of the book (and the tests of deeptree.book).
system-deps-book:
	@bash scripts/system-deps.sh --book

lint: setup
	$(VENV)/bin/ruff check deeptree tests benchmarks notebooks

pytest: setup system-deps-book
	$(XVFB) $(VENV)/bin/pytest -q --durations=20

notebooks: setup
	$(XVFB) $(PY) -m deeptree notebooks --profile smoke --out runs/ci --summary --stop-on-error

# The book from the smoke run of `make notebooks` (runs/ci), opened page by page in headless
# Chromium: fails on a console error or a broken internal link; screenshots in runs/ci.
book-test: setup system-deps-book
	$(PY) -m deeptree.book build --run runs/ci --out runs/ci/book
	$(PY) -m deeptree.book check runs/ci/book --screenshots runs/ci/book-screenshots

test: lint pytest notebooks book-test

# The book from the last complete `make reproduce PROFILE=cpu` run, else the newest committed run
# (results/*-cpu-synthetic/notebooks, published by `python -m deeptree.book publish`), else the
# newest smoke run.
book: setup
	$(PY) -m deeptree.book build --out $(BOOK_OUT)

reproduce: setup
	$(XVFB) $(PY) -m deeptree notebooks --profile $(PROFILE) --html --summary $(NOTEBOOKS)

# The README's generated parts: the pipeline figure and the bottom-line box of the newest
# committed results/*-cpu-synthetic run (tests/test_readme.py checks both are current).
readme: setup
	$(PY) -m deeptree.viz.pipeline_figure docs/figures/pipeline.png
	$(PY) -m deeptree.evaluation.readme_box

# The demo weights shipped in deeptree/weights and their model card: train on varied phantoms,
# evaluate on a synthetic test set and the real samples (hours on 2 CPU cores; a rerun resumes).
demo-weights: setup
	$(PY) benchmarks/demo_weights.py

clean:
	rm -rf runs/ci site .pytest_cache .ruff_cache
