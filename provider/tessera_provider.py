"""The Tessera Processing provider."""

from qgis.core import QgsProcessingProvider

from ..algorithms import all_algorithms
from ..algorithms.base import plugin_icon, plugin_version


class TesseraProvider(QgsProcessingProvider):
    """Provider ``tessera``: one algorithm per module of ``algorithms/``."""

    def id(self):
        return "tessera"

    def name(self):
        return "Tessera"

    def longName(self):  # noqa: N802 (QGIS API)
        return f"Tessera {plugin_version()}"

    def icon(self):
        return plugin_icon()

    def versionInfo(self):  # noqa: N802 (QGIS API)
        return plugin_version()

    def loadAlgorithms(self):  # noqa: N802 (QGIS API)
        for algorithm in all_algorithms():
            self.addAlgorithm(algorithm)
