"""What a desktop user sees of the installation: Plugins > Tessera > Install Python
dependencies, a message bar with an Install button when a package is missing, the
install's progress, and "preparing the engine, once per installation" with Cancel."""

from qgis.core import QgsApplication, QgsMessageLog
from qgis.PyQt.QtWidgets import QProgressBar, QPushButton

from ..algorithms.base import plugin_icon, plugin_version
from ..algorithms.qgis_compat import (
    MESSAGE_CRITICAL,
    MESSAGE_INFO,
    MESSAGE_SUCCESS,
    MESSAGE_WARNING,
    TASK_COMPLETE,
    TASK_TERMINATED,
)
from .dependency_install import (
    LOG_TAG,
    InstallTask,
    import_problems,
    missing_required,
    packages_folder,
)
from .engine_preparation import PrepareEngineTask

try:  # Qt6 moved QAction to QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:
    from qgis.PyQt.QtWidgets import QAction

MENU = "&Tessera"


class SetupAssistant:
    """Owns the menu action, the message bar items and the two background tasks."""

    def __init__(self, iface):
        self.iface = iface
        self.action = None
        self.install_task = None
        self.prepare_task = None
        self.items = {}  # message bar items by purpose

    def start(self):
        self.action = QAction(plugin_icon(), "Install Python dependencies…",
                              self.iface.mainWindow())
        self.action.triggered.connect(lambda: self.install())
        self.iface.addPluginToMenu(MENU, self.action)
        missing = missing_required()
        if missing:
            self.offer_install(missing)
        else:
            self.prepare_engine()

    def stop(self):
        for task in (self.install_task, self.prepare_task):
            if task is not None and _active(task):
                task.cancel()
        for purpose in list(self.items):
            self._pop(purpose)
        if self.action is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.action = None

    # --- message bar ---------------------------------------------------------------
    def _push(self, purpose, text, level, buttons=(), progress=None, duration=0):
        self._pop(purpose)
        bar = self.iface.messageBar()
        widget = bar.createMessage("Tessera", text)
        if progress is not None:
            widget.layout().addWidget(progress)
        for label, callback in buttons:
            button = QPushButton(label)
            button.clicked.connect(callback)
            widget.layout().addWidget(button)
        self.items[purpose] = widget
        bar.pushWidget(widget, level, duration)
        return widget

    def _pop(self, purpose):
        widget = self.items.pop(purpose, None)
        if widget is not None:
            try:
                self.iface.messageBar().popWidget(widget)
            except RuntimeError:  # already closed by the user (C++ object deleted)
                pass

    # --- dependencies ---------------------------------------------------------------
    def offer_install(self, missing):
        problems = import_problems(missing)
        if problems:
            for module, error in problems.items():
                QgsMessageLog.logMessage(f"{module} does not import: {error}", LOG_TAG,
                                         MESSAGE_WARNING)
            module, error = next(iter(problems.items()))
            self._push("install",
                       f"the packages installed in {packages_folder()} do not import ({module}: "
                       f"{error[:160]}). Another plugin may have loaded an older numpy first: "
                       "restart QGIS; if this persists, reinstall.", MESSAGE_WARNING,
                       buttons=[("Reinstall", lambda: self.install())])
            return
        self._push("install",
                   f"needs the Python package(s) {', '.join(missing)}: the algorithms that use "
                   "them cannot run until they are installed. Install them into the QGIS "
                   "profile (QGIS's own packages stay as they are)?", MESSAGE_WARNING,
                   buttons=[("Install", lambda: self.install())])

    def install(self):
        if self.install_task is not None and _active(self.install_task):
            return
        task = InstallTask()
        progress = QProgressBar()
        progress.setRange(0, 100)
        widget = self._push("install", "installing Python dependencies… (pip's output: "
                            "View > Panels > Log Messages, tab Tessera)", MESSAGE_INFO,
                            buttons=[("Cancel", lambda: task.cancel())], progress=progress)

        def show_progress(value):
            progress.setValue(int(value))
            if task.last_line:
                try:
                    widget.setText(f"installing… {task.last_line[:120]}")
                except (AttributeError, RuntimeError):
                    pass

        self.install_task = _start(task, show_progress, self._installed, self._install_failed)

    def _installed(self, task):
        self._pop("install")
        from .dependency_install import activate_packages_folder

        activate_packages_folder()
        names = ", ".join(f"{name} {version}" for name, version in task.installed) or "nothing"
        if task.restart_needed() or missing_required():
            self._push("install", f"installed {names} into {packages_folder()}. Restart QGIS "
                       "to use them.", MESSAGE_WARNING)
            return
        self._push("install", f"installed {names}; the algorithms can run.", MESSAGE_SUCCESS,
                   duration=10)
        self.prepare_engine()

    def _install_failed(self, task):
        self._pop("install")
        error = task.error or "The install was cancelled; nothing was changed."
        QgsMessageLog.logMessage(error, LOG_TAG, MESSAGE_CRITICAL)
        first = error.splitlines()[0]
        self._push("install", f"{first} Details: View > Panels > Log Messages, tab Tessera.",
                   MESSAGE_CRITICAL, buttons=[("Try again", lambda: self.install())])

    # --- first compilation ------------------------------------------------------------
    def prepare_engine(self):
        if self.prepare_task is not None and _active(self.prepare_task):
            return
        task = PrepareEngineTask(plugin_version())
        progress = QProgressBar()
        progress.setRange(0, 100)

        def show_progress(value):
            if task.needed and "prepare" not in self.items:
                self._push("prepare", "preparing the engine, once per installation "
                           "(compiling its kernels; algorithms started meanwhile wait for it)…",
                           MESSAGE_INFO, buttons=[("Cancel", lambda: task.cancel())],
                           progress=progress)
            try:
                progress.setValue(int(value))
            except RuntimeError:
                pass

        self.prepare_task = _start(task, show_progress, self._prepared, self._prepare_stopped)

    def _prepared(self, task):
        if task.needed:
            self._pop("prepare")
            self._push("prepare", "the engine is ready.", MESSAGE_SUCCESS, duration=5)

    def _prepare_stopped(self, task):
        self._pop("prepare")
        if task.error:
            QgsMessageLog.logMessage(f"Preparing the engine failed: {task.error}\n"
                                     f"{task.details}", LOG_TAG, MESSAGE_WARNING)
        self._push("prepare", "engine preparation stopped; the first algorithm run compiles "
                   "what it needs.", MESSAGE_INFO, duration=8)


def _active(task):
    try:
        return task.status() not in (TASK_COMPLETE, TASK_TERMINATED)
    except RuntimeError:  # the task manager deleted the C++ task
        return False


def _start(task, show_progress, completed, terminated):
    """Run ``task`` in QGIS's task manager, reporting to the given callables."""
    task.progressChanged.connect(show_progress)
    task.taskCompleted.connect(lambda: completed(task))
    task.taskTerminated.connect(lambda: terminated(task))
    QgsApplication.taskManager().addTask(task)
    return task
