"""The plugin object: registers the Tessera Processing provider."""

from qgis.core import QgsApplication

from .provider.tessera_provider import TesseraProvider


class TesseraPlugin:
    """Adds the provider on start and removes it on unload."""

    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None
        self.setup = None  # desktop only: dependency install and engine preparation

    def initProcessing(self):  # noqa: N802 (QGIS API)
        if self.provider is not None:
            return
        provider = TesseraProvider()
        # addProvider returning False deletes the provider: keep no reference then.
        if QgsApplication.processingRegistry().addProvider(provider):
            self.provider = provider
            provider.refreshAlgorithms()  # now the bundled models find their steps

    def initGui(self):  # noqa: N802 (QGIS API)
        self.initProcessing()
        if self.iface is not None and self.setup is None:
            from .desktop.setup_assistant import SetupAssistant

            self.setup = SetupAssistant(self.iface)
            self.setup.start()

    def unload(self):
        if self.setup is not None:
            self.setup.stop()
            self.setup = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
