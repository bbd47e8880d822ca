"""Benchmark: RAT values on the map, against plain GDAL doing the pixel work alone.

Generates (once, under bench/output/) the 10000 x 10000 uint32 segmentation of
bench_segment_stats.py (~1,000,000 ragged segments numbered in random order; tiled
GeoTIFF, DEFLATE) and a Zarr RAT store beside it with a float64 and an int32 column, then
times, each in a fresh interpreter (numba's cache warmed first; the peak RSS of each
interpreter is printed):

1. rattoraster: tessera.engine.rat.to_raster.rat_to_raster, one float64 column (and one int32
   column), from the Zarr store (fastest of --repeat runs; numba's module imported before
   the clock starts, as in a QGIS session), against ``gdal.Translate`` of the segment raster to the
   same type with the same creation options (tiled, ZSTD level 1 + predictor) — the
   floor of a tool that reads the segments and writes a raster of that type. Target <= 1.5x.
2. segmentpolygons: tessera.engine.segments.polygons.segment_polygons to a GeoPackage with
   one RAT column, against ``gdal.Polygonize`` of the whole raster into a GeoPackage (in one
   transaction, null id masked), which is what ``gdal_polygonize.py`` does.

    .venv/bin/python bench/bench_rat_raster.py [--size 10000] [--only raster|polygons] \
        [--repeat 3]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
from osgeo import gdal
from peak_memory import PRINT_PEAK, printed_peak_mb

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "demo"))
from qgis_cli import plugin_folder  # noqa: E402

PLUGINS = plugin_folder()
sys.path.insert(0, PLUGINS)
STRIP = 512


def generate(folder, size):
    """The segment GeoTIFF and its Zarr RAT store (if missing); their paths."""
    from bench_segment_stats import segment_grid

    from tessera.engine.io.raster_io import create_raster
    from tessera.engine.rat.store import RatStore

    os.makedirs(folder, exist_ok=True)
    seg_tif = os.path.join(folder, f"segments_{size}_deflate.tif")
    store = os.path.join(folder, f"segments_{size}_rat.zarr")
    _, ids, segment_rows = segment_grid(size)  # bench_segment_stats' segmentation
    count = int(ids.max())
    if not os.path.exists(seg_tif):
        print(f"generating {seg_tif} ...", flush=True)
        options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=YES",
                   "COMPRESS=DEFLATE", "PREDICTOR=2"]
        dataset = create_raster(seg_tif, size, size, 1, np.uint32, options=options)
        for row0 in range(0, size, STRIP):
            rows = np.arange(row0, min(size, row0 + STRIP))
            dataset.GetRasterBand(1).WriteArray(ids[segment_rows(rows)], 0, int(row0))
        dataset = None
    if not os.path.exists(store):
        print(f"generating {store} ...", flush=True)
        values = np.random.default_rng(3)
        with RatStore(store, create=True) as rat:
            rat.set_row_count(count + 1)
            rat.create_column("b1_mean", np.float64)
            rat.create_column("klass", np.int32)
            rat.write_block("b1_mean", values.normal(1000, 200, count + 1), 0)
            rat.write_block("klass", values.integers(0, 50, count + 1).astype(np.int32), 0)
    return seg_tif, store, count


def run_child(code):
    """Run ``code`` in a fresh interpreter; (seconds it printed, peak RSS MB)."""
    prelude = f"import sys, time; sys.path.insert(0, {PLUGINS!r}); sys.path.insert(0, {HERE!r})\n"
    done = subprocess.run([sys.executable, "-c", prelude + code + "\n" + PRINT_PEAK],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    seconds = float(done.stdout.split("SECONDS")[1].split()[0])
    return seconds, printed_peak_mb(done.stdout)


def warm_numba():
    """Compile (or load the cache of) the kernels outside the timed runs."""
    run_child("""
from tessera.engine.rat.kernels import lookup_tile
from tessera.engine.segments.collector import count_ids
import numpy as np
for dtype in (np.float64, np.int32):
    lookup_tile(np.zeros((2, 2), np.uint32), np.zeros((3, 1), dtype), np.zeros((1, 2, 2), dtype))
