"""Zonal statistics benchmark: Tessera vs QGIS native:zonalstatisticsfb,
exactextract and rasterstats on one generated case, same statistics.

    .venv/bin/python bench/bench_zonal.py                 # 10000 x 10000, 20,030 polygons
    .venv/bin/python bench/bench_zonal.py --size 2000 --polygons 2000   # a quick check

Data (bench/output/, git-ignored; generated once per size): a float32 raster,
tiled and DEFLATE-compressed, and a GeoPackage of Voronoi cells (some
multipart, some with holes), large overlapping discs and polygons on the
raster's edge. Every tool runs in its own process (timed, peak RSS from
wait4) with statistics count, sum, mean, min, max, stddev, and again with
median; the script prints the times, the ratios to Tessera and how far the
results agree (Tessera centre vs QGIS, Tessera fraction vs exactextract).
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from peak_memory import peak_rss_mb, printed_peak_mb

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUTPUT = os.path.join(HERE, "output")
sys.path.insert(0, os.path.join(REPO, "demo"))

BASIC = ["count", "sum", "mean", "min", "max", "stddev"]
TESSERA_NAMES = {"count": "pixcount", "stddev": "stddev"}
EXACTEXTRACT_NAMES = {"stddev": "stdev"}
QGIS_CODES = {"count": 0, "sum": 1, "mean": 2, "median": 3, "stddev": 4, "min": 5, "max": 6}
RASTERSTATS_NAMES = {"stddev": "std"}


def generate(size, polygons, seed=5):
    """Write the raster and the polygon layer (once per size); return their paths."""
    from osgeo import gdal, ogr, osr

    raster = os.path.join(OUTPUT, f"zonal_{size}.tif")
    layer = os.path.join(OUTPUT, f"zonal_{size}_{polygons}.gpkg")
    os.makedirs(OUTPUT, exist_ok=True)
    pixel, x0, y0 = 10.0, 400000.0, 6000000.0
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    if not os.path.exists(raster):
        rng = np.random.default_rng(seed)
        dataset = gdal.GetDriverByName("GTiff").Create(
            raster, size, size, 1, gdal.GDT_Float32,
            ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"])
        dataset.SetGeoTransform((x0, pixel, 0, y0, 0, -pixel))
        dataset.SetProjection(srs.ExportToWkt())
        band = dataset.GetRasterBand(1)
        band.SetNoDataValue(-9999)
        xs = np.arange(size) / size
        for row0 in range(0, size, 512):
            rows = min(512, size - row0)
            y = (row0 + np.arange(rows))[:, None] / size
            block = (np.sin(9 * xs[None, :]) + np.cos(7 * y) + 3) * 500
            block = block + rng.normal(0, 25, (rows, size))
            band.WriteArray(np.round(block, 2).astype(np.float32), 0, row0)
        dataset = None
    if not os.path.exists(layer):
        import shapely

        rng = np.random.default_rng(seed + 1)
        extent = size * pixel
        points = shapely.multipoints(np.c_[x0 + rng.uniform(0, extent, polygons),
                                           y0 - rng.uniform(0, extent, polygons)])
        frame = shapely.box(x0, y0 - extent, x0 + extent, y0)
        cells = list(shapely.get_parts(shapely.voronoi_polygons(points, extend_to=frame)))
        cells = [c.intersection(frame) for c in cells]
        rng.shuffle(cells)
        shapes = []
        for index, cell in enumerate(cells):
            if index < polygons // 20:  # multipart: the cell and a far-away islet
                c = cell.centroid
                islet = shapely.Point(c.x + extent / 7, c.y - extent / 9).buffer(2.5 * pixel)
                cell = shapely.MultiPolygon([cell, islet]) if not islet.intersects(cell) \
                    else cell
            elif index < polygons // 10:  # a hole
                c = cell.centroid
                hole = c.buffer(0.25 * np.sqrt(cell.area / np.pi))
                cell = cell.difference(hole) if cell.contains(hole) else cell
            shapes.append(cell)
        for _ in range(20):  # large overlapping discs
            centre = shapely.Point(x0 + rng.uniform(0.2, 0.8) * extent,
                                   y0 - rng.uniform(0.2, 0.8) * extent)
            shapes.append(centre.buffer(rng.uniform(0.03, 0.07) * extent, 32))
        for index in range(10):  # on the raster's edge
            shapes.append(shapely.Point(x0, y0 - (index + 0.5) * extent / 10).buffer(
                0.02 * extent, 16))
        driver = ogr.GetDriverByName("GPKG")
        source = driver.CreateDataSource(layer)
        out = source.CreateLayer("zones", srs, ogr.wkbMultiPolygon)
        out.StartTransaction()
        for shape in shapes:
            feature = ogr.Feature(out.GetLayerDefn())
            feature.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkb(shape.wkb)))
            out.CreateFeature(feature)
        out.CommitTransaction()
        source = None
    return raster, layer


def run_tool(tool, rule, stats, raster, layer, result_path):
    """Run one tool in this process; save its per-feature (count, mean) to result_path."""
    if tool == "tessera":
        from qgis_cli import plugin_folder

        sys.path.insert(0, plugin_folder())
        from tessera.engine import zonal_stats

        names = [TESSERA_NAMES.get(s, s) for s in stats]
        result = zonal_stats(layer, raster, statistics=names, pixel_rule=rule, column_prefix="",
                             percentile_method="linear")
        np.save(result_path, np.stack([result.column("pixcount"), result.column("mean")]))
    elif tool == "exactextract":
        from exactextract import exact_extract

        operations = [EXACTEXTRACT_NAMES.get(s, s) for s in stats]
        features = exact_extract(raster, layer, operations)
        np.save(result_path, np.array([[f["properties"]["count"] for f in features],
                                       [f["properties"]["mean"] for f in features]], float))
    elif tool == "rasterstats":
        from rasterstats import zonal_stats as rs_zonal_stats

        names = [RASTERSTATS_NAMES.get(s, s) for s in stats]
        features = rs_zonal_stats(layer, raster, stats=names)
        np.save(result_path, np.array([[f["count"] for f in features],
                                       [np.nan if f["mean"] is None else f["mean"]
                                        for f in features]], float))
    else:
        raise SystemExit(f"unknown tool {tool}")


def measure(command, env=None):
    """Run a command; return (seconds, peak RSS in GB, output)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{output[-3000:]}")
    # our Python children report their own peak (VmHWM); for qgis_process wait4's figure,
    # which also counts this (small) parent's memory shared before exec
    megabytes = printed_peak_mb(output) if "PEAK" in output else usage.ru_maxrss / 1024
    return seconds, megabytes / 1024, output


