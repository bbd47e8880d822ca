# The two commands of the README. Both install what is missing first.
PYTHON := .venv/bin/python
export QT_QPA_PLATFORM := offscreen

.PHONY: test demo setup

## make test: ruff, then the whole test suite headless.
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

## make demo: generate sample data under demo/output and run every algorithm through qgis_process.
demo: setup
	$(PYTHON) demo/run_demo.py

setup:
	@sh scripts/bootstrap.sh
