"""Zonal statistics benchmark: Tessera vs QGIS native:zonalstatisticsfb,
exactextract and rasterstats on one generated case, same statistics.

    .venv/bin/python bench/bench_zonal.py                 # 10000 x 10000, 20,030 polygons
    .venv/bin/python bench/bench_zonal.py --size 2000 --polygons 2000   # a quick check

Data (bench/output/, git-ignored; generated once per size): a float32 raster,
tiled and DEFLATE-compressed, and a GeoPackage of Voronoi cells (some
multipart, some with holes), large overlapping discs and polygons on the
raster's edge. Every tool runs in its own process (timed, peak RSS from
wait4) with statistics count, sum, mean, min, max, stddev, and again with
median, and with median, p10 and p90 (Tessera and exactextract only); the script
prints the times (wall and CPU), the ratios to Tessera and how far the results
agree (Tessera centre vs QGIS, Tessera fraction vs exactextract).

``--repeat N`` runs every case N times, the cases taking turns, and reports the
fastest run (timeit's rule); ``--rules`` and ``--sets`` narrow the cases;
``--raw`` adds a raw read of the raster (a fresh process reading it window by
window, one thread, as Tessera's reader: whole process and read alone).

    .venv/bin/python bench/bench_zonal.py --skip qgis,rasterstats,exactextract \
        --rules centre,fraction --repeat 2 --raw     # issue 22's order statistics
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
#: statistic sets: label -> statistics (p<q>: a percentile)
SETS = {"basic": BASIC, "+median": BASIC + ["median"],
        "+median,p10,p90": BASIC + ["median", "p10", "p90"]}
#: the tools that take percentiles
PERCENTILE_TOOLS = ("tessera", "exactextract")
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

        names = [TESSERA_NAMES.get(s, s) for s in stats if not s.startswith("p")]
        percentiles = [float(s[1:]) for s in stats if s.startswith("p")]
        result = zonal_stats(layer, raster, statistics=names, pixel_rule=rule, column_prefix="",
                             percentiles=percentiles, percentile_method="linear")
        rows = [result.column("pixcount"), result.column("mean")]
        rows += [result.column(s) for s in ("median", "p10", "p90") if s in stats]
        np.save(result_path, np.stack(rows))
    elif tool == "exactextract":
        from exactextract import exact_extract

        operations = [f"quantile(q={float(s[1:]) / 100})" if s.startswith("p")
                      else EXACTEXTRACT_NAMES.get(s, s) for s in stats]
        features = exact_extract(raster, layer, operations)
        names = ["count", "mean"] + [{"p10": "quantile_10", "p90": "quantile_90"}.get(s, s)
                                     for s in ("median", "p10", "p90") if s in stats]
        np.save(result_path, np.array([[f["properties"][name] for f in features]
                                       for name in names], float))
    elif tool == "rasterstats":
        from rasterstats import zonal_stats as rs_zonal_stats

        names = [RASTERSTATS_NAMES.get(s, s) for s in stats]
        features = rs_zonal_stats(layer, raster, stats=names)
        np.save(result_path, np.array([[f["count"] for f in features],
                                       [np.nan if f["mean"] is None else f["mean"]
                                        for f in features]], float))
    elif tool == "raw":
        read_seconds = raw_read(raster)
        print("READ", read_seconds)
        np.save(result_path, np.zeros((2, 0)))
    else:
        raise SystemExit(f"unknown tool {tool}")


def raw_read(raster, window=1024):
    """Read every pixel of the raster window by window in one thread (GDAL's block cache
    dropped after each window, as Tessera's reader does); returns the seconds."""
    from osgeo import gdal

    started = time.perf_counter()
    dataset = gdal.Open(raster)
    band = dataset.GetRasterBand(1)
    for row0 in range(0, dataset.RasterYSize, window):
        rows = min(window, dataset.RasterYSize - row0)
        for col0 in range(0, dataset.RasterXSize, window):
            band.ReadAsArray(col0, row0, min(window, dataset.RasterXSize - col0), rows)
        dataset.FlushCache()
    return time.perf_counter() - started


def measure(command, env=None):
    """Run a command; return (seconds, peak RSS in GB, output, CPU seconds)."""
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
    return seconds, megabytes / 1024, output, usage.ru_utime + usage.ru_stime


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
    """Largest relative difference of count, mean (and median, p10, p90 when both have
    them) over features both computed."""
    keep = (ours[0] >= counts_at_least) & np.isfinite(ours[1]) & np.isfinite(theirs[1])
    names = ("count", "mean", "median", "p10", "p90")[:min(len(ours), len(theirs))]
    rel = [np.max(np.abs(ours[i][keep] - theirs[i][keep]) / np.maximum(np.abs(theirs[i][keep]),
                                                                       1e-300))
           for i in range(len(names))]
    return (", ".join(f"{name} {r:.1e}" for name, r in zip(names, rel, strict=True))
            + f" over {int(keep.sum())} features")


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
        for stats in SETS.values():
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
    parser.add_argument("--rules", default="", help="pixel rules to run, e.g. centre,fraction")
    parser.add_argument("--sets", default="",
                        help=f"statistic sets to run, of {', '.join(SETS)} (separated by ;)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of every case (taking turns); the fastest is reported")
    parser.add_argument("--raw", action="store_true",
                        help="also time a raw read of the raster in a fresh process")
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
    rules = set(filter(None, args.rules.split(","))) or {rule for _, rule in runs}
    sets = [label for label in args.sets.split(";") if label in SETS] if args.sets else list(SETS)
    cases = [(tool, rule, label) for label in sets for tool, rule in runs
             if tool not in skip and rule in rules
             and (label != "+median,p10,p90" or tool in PERCENTILE_TOOLS)]
    if args.raw:
        cases.insert(0, ("raw", "read", "all pixels"))
    table = {}
    for _ in range(args.repeat):  # the cases take turns: a slow spell hits them alike
        for tool, rule, label in cases:
            stats = SETS.get(label, BASIC)
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
            seconds, rss, output, cpu = measure(command, env)
            values = qgis_values(result_path) if tool == "qgis" else np.load(result_path)
            read = float(output.split("READ")[1].split()[0]) if tool == "raw" else None
            extra = f", read alone {read:.2f} s" if read is not None else ""
            print(f"  {tool:>12} {rule:>11} {label:>15}: {seconds:7.2f} s, CPU {cpu:6.2f} s, "
                  f"peak RSS {rss:5.2f} GB{extra}", flush=True)
            best = table.get((tool, rule, label))
            if best is None or seconds < best[0]:
                table[(tool, rule, label)] = (seconds, rss, values, cpu, read)
    print("\n| tool | rule | statistics | seconds | CPU s | tool / Tessera (same rule) | "
          "peak RSS GB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (tool, rule, label), (seconds, rss, _, cpu, read) in table.items():
        base = table.get(("tessera", rule, label))
        ratio = f"{seconds / base[0]:.2f}" if base else "-"
        if read is not None:
            label += f" (read alone {read:.2f} s)"
        print(f"| {tool} | {rule} | {label} | {seconds:.2f} | {cpu:.2f} | {ratio} | {rss:.2f} |")
    for rule in ("centre", "all_touched", "fraction"):
        basic = table.get(("tessera", rule, "basic"))
        for label in ("+median", "+median,p10,p90"):
            more = table.get(("tessera", rule, label))
            if basic and more:
                print(f"Tessera {rule}: {label} / basic = {more[0] / basic[0]:.2f} "
                      f"(CPU {more[3] / basic[3]:.2f})")
    raw = table.get(("raw", "read", "all pixels"))
    centre = table.get(("tessera", "centre", "basic"))
    if raw and centre:
        print(f"Tessera centre basic / raw read: {centre[0] / raw[0]:.2f} (whole processes), "
              f"{centre[0] / raw[4]:.2f} (against the read alone)")
    for label in SETS:
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