def qgis_command(stats, raster, layer, result_path):
    from qgis_cli import QgisProcess

    cli = QgisProcess()
    codes = ",".join(str(QGIS_CODES[s]) for s in stats)
    command = ["qgis_process.bin", "--json", "run", "native:zonalstatisticsfb", "--",
               f"INPUT={layer}", f"INPUT_RASTER={raster}", "RASTER_BAND=1",
               "COLUMN_PREFIX=q_", f"STATISTICS={codes}", f"OUTPUT={result_path}"]
    return command, cli.env


def qgis_values(path):
    from osgeo import ogr

    source = ogr.Open(path)
    rows = [(f.GetField("q_count"), f.GetField("q_mean")) for f in source.GetLayer()]
    return np.array([[np.nan if v is None else v for v, _ in rows],
                     [np.nan if v is None else v for _, v in rows]])


def agreement(ours, theirs, counts_at_least=0):
    """Largest relative difference of (count, mean) over features both computed."""
    keep = (ours[0] >= counts_at_least) & np.isfinite(ours[1]) & np.isfinite(theirs[1])
    rel = [np.max(np.abs(ours[i][keep] - theirs[i][keep]) / np.maximum(np.abs(theirs[i][keep]),
                                                                       1e-300))
           for i in (0, 1)]
    return f"count {rel[0]:.1e}, mean {rel[1]:.1e} over {int(keep.sum())} features"


def compare_rasterizers(raster, layer):
    """Time GDAL's RasterizeLayer (one burn of every polygon into an id raster, which
    loses overlaps) against Tessera's numba gathering of every polygon's own pixels."""
    from osgeo import gdal, ogr
    from qgis_cli import plugin_folder

    sys.path.insert(0, plugin_folder())
    from tessera.engine.io.polygon_source import layer_features, read_polygons
    from tessera.engine.zonal.polygon_raster import CENTRE, FRACTION, polygon_bounds
    from tessera.engine.zonal.statistics import _Gatherer, _TileGrid

    dataset = gdal.Open(raster)
    source = ogr.Open(layer)
    zones = source.GetLayer()
    for all_touched in (False, True):
        target = gdal.GetDriverByName("MEM").Create("", dataset.RasterXSize,
                                                    dataset.RasterYSize, 1, gdal.GDT_Int32)
        target.SetGeoTransform(dataset.GetGeoTransform())
        target.SetProjection(dataset.GetProjection())
        started = time.perf_counter()
        options = ["ALL_TOUCHED=TRUE"] if all_touched else []
        gdal.RasterizeLayer(target, [1], zones, burn_values=[1], options=options)
        print(f"GDAL RasterizeLayer (all_touched={all_touched}), one pass: "
              f"{time.perf_counter() - started:.2f} s")
        target = None
    shapes = read_polygons(layer_features(zones), zones.GetSpatialRef().ExportToWkt(), dataset)
    bounds = np.zeros((len(shapes), 4), np.int64)
    polygon_bounds(shapes.xs, shapes.ys, shapes.ring_start, shapes.poly_ring,
                   dataset.RasterYSize, dataset.RasterXSize, bounds)
    grid = _TileGrid(dataset, 1, bounds, None)
    for name, rule in (("centre", CENTRE), ("fraction", FRACTION)):
        gatherer = _Gatherer(shapes, bounds, grid, 1, np.float32, rule, lambda *a: None)
        started = time.perf_counter()
        pixels = 0
        for window, _, polygons in grid.tiles():
            tile = np.zeros((1, window.ysize, window.xsize), np.float32)
            gatherer.gather(polygons.astype(np.int64), window, tile)
            pixels += int(tile.size)
        print(f"Tessera gathering ({name}, every polygon its own pixels, one thread): "
              f"{time.perf_counter() - started:.2f} s")