count_ids(np.zeros((2, 2), np.int32), 0, np.zeros(4, np.int64))
print("SECONDS 0")
""")


RAT_TO_RASTER = """
from tessera.engine.rat.to_raster import rat_to_raster
import tessera.engine.rat.kernels  # numba and its cached kernels loaded (QGIS keeps them)
started = time.perf_counter()
rat_to_raster({seg!r}, {out!r}, [{column!r}], rat={store!r}, overwrite=True)
print("SECONDS", time.perf_counter() - started)
"""

TRANSLATE = """
from osgeo import gdal
from tessera.engine.normalization.corrected_output import compression_options
import numpy as np
gdal.UseExceptions()
options = compression_options(np.dtype({dtype!r})) + ["NUM_THREADS=ALL_CPUS"]
started = time.perf_counter()
gdal.Translate({out!r}, {seg!r}, outputType={gdal_type}, creationOptions=options)
print("SECONDS", time.perf_counter() - started)
"""

SEGMENT_POLYGONS = """
from tessera.engine.segments.polygons import segment_polygons
started = time.perf_counter()
result = segment_polygons({seg!r}, {out!r}, ["b1_mean"], rat={store!r}, overwrite=True)
print("SECONDS", time.perf_counter() - started)
print("FEATURES", result.feature_count)
"""

POLYGONIZE = """
from osgeo import gdal, ogr
gdal.UseExceptions()
started = time.perf_counter()
source = gdal.Open({seg!r})
band = source.GetRasterBand(1)
target = ogr.GetDriverByName("GPKG").CreateDataSource({out!r})
layer = target.CreateLayer("segments", source.GetSpatialRef(), ogr.wkbPolygon)
layer.CreateField(ogr.FieldDefn("segment_id", ogr.OFTInteger))
layer.StartTransaction()
gdal.Polygonize(band, band, layer, 0, [])  # the band as its own mask: id 0 left out
layer.CommitTransaction()
layer = target = None
print("SECONDS", time.perf_counter() - started)
"""


def remove(path):
    if os.path.exists(path):
        gdal.GetDriverByName("GTiff" if path.endswith(".tif") else "GPKG").Delete(path)


def best_of(repeat, code):
    """The fastest of ``repeat`` runs (the machine may be shared) and its peak RSS."""
    return min((run_child(code) for _ in range(repeat)), key=lambda run: run[0])


def bench_raster(seg, store, folder, repeat):
    rows = []
    for column, dtype, gdal_type in (("b1_mean", "float64", "gdal.GDT_Float64"),
                                     ("klass", "int32", "gdal.GDT_Int32")):
        out_t = os.path.join(folder, f"rat_{column}.tif")
        out_g = os.path.join(folder, f"translate_{dtype}.tif")
        remove(out_t)
        remove(out_g)
        tessera = best_of(repeat, RAT_TO_RASTER.format(seg=seg, out=out_t, column=column,
                                                       store=store))
        baseline = best_of(repeat, TRANSLATE.format(seg=seg, out=out_g, dtype=dtype,
                                                    gdal_type=gdal_type))
        rows.append((f"rattoraster {column} ({dtype})", tessera, baseline,
                     os.path.getsize(out_t), os.path.getsize(out_g)))
    print("\n| case | Tessera s | GDAL translate s | ratio | Tessera peak MB | GDAL peak MB | "
          "sizes MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (t, tm), (g, gm), st, sg in rows:
        print(f"| {name} | {t:.1f} | {g:.1f} | {t / g:.2f} | {tm:.0f} | {gm:.0f} | "
              f"{st / 2**20:.0f} / {sg / 2**20:.0f} |")


def bench_polygons(seg, store, folder):
    out_t = os.path.join(folder, "segments_tessera.gpkg")
    out_g = os.path.join(folder, "segments_polygonize.gpkg")
    remove(out_t)
    remove(out_g)
    tessera = run_child(SEGMENT_POLYGONS.format(seg=seg, out=out_t, store=store))
    baseline = run_child(POLYGONIZE.format(seg=seg, out=out_g))
    print("\n| case | seconds | peak MB |")
    print("| --- | --- | --- |")
    print(f"| segmentpolygons (one multipolygon per id, + b1_mean) | {tessera[0]:.1f} | "
          f"{tessera[1]:.0f} |")
    print(f"| gdal.Polygonize alone (polygons, id only) | {baseline[0]:.1f} | "
          f"{baseline[1]:.0f} |")
    print(f"ratio {tessera[0] / baseline[0]:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--only", choices=("raster", "polygons"))
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each raster case; the fastest is reported")
    args = parser.parse_args()
    folder = os.path.join(HERE, "output")
    seg, store, count = generate(folder, args.size)
    print(f"{args.size} x {args.size}, {count} segments; GDAL {gdal.__version__}, "
          f"{os.cpu_count()} CPU(s)", flush=True)
    warm_numba()
    started = time.perf_counter()
    if args.only in (None, "raster"):
        bench_raster(seg, store, folder, args.repeat)
    if args.only in (None, "polygons"):
        bench_polygons(seg, store, folder)
    print(f"\n(benchmark took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
