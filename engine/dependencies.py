"""Checks for the optional Python packages the engine needs."""

import importlib

from .errors import TesseraError

PIP_NAMES = {"numba": "numba", "zarr": "zarr>=3", "s3fs": "s3fs", "matplotlib": "matplotlib"}


def missing_packages(*modules):
    """Return the modules among ``modules`` that cannot be imported."""
    missing = []
    for module in modules:
        try:
            imported = importlib.import_module(module)
        except ImportError:
            missing.append(module)
            continue
        if module == "zarr" and int(imported.__version__.split(".")[0]) < 3:
            missing.append(module)
    return missing


def require(*modules, purpose="Tessera"):
    """Raise a :class:`TesseraError` telling how to install what is missing."""
    missing = missing_packages(*modules)
    if missing:
        specs = " ".join(f'"{PIP_NAMES.get(m, m)}"' for m in missing)
        raise TesseraError(
            f"{purpose} needs the Python package(s) {', '.join(missing)}, which "
            "cannot be imported in this Python. Install them into the Python that "
            f"QGIS uses, for example: python3 -m pip install --user {specs} "
            "(on Windows, run it in the OSGeo4W Shell), then restart QGIS."
        )
