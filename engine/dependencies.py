"""Checks for the optional Python packages the engine needs."""

import importlib

from .errors import TesseraError

PIP_NAMES = {"numba": "numba", "zarr": "zarr>=3,<3.1.6", "shapely": "shapely>=2",
             "s3fs": "s3fs", "matplotlib": "matplotlib",
             "distributed": "dask[distributed]"}
OPTIONAL = ("s3fs", "matplotlib", "distributed")


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


def install_hint(missing):
    """How to install the ``missing`` modules, for QGIS users and for plain Python."""
    specs = " ".join(f'"{PIP_NAMES.get(m, m)}"' for m in missing)
    extras = "".join(f" --with {m}" for m in missing if m in OPTIONAL)
    return (
        "In QGIS: Plugins > Tessera > Install Python dependencies (or the Install button of "
        "the message bar); it installs into a folder of the QGIS profile and leaves QGIS's own "
        "packages as they are. From a shell, with the Python QGIS runs on: "
        f"python3 -m tessera.installer install{extras} (see the README). "
        f"In plain Python: python -m pip install {specs}."
    )


def require(*modules, purpose="Tessera"):
    """Raise a :class:`TesseraError` telling how to install what is missing."""
    missing = missing_packages(*modules)
    if missing:
        raise TesseraError(
            f"{purpose} needs the Python package(s) {', '.join(missing)}, which "
            f"cannot be imported in this Python. {install_hint(missing)}"
        )
