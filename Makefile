# The commands of the README. Each installs what is missing first.
PYTHON := .venv/bin/python
export QT_QPA_PLATFORM := offscreen

.PHONY: test demo package setup

## make test: ruff, then the whole test suite headless.
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

## make demo: generate sample data under demo/output and run every algorithm through qgis_process.
demo: setup
	$(PYTHON) demo/run_demo.py

## make package: dist/tessera-<version>.zip for plugins.qgis.org, checked by
## scripts/validate_plugin_zip.py (make test builds and checks one too).
package: setup
	$(PYTHON) scripts/build_package.py

setup:
	@sh scripts/bootstrap.sh
