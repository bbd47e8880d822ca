"""Whether the algorithms can run and say why not (canExecute with a package missing),
their Help pages, the first-run compilation of the engine, and the desktop side that
offers the install and shows the engine's preparation."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import PLUGINS_DIR, REPO


def _tessera_algorithms(provider):
    from tessera.algorithms.base import TesseraAlgorithm

    algorithms = [a for a in provider.algorithms() if isinstance(a, TesseraAlgorithm)]
    assert len(algorithms) >= 7
    return algorithms


def test_every_algorithm_names_a_hidden_dependency_in_can_execute(tessera_provider,
                                                                  monkeypatch):
    from tessera.engine import dependencies

    algorithms = _tessera_algorithms(tessera_provider)
    for algorithm in algorithms:
        assert algorithm.canExecute() == (True, ""), algorithm.id()
    hidden_any = False
    for module in ("numba", "zarr", "shapely"):
        monkeypatch.setattr(dependencies, "missing_packages",
                            lambda *modules, hidden=module: [m for m in modules if m == hidden])
        for algorithm in algorithms:
            ok, message = algorithm.canExecute()
            if module in algorithm.REQUIRES:
                hidden_any = True
                assert not ok, (algorithm.id(), module)
                assert module in message and "Install Python dependencies" in message
                assert "tessera.installer install" in message
            else:
                assert ok, (algorithm.id(), module, message)
    assert hidden_any


def test_can_execute_without_numba_importable(tmp_path):
    """numba really missing (imports blocked): the provider loads, each algorithm that needs
    numba says so before running, the RAT tools stay usable."""
    script = textwrap.dedent(f"""
        import sys
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("numba", "llvmlite"):
                    raise ImportError("blocked for this test: " + name)
        sys.meta_path.insert(0, Blocker())
        sys.path.insert(0, {PLUGINS_DIR!r})
        from qgis.core import QgsApplication
        app = QgsApplication([], False)
        app.initQgis()
        from tessera.plugin import TesseraPlugin
        plugin = TesseraPlugin()
        plugin.initProcessing()
        for algorithm in plugin.provider.algorithms():
            ok, message = algorithm.canExecute()
            print(algorithm.id(), ok, message.replace("\\n", " "))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=dict(os.environ,
                                                              QT_QPA_PLATFORM="offscreen"))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    for needs_numba in ("segmentstats", "segmentspatialstats", "zonalstats",
                        "globalregression", "localblockadjustment"):
        line = lines[f"tessera:{needs_numba}"]
        assert " False " in line and "numba" in line, line
    assert " True" in lines["tessera:exportrat"]


def test_help_url_points_to_the_built_page_of_every_algorithm(tessera_provider, tmp_path,
                                                             monkeypatch):
    from tessera.algorithms import readiness

    monkeypatch.setattr(readiness, "HELP_DIR", str(tmp_path / "absent"))
    algorithms = _tessera_algorithms(tessera_provider)
    assert all(a.helpUrl() == "" for a in algorithms)  # no page, no broken Help button

    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "build_help.py"),
                           REPO, "--output", str(tmp_path / "help")], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ,
                                                           QT_QPA_PLATFORM="offscreen"))
    assert done.returncode == 0, done.stderr
    monkeypatch.setattr(readiness, "HELP_DIR", str(tmp_path / "help"))
    for algorithm in algorithms:
        url = algorithm.helpUrl()
        assert url.startswith("file://"), (algorithm.id(), url)
        path = url[len("file://"):]
        assert os.path.isfile(path), url
        with open(path, encoding="utf-8") as stream:
            page = stream.read()
        assert algorithm.displayName() in page
        for parameter in algorithm.parameterDefinitions():
            assert f"({parameter.name()})" in page, (algorithm.id(), parameter.name())


class _Feedback:
    def __init__(self):
        self.texts = []

    def setProgressText(self, text):  # noqa: N802 (QGIS API)
        self.texts.append(text)


def test_algorithms_say_when_the_engine_compiles(monkeypatch):
    from tessera.algorithms import readiness
    from tessera.engine import compilation

    monkeypatch.setattr(compilation, "is_prepared", lambda version: False)
    monkeypatch.setattr(compilation, "kernels_cached", lambda: True)
    feedback = _Feedback()
    readiness.announce_compilation(feedback, ("numba",), "0.2.0")  # compiled by earlier runs
    assert feedback.texts == []
    monkeypatch.setattr(compilation, "kernels_cached", lambda: False)
    readiness.announce_compilation(feedback, ("numba",), "0.2.0")
    assert feedback.texts == ["Compiling the engine (first run after install) …"]
    readiness.announce_compilation(feedback, (), "0.2.0")  # RAT tools compile nothing
    assert len(feedback.texts) == 1
    monkeypatch.setattr(compilation, "is_prepared", lambda version: True)
    readiness.announce_compilation(feedback, ("numba",), "0.2.0")
    assert len(feedback.texts) == 1


