"""`make demo`: generate sample data under demo/output and run every Tessera
algorithm on it through qgis_process.bin, printing a short summary of each.

Run with the project's venv: .venv/bin/python demo/run_demo.py
"""

import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "output")
WORLDVIEW = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "worldview",
                         "Worldview_2016-09-30.tif")

sys.path.insert(0, HERE)
from qgis_cli import QgisProcess, plugin_folder  # noqa: E402

PLUGINS = plugin_folder()
sys.path.insert(0, PLUGINS)

import numpy as np  # noqa: E402
import sample_data  # noqa: E402

from tessera.engine.raster_io import write_array  # noqa: E402


def heading(text):
    print(f"\n== {text} " + "=" * max(0, 70 - len(text)))


def run(cli, algorithm, **parameters):
    started = time.perf_counter()
    code, result, output = cli.algorithm(algorithm, **parameters)
    seconds = time.perf_counter() - started
    if code != 0 or result is None:
        print(f"{algorithm} FAILED (exit {code}):\n{output[-2000:]}")
        raise SystemExit(1)
    print(f"{algorithm}: done in {seconds:.1f} s")
    return result["results"]


def show_rat(path, columns, rows=4, band=1):
    """Print a few rows of RAT columns read back with GDAL or from a Zarr store."""
    from tessera.engine.rat import open_rat

    with open_rat(path, band=band) as rat:
        ids = [i for i in range(1, rat.row_count())][:rows]
        print("   id  " + "  ".join(f"{c:>12}" for c in columns))
        for sid in ids:
            values = [rat.read(c, sid, 1)[0] for c in columns]
            print(f"{sid:5d}  " + "  ".join(f"{_fmt(v):>12}" for v in values))


def _fmt(value):
    return f"{value:.3f}" if isinstance(value, (float, np.floating)) else str(value)


def demo_segment_stats(cli, files):
    heading("Per-segment statistics (tessera:segmentstats)")
    results = run(cli, "tessera:segmentstats", SEGMENTS=files["segments"], IMAGE=files["image"],
                  BANDS=[1, 3], STATISTICS="pixcount,mean,stddev,median,mode",
                  PERCENTILES="10,90", OVERWRITE="true")
    print(f"{results['SEGMENT_COUNT']} segments -> {results['RAT']}")
    show_rat(files["segments"], ["b1_pixcount", "b1_mean", "b1_median", "b3_p90"])
    table = os.path.join(OUTPUT, "segment_stats.csv")
    results = run(cli, "tessera:segmentstats", SEGMENTS=files["segments_img"],
                  IMAGE=files["image"], STATISTICS="min,max,variety", OVERWRITE="true",
                  OUTPUT_RAT=os.path.join(OUTPUT, "segment_rat.img"), OUTPUT_TABLE=table)
    print(f"separate RAT file: {results['RAT']} ({results['COLUMNS']}); table: {table}")
    if os.path.exists(WORLDVIEW):
        demo_worldview(cli)


def demo_worldview(cli):
    """Segments of the real WorldView scene: a 16 x 16 pixel grid."""
    from osgeo import gdal

    scene = gdal.Open(WORLDVIEW)
    rows, cols = scene.RasterYSize, scene.RasterXSize
    grid = (np.arange(rows)[:, None] // 16) * (cols // 16 + 1) + np.arange(cols)[None, :] // 16
    segments = os.path.join(OUTPUT, "worldview_grid.tif")
    write_array(segments, (grid + 1).astype(np.uint32), scene.GetGeoTransform(),
                scene.GetProjection())
    results = run(cli, "tessera:segmentstats", SEGMENTS=segments, IMAGE=WORLDVIEW,
                  STATISTICS="pixcount,mean,median", BANDS=[5, 7], OVERWRITE="true")
    print(f"WorldView scene: {results['SEGMENT_COUNT']} grid cells, columns {results['COLUMNS']}")
    show_rat(segments, ["b5_pixcount", "b5_mean", "b7_median"])


def demo_zonal_stats(cli, files):
    heading("Zonal statistics over polygons (tessera:zonalstats)")
    from osgeo import ogr

    shown = ["name", "_b1_pixcount", "_b1_mean", "_b3_median", "_b3_p90"]
    for rule in ("centre", "fraction"):
        output = os.path.join(OUTPUT, f"zones_{rule}.gpkg")
        results = run(cli, "tessera:zonalstats", INPUT=files["polygons"], RASTER=files["image"],
                      BANDS=[1, 3], STATISTICS="pixcount,mean,median", PERCENTILES="90",
                      PIXEL_RULE=rule, OUTPUT=output,
                      OUTPUT_TABLE=os.path.join(OUTPUT, f"zones_{rule}.csv"))
        print(f"{rule} rule: {results['FEATURE_COUNT']} polygons -> {output}")
        source = ogr.Open(output)
        print("  " + "  ".join(f"{c:>12}" for c in shown))
        for index, feature in enumerate(source.GetLayer()):
            if index == 4:
                break
            print("  " + "  ".join(f"{_fmt(feature.GetField(c)):>12}" for c in shown))
        source = None


STEPS = [demo_segment_stats, demo_zonal_stats]


def main():
    if os.path.isdir(OUTPUT):
        shutil.rmtree(OUTPUT)
    heading("Sample data")
    files = sample_data.generate(OUTPUT)
    for name, path in files.items():
        print(f"{name:>14}: {os.path.relpath(path)}")
    cli = QgisProcess(PLUGINS)
    code, listing, output = cli.run("list")
    algorithms = sorted(listing["providers"]["tessera"]["algorithms"]) if listing else []
    print(f"\nqgis_process sees the Tessera provider with: {', '.join(algorithms)}")
    for step in STEPS:
        step(cli, files)
    heading("Demo finished")


if __name__ == "__main__":
    main()
