"""The plugin as QGIS sees it: metadata, provider, Processing, qgis_process,
background tasks, the engine's independence from QGIS, numba's cache and
missing dependencies."""

import configparser
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
from conftest import PLUGINS_DIR, REPO
from raster_files import blocky_segments, read_rat, write_raster


def test_metadata_has_every_field_the_plugin_repository_requires():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "metadata.txt"), encoding="utf-8")
    general = parser["general"]
    for key in ("name", "description", "about", "version", "qgisMinimumVersion", "author",
                "email", "tracker", "repository", "homepage", "tags", "category", "icon"):
        assert general.get(key, "").strip(), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["category"] == "Raster"
    assert general["hasProcessingProvider"] == "yes"
    assert general["supportsQt6"] == "True"
    assert os.path.exists(os.path.join(REPO, general["icon"]))
    assert os.path.exists(os.path.join(REPO, "LICENSE"))


def test_provider_is_registered_with_its_algorithms(tessera_provider):
    from qgis.core import QgsApplication

    provider = QgsApplication.processingRegistry().providerById("tessera")
    assert provider is tessera_provider
    assert provider.name() == "Tessera"
    assert not provider.icon().isNull()
    ids = {alg.id() for alg in provider.algorithms()}
    assert "tessera:segmentstats" in ids
    for algorithm in provider.algorithms():
        assert algorithm.displayName() and algorithm.group() and algorithm.shortHelpString()
        for parameter in algorithm.parameterDefinitions():
            assert parameter.help(), f"{algorithm.id()} {parameter.name()} has no help"


def _small_case(tmp_path):
    seg = blocky_segments(60, 80, 6, 8, seed=3)
    image = np.random.default_rng(3).integers(1, 500, (60, 80)).astype(np.uint16)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image, nodata=0)
    means = {sid: image[seg == sid].mean() for sid in np.unique(seg)}
    return seg_path, image_path, means


