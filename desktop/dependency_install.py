"""Installing missing Python packages from QGIS: the plugin's packages folder on
``sys.path``, and a background task that runs :mod:`tessera.installer` with pip's
output in the log panel (tab Tessera) and the message bar."""

import importlib
import os
import sys

from qgis.core import QgsApplication, QgsMessageLog, QgsTask

from .. import installer
from ..algorithms.qgis_compat import MESSAGE_INFO, TASK_CAN_CANCEL

LOG_TAG = "Tessera"
#: Modules every algorithm group needs (engine.dependencies names).
REQUIRED = ("numba", "zarr", "shapely")


def packages_folder():
    """``<profile>/python/tessera-packages`` (or ``$TESSERA_PACKAGES``)."""
    return installer.default_target(os.path.join(QgsApplication.qgisSettingsDirPath(), "python"))


def activate_packages_folder():
    """Put the packages folder on ``sys.path`` when it exists (at plugin load)."""
    return installer.activate(packages_folder())


def missing_required():
    from ..engine.dependencies import missing_packages

    return missing_packages(*REQUIRED)


def import_problems(missing):
    """``{module: error}`` for the ``missing`` modules that the packages folder holds yet
    fail to import (e.g. another plugin loaded an older numpy before Tessera's folder was
    on the path): installing again would not help, a restart may."""
    target = packages_folder()
    record = installer.read_record(target)
    held = {name.lower().replace("-", "_") for name, _ in record.get("installed", [])}
    problems = {}
    for module in missing:
        if module not in held:
            continue
        try:
            importlib.import_module(module)
        except Exception as error:  # any import failure is worth reporting
            problems[module] = f"{type(error).__name__}: {error}"
    return problems


class InstallTask(QgsTask):
    """``installer.install`` in the background; ``last_line`` holds pip's latest output."""

    def __init__(self, extras=()):
        super().__init__("Tessera: installing Python dependencies", TASK_CAN_CANCEL)
        self.extras = tuple(extras)
        self.target = packages_folder()
        self.installed = None
        self.error = None
        self.last_line = ""
        self.lines = 0

    def run(self):
        search_path = [p for p in sys.path if p and os.path.abspath(p) != self.target]
        try:
            self.installed = installer.install(target=self.target, extras=self.extras,
                                               output=self._output, cancelled=self.isCanceled,
                                               search_path=search_path)
            return True
        except Exception as error:  # reported by finished(), in the main thread
            self.error = str(error) or type(error).__name__
            return False

    def _output(self, line):
        QgsMessageLog.logMessage(line, LOG_TAG, MESSAGE_INFO)
        if line.strip():
            self.last_line = line.strip()
        self.lines += 1
        # pip gives no overall fraction: approach 95 % with each line of output
        self.setProgress(95.0 * self.lines / (self.lines + 25.0))

    def restart_needed(self):
        """Whether an installed package is already imported at another version (numpy,
        typically): then it takes effect only after QGIS restarts."""
        for name, version in self.installed or ():
            module = sys.modules.get(name.lower().replace("-", "_"))
            loaded = getattr(module, "__version__", None)
            if loaded is not None and loaded != version:
                return True
        return False
