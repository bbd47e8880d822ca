"""The engine's first compilation (see ``engine/compilation.py``) in a background task."""

import traceback

from qgis.core import QgsTask

from ..algorithms.qgis_compat import TASK_CAN_CANCEL


class PrepareEngineTask(QgsTask):
    """Compiles the kernels unless this version was prepared already (``needed`` then stays
    False and the task ends at once, without a word)."""

    def __init__(self, version):
        super().__init__("Tessera: preparing the engine (once per installation)",
                         TASK_CAN_CANCEL)
        self.version = version
        self.needed = False
        self.error = None
        self.details = ""  # the traceback, for the log panel

    def run(self):
        from ..engine import compilation
        from ..engine.errors import CancelledError

        try:
            if compilation.is_prepared(self.version):
                return True
            self.needed = True
            self.setProgress(1.0)  # tells the main thread to show the message bar
            compilation.prepare(self.version, progress=self._progress,
                                cancelled=self.isCanceled)
            return True
        except CancelledError:
            return False
        except Exception as error:  # reported in the main thread
            self.error = str(error) or type(error).__name__
            self.details = traceback.format_exc()
            return False

    def _progress(self, fraction, message=""):
        self.setProgress(max(1.0, 100.0 * fraction))