def test_segmentstats_through_processing_run(run_algorithm, tmp_path):
    seg_path, image_path, means = _small_case(tmp_path)
    results = run_algorithm("segmentstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                             "STATISTICS": ["mean", "median"]})
    assert results["COLUMNS"] == "b1_mean,b1_median"
    assert results["SEGMENT_COUNT"] == len(means)
    rat = read_rat(seg_path)
    for sid, mean in means.items():
        assert rat["b1_mean"][sid] == pytest.approx(mean, rel=1e-12)


def test_qgis_process_lists_provider_and_runs_segmentstats(qgis_process, tmp_path):
    code, listing, output = qgis_process("list")
    assert code == 0, output
    assert "tessera" in listing["providers"], output
    assert "tessera:segmentstats" in listing["providers"]["tessera"]["algorithms"]

    seg_path, image_path, means = _small_case(tmp_path)
    code, result, output = qgis_process(
        "run", "tessera:segmentstats", "--", f"SEGMENTS={seg_path}", f"IMAGE={image_path}",
        "STATISTICS=pixcount,mean,median", "PERCENTILES=25,75")
    assert code == 0, output
    assert result["results"]["COLUMNS"] == "b1_pixcount,b1_mean,b1_median,b1_p25,b1_p75"
    assert result["results"]["SEGMENT_COUNT"] == len(means)
    rat = read_rat(seg_path)
    for sid, mean in means.items():
        assert rat["b1_mean"][sid] == pytest.approx(mean, rel=1e-12)


def test_qgis_process_reports_bad_input_without_traceback(qgis_process, tmp_path):
    seg_path, _, _ = _small_case(tmp_path)
    other = write_raster(tmp_path / "other.tif", np.ones((61, 80), np.uint16))
    code, _, output = qgis_process("run", "tessera:segmentstats", "--", f"SEGMENTS={seg_path}",
                                   f"IMAGE={other}")
    assert code != 0
    assert "same grid" in output and "Traceback" not in output


def _run_task(algorithm_id, parameters, cancel_on_progress=False):
    from qgis.core import (
        QgsApplication,
        QgsProcessingAlgRunnerTask,
        QgsProcessingContext,
        QgsProcessingFeedback,
    )
    from qgis.PyQt.QtCore import QCoreApplication

    algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
    context = QgsProcessingContext()
    feedback = QgsProcessingFeedback()
    if cancel_on_progress:
        feedback.progressChanged.connect(lambda value: value > 0 and feedback.cancel())
    task = QgsProcessingAlgRunnerTask(algorithm, parameters, context, feedback)
    outcome = {}
    task.executed.connect(lambda ok, results: outcome.update(ok=ok, results=results))
    QgsApplication.taskManager().addTask(task)
    deadline = time.time() + 300
    while "ok" not in outcome and time.time() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert "ok" in outcome, "the task did not finish"
    return outcome


def test_segmentstats_runs_in_a_background_task(tessera_provider, tmp_path):
    seg_path, image_path, means = _small_case(tmp_path)
    outcome = _run_task("tessera:segmentstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                                 "STATISTICS": ["mean"]})
    assert outcome["ok"]
    assert outcome["results"]["SEGMENT_COUNT"] == len(means)
    assert read_rat(seg_path)["b1_mean"][next(iter(means))] == pytest.approx(
        next(iter(means.values())))


def test_cancelled_task_leaves_the_rat_as_it_was(tessera_provider, tmp_path):
    seg = blocky_segments(1500, 1500, 10, 10, seed=5)
    image = np.random.default_rng(5).integers(1, 1000, (1500, 1500)).astype(np.uint16)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    outcome = _run_task("tessera:segmentstats",
                        {"SEGMENTS": seg_path, "IMAGE": image_path, "STATISTICS": ["mean"]},
                        cancel_on_progress=True)
    assert not outcome["ok"]
    assert read_rat(seg_path) == {}
    assert not os.path.exists(seg_path + ".aux.xml")


def _python_with_blocked_modules(code, blocked, cwd, **env):
    """Run ``code`` in a fresh interpreter where importing ``blocked`` fails."""
    prelude = textwrap.dedent(f"""
        import sys
        BLOCKED = {tuple(blocked)!r}
        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked for this test: " + name)
        sys.meta_path.insert(0, Blocker())
        sys.path.insert(0, {PLUGINS_DIR!r})
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env))


def test_engine_never_imports_qgis(tmp_path):
    done = _python_with_blocked_modules("""
        import importlib, pkgutil
        import numpy as np
        import tessera.engine as engine
        for module in pkgutil.walk_packages(engine.__path__, "tessera.engine."):
            importlib.import_module(module.name)
        from tessera.engine import segment_stats
        from tessera.engine.io.raster_io import write_array
        write_array("seg.tif", (np.arange(100).reshape(10, 10) // 10 + 1).astype("uint8"))
        write_array("img.tif", np.arange(100, dtype="float32").reshape(10, 10))
        result = segment_stats("seg.tif", "img.tif", statistics=["mean"])
        assert result.segment_count == 10, result
        assert not any(name.split(".")[0] == "qgis" for name in sys.modules)
        print("engine ok")
    """, ["qgis", "PyQt5", "PyQt6"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "engine ok" in done.stdout


def test_provider_loads_without_numba_and_algorithms_say_what_to_install(tmp_path):
    seg_path, image_path, _ = _small_case(tmp_path)
    done = _python_with_blocked_modules(f"""
        from qgis.core import QgsApplication, QgsProcessingException
        app = QgsApplication([], False)
        app.initQgis()
        sys.path.append("/usr/share/qgis/python/plugins")
        from processing.core.Processing import Processing
        Processing.initialize()
        import processing
        from tessera.plugin import TesseraPlugin
        plugin = TesseraPlugin()
        plugin.initProcessing()
        assert plugin.provider is not None and plugin.provider.algorithms()
        try:
            processing.run("tessera:segmentstats", {{"SEGMENTS": {seg_path!r},
                                                    "IMAGE": {image_path!r}}})
        except QgsProcessingException as error:
            print("MESSAGE:", error)
    """, ["numba", "zarr"], tmp_path, QT_QPA_PLATFORM="offscreen")
    assert done.returncode == 0, done.stderr
    message = done.stdout.split("MESSAGE:", 1)[1]
    assert "numba" in message and "pip install" in message


@pytest.fixture
def open_tmp_path():
    """A temporary folder that other users can enter (pytest's are private to root)."""
    path = tempfile.mkdtemp(prefix="tessera-test-")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


def test_numba_cache_works_when_the_plugin_folder_is_read_only(open_tmp_path):
    tmp_path = open_tmp_path
    plugins = tmp_path / "plugins"
    shutil.copytree(REPO, plugins / "tessera",
                    ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "tests",
                                                  "bench", "demo"))
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    as_other_user = []
    if os.geteuid() == 0:  # root writes anywhere: run as nobody, who cannot write the copy
        for path in (home, work):
            os.chmod(path, 0o777)
        os.chmod(plugins, 0o755)
        as_other_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    else:
        for root, dirs, files in os.walk(plugins):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o555 if name in dirs else 0o444)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(plugins)!r})
        import numpy as np
        from tessera.engine import segment_stats
        from tessera.engine.io.raster_io import write_array
        from tessera.engine.statistics.kernels import zone_statistics
        write_array("seg.tif", (np.arange(100).reshape(10, 10) // 10 + 1).astype("uint8"))
        write_array("img.tif", np.arange(100, dtype="uint16").reshape(10, 10))
        segment_stats("seg.tif", "img.tif", statistics=["mean"], output_rat="out.img",
                      overwrite=True)
        print("HITS", sum(zone_statistics.stats.cache_hits.values()))
        print("PATH", zone_statistics.stats.cache_path)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["HOME"] = str(home)
    runs = [subprocess.run(as_other_user + [sys.executable, "-c", script], cwd=work,
                           capture_output=True, text=True, timeout=600, env=env)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert "HITS 0" in runs[0].stdout
    assert "HITS 1" in runs[1].stdout, runs[1].stdout
    assert str(plugins) not in runs[1].stdout.split("PATH", 1)[1]
    assert not list((plugins / "tessera" / "engine").glob("__pycache__/*.nbi"))


def test_fields_are_typed_for_this_qgis(qgis_app):
    from tessera.algorithms.qgis_compat import make_field

    # QVariant.Type and QMetaType.Type share these ids: String 10, Double 6, Int 2, LongLong 4
    for kind, type_id in (("string", 10), ("double", 6), ("int", 2), ("longlong", 4)):
        field = make_field(f"f_{kind}", kind)
        assert field.name() == f"f_{kind}"
        assert int(getattr(field.type(), "value", field.type())) == type_id, kind
