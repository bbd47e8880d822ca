"""The Tessera Processing provider."""

import glob
import os

from qgis.core import QgsMessageLog, QgsProcessingModelAlgorithm, QgsProcessingProvider

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
        for model in bundled_models():
            self.addAlgorithm(model)


MODELS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "models")


def bundled_models():
    """The graphical models shipped in ``resources/models`` (e.g. normalize and summarize)."""
    for path in sorted(glob.glob(os.path.join(MODELS, "*.model3"))):
        model = QgsProcessingModelAlgorithm()
        if model.fromFile(path):
            yield model
        else:
            QgsMessageLog.logMessage(f"Could not load the model {path}", "Tessera")
