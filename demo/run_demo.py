"""`make demo`: generate sample data under demo/output and run every Tessera
algorithm on it through qgis_process.bin, printing a short summary of each.

Run with the project's venv: .venv/bin/python demo/run_demo.py
"""

import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUTPUT = os.path.join(HERE, "output")
WORLDVIEW = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "worldview",
                         "Worldview_2016-09-30.tif")
LANDSAT = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data", "landsat")

sys.path.insert(0, HERE)
from qgis_cli import QgisProcess, plugin_folder  # noqa: E402

PLUGINS = plugin_folder()
sys.path.insert(0, PLUGINS)

import numpy as np  # noqa: E402
import sample_data  # noqa: E402

from tessera.engine.io.raster_io import write_array  # noqa: E402


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
    from tessera.engine.rat.tables import open_rat

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
    values = run(cli, "tessera:rattoraster", SEGMENTS=files["segments"], COLUMNS="b1_mean,b3_p90",
                 OUTPUT=os.path.join(OUTPUT, "segment_means.tif"))
    print(f"RAT columns {values['COLUMNS']} as a raster: {values['OUTPUT']}")
    polygons = run(cli, "tessera:segmentpolygons", SEGMENTS=files["segments"],
                   COLUMNS="b1_mean,b1_median", OUTPUT=os.path.join(OUTPUT, "segments.gpkg"))
    print(f"{polygons['FEATURE_COUNT']} segment polygons with b1_mean, b1_median: "
          f"{polygons['OUTPUT']}")
    if os.path.exists(WORLDVIEW):
        demo_worldview(cli)


