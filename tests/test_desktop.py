"""The real QGIS desktop (``qgis`` under Xvfb, a throwaway profile, the plugin enabled): a
startup script runs the algorithms with ``processing.runAndLoadResults`` on the sample data,
lists the project's layers and their renderers, and saves the map canvas; the test checks
the layers and that the screenshot is not blank. Skipped when ``xvfb-run`` or ``qgis`` is
missing (``make setup`` installs Debian's xvfb)."""

import json
import os
import shutil
import site
import subprocess
import textwrap

import numpy as np
import pytest
from conftest import PLUGINS_DIR, REPO

pytestmark = pytest.mark.skipif(not (shutil.which("xvfb-run") and shutil.which("qgis")),
                                reason="needs xvfb-run and qgis (apt-get install xvfb qgis)")

#: The startup script: runs ``steps(folder)`` (defined per test), then reports and quits.
SCRIPT = textwrap.dedent('''
    import json, os, sys, traceback
    from qgis.core import QgsApplication, QgsProject
    from qgis.PyQt.QtCore import QTimer
    from qgis.utils import iface

    OUT = os.environ["TESSERA_DESKTOP_OUT"]
    sys.path.insert(0, os.environ["TESSERA_DEMO"])

    def finish(report):
        with open(os.path.join(OUT, "report.json"), "w") as stream:
            json.dump(report, stream)
        QgsProject.instance().setDirty(False)
        QTimer.singleShot(3000, lambda: os._exit(0))  # should the exit hang
        iface.actionExit().trigger()

    def run():
        report = {}
        try:
            import processing
            import sample_data
            from qgis.core import QgsApplication as App
            report["provider"] = App.processingRegistry().providerById("tessera") is not None
            files = sample_data.generate(os.path.join(OUT, "data"))
            report["results"] = steps(processing, files, OUT)
            layers = list(QgsProject.instance().mapLayers().values())
            report["layers"] = [layer.name() for layer in layers]
            report["renderers"] = {layer.name(): layer.renderer().type() for layer in layers
                                   if hasattr(layer, "renderer") and layer.renderer()}
            canvas = iface.mapCanvas()
            canvas.setLayers(layers)
            canvas.setDestinationCrs(layers[0].crs())
            canvas.setExtent(layers[0].extent())
            canvas.refresh()
            canvas.waitWhileRendering()
            canvas.saveAsImage(os.path.join(OUT, "canvas.png"))
        except Exception:
            report["error"] = traceback.format_exc()
        finish(report)

    QTimer.singleShot(500, run)
''')

SEGMENTS = '''
def steps(processing, files, out):
    stats = processing.runAndLoadResults("tessera:segmentstats", {
        "SEGMENTS": files["segments"], "IMAGE": files["image"], "BANDS": [1],
        "STATISTICS": ["pixcount", "mean"], "OUTPUT_RAT": os.path.join(out, "stats.zarr"),
        "OUTPUT_TABLE": os.path.join(out, "stats.csv")})
    values = processing.runAndLoadResults("tessera:rattoraster", {
        "SEGMENTS": files["segments"], "RAT": stats["OUTPUT_RAT"], "COLUMNS": "b1_mean",
        "OUTPUT": os.path.join(out, "b1_mean.tif")})
    polygons = processing.runAndLoadResults("tessera:segmentpolygons", {
        "SEGMENTS": files["segments"], "RAT": stats["OUTPUT_RAT"], "COLUMNS": "b1_mean",
        "OUTPUT": os.path.join(out, "segments.gpkg")})
    return {"stats": {k: str(v) for k, v in stats.items()}, "values": values["OUTPUT"],
            "polygons": polygons["FEATURE_COUNT"]}
'''

NORMALIZATION = '''
def steps(processing, files, out):
    result = processing.runAndLoadResults("tessera:localblockadjustment", {
        "INPUTS": [files["scene_1"], files["scene_2"], files["scene_3"]], "BLOCKS": 9,
        "OUTPUT_FOLDER": os.path.join(out, "normalized"),
        "SAVE_BLOCK_MAPS": os.path.join(out, "maps"),
        "OUTPUT_HTML": os.path.join(out, "report.html")})
    return {k: (v if isinstance(v, (list, int, float)) else str(v)) for k, v in result.items()}
'''


def run_desktop(tmp_path, steps):
    """Run QGIS with the startup script; returns (report dict, canvas pixels)."""
    profiles = tmp_path / "profiles"
    settings = profiles / "profiles" / "default" / "QGIS"
    settings.mkdir(parents=True)
    (settings / "QGIS3.ini").write_text(
        "[PythonPlugins]\ntessera=true\n\n[qgis]\ncheckVersion=false\n"
        "showTips322=false\n\n[core]\nNewsFeed\\\\httpsfeedqgisorg\\\\disabled=true\n")
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "startup.py"
    script.write_text(SCRIPT + steps)
    python_path = [PLUGINS_DIR, *site.getsitepackages()]
    env = dict(os.environ, QGIS_PLUGINPATH=PLUGINS_DIR, PYTHONPATH=os.pathsep.join(python_path),
               TESSERA_DESKTOP_OUT=str(out), TESSERA_DEMO=os.path.join(REPO, "demo"))
    env.pop("QT_QPA_PLATFORM", None)  # a real (virtual) display
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", "qgis", "--profiles-path",
               str(profiles), "--nologo", "--noversioncheck", "--code", str(script)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        log = f"timed out: {expired.stdout} {expired.stderr}"
    report_path = out / "report.json"
    assert report_path.exists(), f"QGIS wrote no report:\n{log[-3000:]}"
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"]
    assert report["provider"], "the Tessera provider is not registered in QGIS"
    from osgeo import gdal

    png = gdal.Open(str(out / "canvas.png"))
    assert png is not None, "no canvas screenshot"
    pixels = png.ReadAsArray()
    return report, pixels, out


def colours(pixels):
    return len(np.unique(pixels.reshape(pixels.shape[0], -1), axis=1).T)


def test_segment_values_appear_on_the_map(tmp_path):
    report, pixels, out = run_desktop(tmp_path, SEGMENTS)
    assert "b1_mean (segments)" in report["layers"], report["layers"]
    assert "stats" in report["layers"]  # the CSV as a table
    assert report["renderers"]["b1_mean (segments)"] == "singlebandpseudocolor"
    assert report["results"]["values"] == str(out / "b1_mean.tif")
    assert "Segments of segments" in report["layers"]
    assert report["renderers"]["Segments of segments"] == "graduatedSymbol"
    assert report["results"]["polygons"] == int(report["results"]["stats"]["SEGMENT_COUNT"])
    assert colours(pixels) > 50, "the canvas screenshot is blank"


def test_normalization_outputs_and_report_appear(tmp_path):
    report, pixels, out = run_desktop(tmp_path, NORMALIZATION)
    names = report["layers"]
    for index in (1, 2, 3):
        assert f"scene_{index}_Local" in names, names
        assert f"scene_{index}_local_block_map" in names, names
    assert "reference_block_map" in names
    assert report["renderers"]["reference_block_map"] == "singlebandpseudocolor"
    assert report["results"]["OUTPUT_HTML"] == str(out / "report.html")
    assert (out / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,") >= 3
    assert colours(pixels) > 50, "the canvas screenshot is blank"
