"""The Tessera Processing provider."""

import glob
import os

from qgis.core import (
    QgsApplication,
    QgsMessageLog,
    QgsProcessingModelAlgorithm,
    QgsProcessingProvider,
)

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
        # A model knows its outputs only when its steps' algorithms can be found: the
        # models are added by the refresh that follows the provider's registration.
        if QgsApplication.processingRegistry().providerById(self.id()) is self:
            for model in bundled_models():
                self.addAlgorithm(model)


MODELS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "models")


class BundledModel(QgsProcessingModelAlgorithm):
    """A model of ``resources/models`` whose id is its file name (no spaces:
    ``tessera:normalize_and_summarize``) and whose display name is the model's own."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.loaded = self.fromFile(path)

    def name(self):
        return os.path.splitext(os.path.basename(self.path))[0]

    def displayName(self):  # noqa: N802 (QGIS API)
        return super().name()

    def createInstance(self):  # noqa: N802 (QGIS API)
        return BundledModel(self.path)


def bundled_models():
    """The graphical models shipped in ``resources/models`` (e.g. normalize and summarize)."""
    for path in sorted(glob.glob(os.path.join(MODELS, "*.model3"))):
        model = BundledModel(path)
        if model.loaded:
            yield model
        else:
            QgsMessageLog.logMessage(f"Could not load the model {path}", "Tessera")