def demo_worldview(cli):
    """Segments of the real WorldView scene: a 16 x 16 pixel grid."""
    from osgeo import gdal

    # a copy: QGIS may write an .aux.xml beside the rasters it opens
    scene_path = shutil.copy(WORLDVIEW, OUTPUT)
    scene = gdal.Open(scene_path)
    rows, cols = scene.RasterYSize, scene.RasterXSize
    grid = (np.arange(rows)[:, None] // 16) * (cols // 16 + 1) + np.arange(cols)[None, :] // 16
    segments = os.path.join(OUTPUT, "worldview_grid.tif")
    write_array(segments, (grid + 1).astype(np.uint32), scene.GetGeoTransform(),
                scene.GetProjection())
    results = run(cli, "tessera:segmentstats", SEGMENTS=segments, IMAGE=scene_path,
                  STATISTICS="pixcount,mean,median", BANDS=[5, 7], OVERWRITE="true")
    print(f"WorldView scene: {results['SEGMENT_COUNT']} grid cells, columns {results['COLUMNS']}")
    show_rat(segments, ["b5_pixcount", "b5_mean", "b7_median"])


def overlap_differences(paths):
    """Mean |a - b| over co-located valid pixels of every overlapping pair (grids lining up)."""
    from osgeo import gdal

    scenes = []
    for path in paths:
        dataset = gdal.Open(path)
        array = dataset.ReadAsArray().astype(np.float64)
        nodata = dataset.GetRasterBand(1).GetNoDataValue()
        scenes.append((array, dataset.GetGeoTransform(), nodata))
    differences = []
    for i in range(len(scenes)):
        for j in range(i + 1, len(scenes)):
            (a, gt_a, nodata), (b, gt_b, _) = scenes[i], scenes[j]
            dc, dr = round((gt_b[0] - gt_a[0]) / gt_a[1]), round((gt_b[3] - gt_a[3]) / gt_a[5])
            rows = min(a.shape[1], dr + b.shape[1]) - max(0, dr)
            cols = min(a.shape[2], dc + b.shape[2]) - max(0, dc)
            if rows <= 0 or cols <= 0:
                continue
            part_a = a[:, max(0, dr):max(0, dr) + rows, max(0, dc):max(0, dc) + cols]
            part_b = b[:, max(0, -dr):max(0, -dr) + rows, max(0, -dc):max(0, -dc) + cols]
            valid = np.ones(part_a.shape, bool) if nodata is None else (
                (part_a != nodata) & (part_b != nodata))
            differences.append(float(np.abs(part_a - part_b)[valid].mean()))
    return float(np.mean(differences)) if differences else float("nan")


def normalize_series(cli, label, inputs, folder):
    """Global regression then local block adjustment, with an overlap-difference summary."""
    before = overlap_differences(inputs)
    results = run(cli, "tessera:globalregression", INPUTS=inputs, OUTPUT_FOLDER=folder,
                  SAVE_ADJUSTMENTS=os.path.join(folder, "adjustments.json"),
                  PROFILE_PLOT=os.path.join(folder, "global_profiles.png"),
                  OUTPUT_HTML=os.path.join(folder, "global_report.html"))
    after_global = overlap_differences(sorted(results["OUTPUTS"]))
    print(f"{label}: mean |difference| in overlaps {before:.1f} before -> {after_global:.1f} "
          f"after global regression ({len(results['OUTPUTS'])} images in {folder})")
    adjustments = json.loads(results["ADJUSTMENTS"])
    for name in sorted(adjustments)[:3]:
        band = adjustments[name]["band_0"]
        print(f"   {name}: band 1 -> {band['scale']:.4f} x {band['offset']:+.1f}")
    local_folder = folder + "_local"
    results = run(cli, "tessera:localblockadjustment", INPUTS=sorted(results["OUTPUTS"]),
                  OUTPUT_FOLDER=local_folder, SAVE_BLOCK_MAPS=os.path.join(local_folder, "maps"),
                  PROFILE_PLOT=os.path.join(local_folder, "local_profiles.png"))
    after_local = overlap_differences(sorted(results["OUTPUTS"]))
    print(f"{label}: {after_global:.1f} -> {after_local:.1f} after local block adjustment "
          f"({results['GRID_ROWS']} x {results['GRID_COLS']} blocks; maps in {local_folder})")
    return sorted(results["OUTPUTS"]), before, after_global, after_local


def demo_normalization(cli, files):
    heading("Radiometric normalization (globalregression, then localblockadjustment)")
    scenes = [files[f"scene_{k}"] for k in (1, 2, 3)]
    normalize_series(cli, "demo scenes", scenes, os.path.join(OUTPUT, "normalized_scenes"))
    if os.path.isdir(LANDSAT):
        # copies: QGIS writes statistics (.aux.xml) beside the rasters it loads as layers,
        # and the shared data must stay as it is
        copies = os.path.join(OUTPUT, "landsat")
        os.makedirs(copies, exist_ok=True)
        series = []
        for name in sorted(f for f in os.listdir(LANDSAT) if f.endswith(".tif")):
            series.append(shutil.copyfile(os.path.join(LANDSAT, name),
                                          os.path.join(copies, name)))
        normalize_series(cli, "Landsat series", series, os.path.join(OUTPUT, "normalized_landsat"))


def demo_model(cli, files):
    """The bundled graphical model, run from its .model3 file."""
    from osgeo import ogr

    heading("Model: normalize and summarize (resources/models/normalize_and_summarize.model3)")
    model = os.path.join(REPO, "resources", "models", "normalize_and_summarize.model3")
    zones = os.path.join(OUTPUT, "model_zones.gpkg")
    folder = os.path.join(OUTPUT, "model_normalized")
    run(cli, model, INPUTS=[files[f"scene_{k}"] for k in (1, 2, 3)], POLYGONS=files["polygons"],
        BLOCKS=25, **{"local:NORMALIZED": folder, "zonal:ZONES": zones})
    written = ", ".join(sorted(f for f in os.listdir(folder) if f.endswith(".tif")))
    print(f"normalized scenes in {os.path.relpath(folder)}: {written}")
    shown = ["name", "_pixcount", "_mean", "_median", "_stddev"]
    print("  " + "  ".join(f"{c:>10}" for c in shown))
    source = ogr.Open(zones)
    for index, feature in enumerate(source.GetLayer()):
        if index == 4:
            break
        print("  " + "  ".join(f"{_fmt(feature.GetField(c)):>10}" for c in shown))
    source = None


def demo_rat_tools(cli, files):
    """The segment RAT copied to a Zarr store, looked into, and exported to tables."""
    import csv
    import itertools
    import subprocess

    heading("RAT tools (tessera:copyrat, tessera:exportrat)")
    if not os.path.exists(files["segments"] + ".aux.xml"):  # the RAT the first step writes
        run(cli, "tessera:segmentstats", SEGMENTS=files["segments"], IMAGE=files["image"],
            STATISTICS="pixcount,mean,median", OVERWRITE="true")
    store = os.path.join(OUTPUT, "segments_rat.zarr")
    results = run(cli, "tessera:copyrat", INPUT_RASTER=files["segments"], OUTPUT=store,
                  OVERWRITE="true")
    print(f"copied {results['COLUMNS']} ({results['ROW_COUNT']} rows) -> {store}")
    info = subprocess.run([sys.executable, "-m", "tessera.engine.rat.store", "info", store],
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=PLUGINS))
    print("python -m tessera.engine.rat.store info:")
    print("\n".join("   " + line for line in (info.stdout or info.stderr).splitlines()))
    table = os.path.join(OUTPUT, "segments_rat.csv")
    results = run(cli, "tessera:exportrat", INPUT_STORE=store,
                  COLUMNS="b1_pixcount,b1_mean,b1_median", OUTPUT=table)
    print(f"{results['ROW_COUNT']} rows -> {table}; the first ones:")
    with open(table, newline="", encoding="utf-8") as stream:
        for row in itertools.islice(csv.reader(stream), 5):
            print("   " + "  ".join(f"{cell[:12]:>12}" for cell in row))
    gpkg = os.path.join(OUTPUT, "segments_rat.gpkg")
    results = run(cli, "tessera:exportrat", INPUT_RASTER=files["segments"], OUTPUT=gpkg)
    print(f"{results['ROW_COUNT']} rows -> {gpkg} (a table without geometry)")


def demo_segment_spatial_stats(cli, files):
    heading("Per-segment spatial statistics (tessera:segmentspatialstats)")
    out = os.path.join(OUTPUT, "segment_spatial.img")
    results = run(cli, "tessera:segmentspatialstats", SEGMENTS=files["segments_img"],
                  IMAGE=files["image"], BAND=2,
                  STATISTICS="centroid,bbox,area,perimeter,edgepixels,variogram,diagonalrms",
                  MAX_LAG=3, CONNECTIVITY="8", OUTPUT_RAT=out, OVERWRITE="true")
    print(f"{results['SEGMENT_COUNT']} segments -> {results['RAT']}")
    print(f"columns: {results['COLUMNS']}")
    show_rat(out, ["centroid_x", "centroid_y", "area", "perimeter", "edge_pixels"])
    show_rat(out, ["gamma_1", "gamma_2", "gamma_3", "drms_1", "drms_3"])


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


STEPS = [demo_segment_stats, demo_segment_spatial_stats, demo_zonal_stats, demo_rat_tools,
         demo_normalization, demo_model]


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
