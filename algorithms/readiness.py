"""Whether an algorithm can run here, and where its help is: the parts of the base class
that look at the installation (missing packages, the engine's first compilation, the help
pages that ship in the plugin zip)."""

import os

from qgis.PyQt.QtCore import QUrl

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELP_DIR = os.path.join(PLUGIN_DIR, "help")
COMPILING = "Compiling the engine (first run after install) …"


def missing_requirements(display_name, requires):
    """``(True, "")``, or ``(False, message)`` naming the missing packages and how to
    install them (the return value of ``canExecute``)."""
    from ..engine.dependencies import install_hint, missing_packages

    missing = missing_packages(*requires)
    if not missing:
        return True, ""
    return False, (f"{display_name} needs the Python package(s) {', '.join(missing)}, "
                   f"which cannot be imported in QGIS's Python. {install_hint(missing)}")


def help_path(name):
    return os.path.join(HELP_DIR, f"{name}.html")


def help_url(name):
    """``file://`` URL of the algorithm's help page (built by scripts/build_help.py into
    the plugin zip), or "" when it is not there."""
    path = help_path(name)
    return QUrl.fromLocalFile(path).toString() if os.path.exists(path) else ""


def announce_compilation(feedback, requires, version):
    """Say in the progress text when the numba kernels are still to be compiled."""
    if feedback is None or "numba" not in requires:
        return
    from ..engine import compilation

    if compilation.is_preparing() or not (compilation.is_prepared(version)
                                          or compilation.kernels_cached()):
        feedback.setProgressText(COMPILING)
