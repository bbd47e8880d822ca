"""Tessera QGIS plugin: Processing algorithms over a numba engine.

This module stays free of QGIS imports so that ``tessera.engine`` can be
imported from plain Python.
"""


def classFactory(iface):  # noqa: N802 (QGIS plugin entry point name)
    """Return the plugin object QGIS loads (after putting the packages the plugin
    installed, if any, on ``sys.path``)."""
    from .desktop.dependency_install import activate_packages_folder

    activate_packages_folder()
    from .plugin import TesseraPlugin

    return TesseraPlugin(iface)
