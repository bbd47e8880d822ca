"""The issue's "done when", in QGIS desktop itself (Debian's QGIS under Xvfb): the plugin
zip unpacked into a fresh profile, QGIS started with Debian's Python only (no numba, zarr
or shapely, numpy 1.24): the message bar offers the install, the Install button installs
into the profile, the next start prepares the engine with a message and Cancel, then every
kind of algorithm runs (zarr included) and GDAL's numpy bridge still works; the start after
that says nothing."""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
from conftest import REPO

# Reports what the message bar shows, clicks Install when asked, runs algorithms when asked,
# and quits QGIS when the awaited text appeared (or after a time limit).
SCRIPT = textwrap.dedent("""
    import os, sys, time, traceback
    from qgis.utils import iface
    from qgis.PyQt.QtCore import QCoreApplication, QTimer
    from qgis.PyQt.QtWidgets import QPushButton
    from qgis.core import QgsApplication

    LOG = open(os.environ["CHECK_LOG"], "a")
    WAIT_FOR = os.environ.get("CHECK_WAIT_FOR", "")
    START = time.time()
    seen = []

    def logged(message, tag, level):
        if tag == "Tessera":
            LOG.write("LOG " + message.replace("\\n", " | ") + "\\n")
            LOG.flush()

    QgsApplication.messageLog().messageReceived.connect(logged)

    def items():
        found = []
        for item in iface.messageBar().items():
            buttons = [b for b in item.findChildren(QPushButton) if b.text()]
            found.append((item.text(), buttons))
        return found

    def run_algorithms():
        import numpy as np
        import processing
        from tessera.engine.io.raster_io import write_array
        data = os.environ["CHECK_DATA"]
        seg, img = os.path.join(data, "seg.tif"), os.path.join(data, "img.tif")
        write_array(seg, (np.arange(100).reshape(10, 10) // 10 + 1).astype("uint8"))
        write_array(img, np.arange(100, dtype="uint16").reshape(10, 10))
        result = processing.run("tessera:segmentstats", {"SEGMENTS": seg, "IMAGE": img,
                                                         "STATISTICS": ["mean"],
                                                         "OVERWRITE": True})
        LOG.write(f"SEGMENTS {result['SEGMENT_COUNT']}\\n")
        result = processing.run("tessera:copyrat", {
            "INPUT_RASTER": seg, "OUTPUT": os.path.join(data, "rat.zarr"), "OVERWRITE": True})
        LOG.write(f"ZARR_ROWS {result['ROW_COUNT']}\\n")
        from osgeo import gdal_array
        LOG.write(f"GDAL_ARRAY {int(gdal_array.LoadFile(img).sum())}\\n")
        LOG.write(f"NUMPY {np.__version__}\\n")

    def finish():
        try:
            from qgis.utils import plugins
            task = plugins["tessera"].setup.prepare_task
            if task is not None and task.error:
                error = f"{task.error} {task.details}".replace("\\n", " | ")
                LOG.write(f"PREPARE_ERROR {error}\\n")
            if os.environ.get("CHECK_RUN"):
                run_algorithms()
        except Exception:
            LOG.write("ERROR " + traceback.format_exc().replace("\\n", " | ") + "\\n")
        LOG.write("END\\n")
        LOG.close()
        QCoreApplication.instance().exit(0)

    def tick():
        for text, buttons in items():
            if text not in seen:
                seen.append(text)
                LOG.write(f"BAR {text} BUTTONS {[b.text() for b in buttons]}\\n")
                LOG.flush()
            for button in buttons:
                if button.text() == "Install" and os.environ.get("CHECK_CLICK"):
                    LOG.write("CLICK Install\\n")
                    button.click()
        limit = float(os.environ.get("CHECK_SECONDS", "240"))
        if (WAIT_FOR and any(WAIT_FOR in text for text in seen)) or time.time() - START > limit:
            timer.stop()
            QTimer.singleShot(500, finish)

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(500)
""")


@pytest.fixture
def desktop_profile(tmp_path):
    if shutil.which("xvfb-run") is None or shutil.which("qgis") is None:
        pytest.skip("needs QGIS desktop and xvfb-run")
    dist = tmp_path / "dist"
    done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "build_package.py"),
                           "--output", str(dist)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [zip_path] = list(dist.glob("tessera-*.zip"))
    root = tmp_path / "config"
    profile = root / "profiles" / "default"
    (profile / "python" / "plugins").mkdir(parents=True)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text("[PythonPlugins]\ntessera=true\n")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(profile / "python" / "plugins")
    (tmp_path / "data").mkdir()
    (tmp_path / "check.py").write_text(SCRIPT)
    return tmp_path, root, profile


def _start_qgis(tmp_path, root, name, **check):
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "QT_QPA_PLATFORM", "QGIS_PLUGINPATH")
           and not k.startswith("NUMBA_")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(root), CHECK_LOG=str(log),
               CHECK_DATA=str(tmp_path / "data"), **check)
    done = subprocess.run(["xvfb-run", "-a", "qgis", "--nologo", "--noversioncheck",
                           "--code", str(tmp_path / "check.py")], env=env, capture_output=True,
                          text=True, timeout=600)
    text = log.read_text() if log.exists() else ""
    assert "END" in text, f"QGIS exited {done.returncode}: {done.stderr[-2000:]}\n{text}"
    return text


def test_desktop_install_first_run_and_algorithms(desktop_profile):
    tmp_path, root, profile = desktop_profile
    first = _start_qgis(tmp_path, root, "first", CHECK_CLICK="1", CHECK_WAIT_FOR="installed ")
    assert "needs the Python package(s) numba" in first and "CLICK Install" in first, first
    assert "BAR installed numba" in first, first
    packages = profile / "python" / "tessera-packages"
    assert (packages / "numba").is_dir() and (packages / "zarr").is_dir()
    assert not (profile / "python" / "plugins" / "tessera" / "tessera-packages").exists()

    second = _start_qgis(tmp_path, root, "second", CHECK_WAIT_FOR="the engine is ready",
                         CHECK_RUN="1")
    assert "BAR preparing the engine, once per installation" in second, second
    assert "BUTTONS ['Cancel']" in second
    assert "the engine is ready" in second and "ERROR" not in second, second
    assert "SEGMENTS 10" in second and "ZARR_ROWS 11" in second, second
    assert "GDAL_ARRAY 4950" in second and "NUMPY 1." in second, second

    third = _start_qgis(tmp_path, root, "third", CHECK_SECONDS="6", CHECK_RUN="1")
    assert "BAR" not in third, third  # nothing to say any more
    assert "SEGMENTS 10" in third and "ERROR" not in third, third