def test_segmentstats_progress_says_compiling_before_the_engine_is_prepared(
        run_algorithm, tmp_path, monkeypatch):
    import numpy as np
    from qgis.core import QgsProcessingFeedback
    from raster_files import write_raster

    from tessera.engine import compilation

    monkeypatch.setattr(compilation, "is_prepared", lambda version: False)
    monkeypatch.setattr(compilation, "kernels_cached", lambda: False)
    seg = write_raster(tmp_path / "seg.tif", (np.arange(64).reshape(8, 8) // 8 + 1)
                       .astype(np.uint16))
    image = write_raster(tmp_path / "img.tif", np.arange(64, dtype=np.uint16).reshape(8, 8))
    texts = []

    class Feedback(QgsProcessingFeedback):
        def setProgressText(self, text):  # noqa: N802 (QGIS API)
            texts.append(text)
            super().setProgressText(text)

    feedback = Feedback()
    run_algorithm("segmentstats", {"SEGMENTS": seg, "IMAGE": image, "STATISTICS": ["mean"]},
                  feedback=feedback)
    assert "Compiling the engine (first run after install) …" in texts


def test_prepare_compiles_the_kernels_and_leaves_a_stamp(tmp_path):
    """In a fresh numba cache: prepare() compiles, writes the stamp; the next process finds
    the kernels in the cache (no compilation) and the engine prepared for this version."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    prelude = f"import sys\nsys.path.insert(0, {PLUGINS_DIR!r})\n"
    first = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent("""
        from tessera.engine import compilation
        assert not compilation.is_prepared("9.9.9") and not compilation.kernels_cached()
        steps = []
        print("STAMP", compilation.prepare("9.9.9", progress=lambda f, m="": steps.append(m)))
        print("STEPS", len(set(steps)))
    """)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    stamp = first.stdout.split("STAMP", 1)[1].split()[0]
    assert stamp.startswith(str(tmp_path / "numba-cache"))
    assert "tessera 9.9.9" in open(stamp, encoding="utf-8").read()
    second = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent("""
        import numpy as np
        from tessera.engine import compilation, segment_stats
        from tessera.engine.io.raster_io import write_array
        from tessera.engine.statistics.kernels import zone_statistics
        assert compilation.is_prepared("9.9.9") and not compilation.is_prepared("9.9.10")
        assert compilation.kernels_cached()
        write_array("seg.tif", (np.arange(100).reshape(10, 10) // 10 + 1).astype("uint32"))
        write_array("img.tif", np.arange(300, dtype="uint16").reshape(3, 10, 10))
        segment_stats("seg.tif", "img.tif", statistics=["mean"])
        print("HITS", sum(zone_statistics.stats.cache_hits.values()),
              "MISSES", sum(zone_statistics.stats.cache_misses.values()))
    """)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "MISSES 0" in second.stdout and "HITS 0" not in second.stdout, second.stdout


def test_cancelled_preparation_leaves_no_stamp(monkeypatch, tmp_path):
    from tessera.engine import compilation
    from tessera.engine.errors import CancelledError

    monkeypatch.setattr(compilation, "cache_folder", lambda: str(tmp_path))
    with pytest.raises(CancelledError):
        compilation.prepare("9.9.9", cancelled=lambda: True)
    assert not compilation.is_preparing()
    assert os.listdir(tmp_path) == []


# --- the desktop side, with a stand-in for QGIS's interface ------------------------------

class _Interface:
    """What the set-up assistant uses of ``iface``: a real message bar and the menu."""

    def __init__(self):
        from qgis.gui import QgsMessageBar
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.bar = QgsMessageBar(self.window)
        self.menu = []

    def mainWindow(self):  # noqa: N802 (QGIS API)
        return self.window

    def messageBar(self):  # noqa: N802 (QGIS API)
        return self.bar

    def addPluginToMenu(self, menu, action):  # noqa: N802 (QGIS API)
        self.menu.append((menu, action.text()))

    def removePluginMenu(self, menu, action):  # noqa: N802 (QGIS API)
        self.menu.remove((menu, action.text()))


def _texts(iface):
    from qgis.PyQt.QtWidgets import QPushButton

    items = []
    for item in iface.bar.items():
        buttons = [b.text() for b in item.findChildren(QPushButton) if b.text()]
        items.append((item.text(), buttons))
    return items


def _wait_for(condition, seconds=60):
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert condition()


def test_missing_package_offers_install_and_the_install_runs_in_a_task(qgis_app, monkeypatch,
                                                                       tmp_path):
    from qgis.PyQt.QtWidgets import QPushButton

    from tessera.desktop import dependency_install, setup_assistant

    missing = ["numba"]
    monkeypatch.setattr(dependency_install, "missing_required", lambda: list(missing))
    monkeypatch.setattr(setup_assistant, "missing_required", lambda: list(missing))
    monkeypatch.setenv("TESSERA_PACKAGES", str(tmp_path / "tessera-packages"))
    prepared = []
    monkeypatch.setattr(setup_assistant.SetupAssistant, "prepare_engine",
                        lambda self: prepared.append(True))
    calls = []

    def fake_install(**kwargs):
        calls.append(kwargs)
        kwargs["output"]("Collecting numba")
        missing.clear()
        return [("numba", "0.68.1")]

    monkeypatch.setattr(dependency_install.installer, "install", fake_install)
    iface = _Interface()
    assistant = setup_assistant.SetupAssistant(iface)
    assistant.start()
    assert iface.menu == [("&Tessera", "Install Python dependencies…")]
    [(text, buttons)] = _texts(iface)
    assert "numba" in text and buttons == ["Install"]

    [button] = [b for b in iface.bar.items()[0].findChildren(QPushButton)
                if b.text() == "Install"]
    button.click()
    _wait_for(lambda: any("installed numba 0.68.1" in t for t, _ in _texts(iface)))
    assert calls[0]["target"] == str(tmp_path / "tessera-packages")
    assert prepared == [True]  # then the engine is prepared
    assistant.stop()
    assert iface.menu == [] and iface.bar.items() == []


def test_failed_install_says_so_and_offers_to_try_again(qgis_app, monkeypatch, tmp_path):
    from tessera.desktop import dependency_install, setup_assistant

    monkeypatch.setattr(setup_assistant, "missing_required", lambda: ["zarr"])
    monkeypatch.setenv("TESSERA_PACKAGES", str(tmp_path / "tessera-packages"))

    def failing_install(**kwargs):
        raise dependency_install.installer.InstallError("pip failed (exit code 1); nothing "
                                                        "was changed.\nERROR: no network")

    monkeypatch.setattr(dependency_install.installer, "install", failing_install)
    iface = _Interface()
    assistant = setup_assistant.SetupAssistant(iface)
    assistant.install()
    _wait_for(lambda: any("pip failed" in t for t, _ in _texts(iface)))
    [(text, buttons)] = _texts(iface)
    assert "nothing was changed" in text and buttons == ["Try again"]
    assistant.stop()


def test_installed_packages_that_fail_to_import_ask_for_a_restart(qgis_app, monkeypatch,
                                                                 tmp_path):
    import json

    from tessera.desktop import dependency_install, setup_assistant

    target = tmp_path / "tessera-packages"
    target.mkdir()
    (target / "tessera-packages.json").write_text(json.dumps(
        {"python": "3.11", "installed": [["zarr", "3.1.5"], ["numpy", "1.26.4"]]}))
    monkeypatch.setenv("TESSERA_PACKAGES", str(target))
    monkeypatch.setattr(setup_assistant, "missing_required", lambda: ["zarr"])
    real_import = dependency_install.importlib.import_module

    def failing_import(name, *args):
        if name == "zarr":
            raise ImportError("numpy >= 1.25 required, 1.24.2 loaded")
        return real_import(name, *args)

    monkeypatch.setattr(dependency_install.importlib, "import_module", failing_import)
    iface = _Interface()
    assistant = setup_assistant.SetupAssistant(iface)
    assistant.offer_install(["zarr"])
    [(text, buttons)] = _texts(iface)
    assert "do not import" in text and "numpy >= 1.25 required" in text
    assert "restart QGIS" in text and buttons == ["Reinstall"]
    assistant.stop()


def test_first_start_shows_the_engine_preparation_with_cancel(qgis_app, monkeypatch):
    from tessera.desktop import setup_assistant
    from tessera.engine import compilation

    monkeypatch.setattr(setup_assistant, "missing_required", lambda: [])
    monkeypatch.setattr(compilation, "is_prepared", lambda version: False)
    seen = []

    def fake_prepare(version, progress, cancelled):
        progress(0.5, "Compiling per-segment statistics")
        time.sleep(0.3)
        seen.append(version)

    monkeypatch.setattr(compilation, "prepare", fake_prepare)
    iface = _Interface()
    assistant = setup_assistant.SetupAssistant(iface)
    assistant.start()
    _wait_for(lambda: any("preparing the engine, once per installation" in t
                          for t, _ in _texts(iface)))
    assert any(buttons == ["Cancel"] for _, buttons in _texts(iface))
    _wait_for(lambda: any("the engine is ready" in t for t, _ in _texts(iface)))
    assert len(seen) == 1
    assistant.stop()


def test_prepared_engine_starts_without_a_word(qgis_app, monkeypatch):
    from tessera.desktop import setup_assistant
    from tessera.engine import compilation

    monkeypatch.setattr(setup_assistant, "missing_required", lambda: [])
    monkeypatch.setattr(compilation, "is_prepared", lambda version: True)
    iface = _Interface()
    assistant = setup_assistant.SetupAssistant(iface)
    assistant.start()
    _wait_for(lambda: setup_assistant._active(assistant.prepare_task) is False)
    assert _texts(iface) == []
    assistant.stop()