def warm_up(args):
    """Fill numba's cache (compiled once per machine) on a small case so that the
    timed Tessera runs measure work, not compilation."""
    small = ["--size", "512", "--polygons", "200"]
    for rule in ("centre", "all_touched", "fraction"):
        for stats in (BASIC, BASIC + ["median"]):
            path = os.path.join(OUTPUT, "warm_up.npy")
            measure([sys.executable, os.path.abspath(__file__), *small, "--run", "tessera",
                     rule, ",".join(stats), path])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--polygons", type=int, default=20000)
    parser.add_argument("--skip", default="", help="tools to skip, e.g. rasterstats,qgis")
    parser.add_argument("--rasterizers", action="store_true",
                        help="only compare GDAL RasterizeLayer with Tessera's gathering")
    parser.add_argument("--run", nargs=4, metavar=("TOOL", "RULE", "STATS", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    raster, layer = generate(args.size, args.polygons)
    if args.run:
        tool, rule, stats, result_path = args.run
        run_tool(tool, rule, stats.split(","), raster, layer, result_path)
        print("PEAK", peak_rss_mb())
        return
    if args.rasterizers:
        compare_rasterizers(raster, layer)
        return
    skip = set(filter(None, args.skip.split(",")))
    from osgeo import ogr

    source = ogr.Open(layer)
    count = source.GetLayer().GetFeatureCount()
    source = None
    print(f"Raster {raster} ({args.size} x {args.size} float32, tiled, DEFLATE); "
          f"{count} polygons in {layer}")
    warm_up(args)
    runs = [("tessera", "centre"), ("tessera", "all_touched"), ("tessera", "fraction"),
            ("exactextract", "fraction"), ("qgis", "centre"), ("rasterstats", "centre")]
    table = {}
    for with_median in (False, True):
        stats = BASIC + (["median"] if with_median else [])
        label = "+median" if with_median else "basic"
        for tool, rule in runs:
            if tool in skip:
                continue
            result_path = os.path.join(OUTPUT, f"result_{tool}_{rule}_{label}")
            if tool == "qgis":
                result_path += ".gpkg"
                if os.path.exists(result_path):
                    os.remove(result_path)
                command, env = qgis_command(stats, raster, layer, result_path)
            else:
                result_path += ".npy"
                command = [sys.executable, os.path.abspath(__file__), "--size", str(args.size),
                           "--polygons", str(args.polygons), "--run", tool, rule,
                           ",".join(stats), result_path]
                env = None
            seconds, rss, _ = measure(command, env)
            values = qgis_values(result_path) if tool == "qgis" else np.load(result_path)
            table[(tool, rule, label)] = (seconds, rss, values)
            print(f"  {tool:>12} {rule:>11} {label:>8}: {seconds:7.2f} s, peak RSS {rss:5.2f} GB",
                  flush=True)
    print("\n| tool | rule | statistics | seconds | tool / Tessera (same rule) | peak RSS GB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (tool, rule, label), (seconds, rss, _) in table.items():
        base = table.get(("tessera", rule, label))
        ratio = f"{seconds / base[0]:.2f}" if base else "-"
        print(f"| {tool} | {rule} | {label} | {seconds:.2f} | {ratio} | {rss:.2f} |")
    for label in ("basic", "+median"):
        ours = table.get(("tessera", "fraction", label))
        theirs = table.get(("exactextract", "fraction", label))
        if ours and theirs:
            print(f"Tessera fraction vs exactextract ({label}): "
                  f"{agreement(ours[2], theirs[2])}")
        ours = table.get(("tessera", "centre", label))
        theirs = table.get(("qgis", "centre", label))
        if ours and theirs:
            print(f"Tessera centre vs QGIS ({label}, features with >= 2 pixels): "
                  f"{agreement(ours[2], theirs[2], counts_at_least=2)}")


if __name__ == "__main__":
    main()
