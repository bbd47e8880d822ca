"""Benchmark: per-segment statistics against a raw GDAL read of the same rasters.

Generates (once, under bench/output/) a 10000 x 10000 uint16 image (1 and 4 bands; tiled
GeoTIFF, DEFLATE unless `--uncompressed`) and a uint32 segmentation with about 1,000,000
segments numbered in random order (an HFA file with a Histogram column, and a GeoTIFF
without), then times, in one fresh interpreter per case and run (after a first call on a
tiny case, so that loading numba's cache is not timed; the cases take turns,
``--repeat`` times, and the fastest run of each is reported):

1. a raw GDAL read of both rasters, window by window, in one thread;
2. Tessera's segment_stats with pixcount, min, max, mean, stddev, median, mode, p25, p75,
   writing a RAT file: with the histogram, without it (counting pass), and with 4 bands;

``--cases`` picks the cases; ``f32`` and ``f32-order`` time a float32 image (the same
segments, values to 2 decimals) with pixcount, min, max, mean, stddev, then the same
+ median, p10 and p90 (issue 22: order statistics of floats at the speed of the mean);

optionally pyshepseg's calcPerSegmentStatsTiled on the same files, in its own
interpreter (`--pyshepseg PYTHON FOLDER`; not part of Tessera); and prints the ratios to
the raw read, the peak RSS of each case's interpreter, and the first-call cost of numba
with a cold and a warm cache (fresh interpreters).

    .venv/bin/python bench/bench_segment_stats.py [--size 10000] [--uncompressed] \
        [--repeat 3] [--pyshepseg /work/peers/venv/bin/python /work/peers/pyshepseg]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
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
from tessera.engine.io.raster_io import create_raster  # noqa: E402

STATISTICS = ["pixcount", "min", "max", "mean", "stddev", "median", "mode"]
PERCENTILES = (25, 75)
#: the float32 cases: (statistics, percentiles)
FLOAT_BASIC = (["pixcount", "min", "max", "mean", "stddev"], ())
FLOAT_ORDER = (FLOAT_BASIC[0] + ["median"], (10, 90))
STRIP = 512


def generate(folder, size, bands, compressed, dtype=np.uint16):
    """Write the segmentations and the image (if missing); return their paths.

    Segments are ragged ~10 x 10 pixel blocks, every id from 1 to the count present,
    numbered in random order. The segmentation is written twice: a tiled GeoTIFF without
    histogram, and an HFA file (RLE-compressed, as segmentation tools write them) with a
    Histogram column.
    """
    os.makedirs(folder, exist_ok=True)
    tag = f"{size}_{'deflate' if compressed else 'raw'}"
    seg_tif = os.path.join(folder, f"segments_{tag}.tif")
    seg_img = os.path.join(folder, f"segments_{size}.img")
    suffix = "" if dtype == np.uint16 else f"_{np.dtype(dtype).name}"
    image_path = os.path.join(folder, f"image_{tag}_{bands}b{suffix}.tif")
    options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=YES"]
    if compressed:
        options += ["COMPRESS=DEFLATE", "PREDICTOR=2"]
    rng, ids, segment_rows = segment_grid(size)
    count = int(ids.max())
    level = rng.integers(200, 60000, len(ids)).astype(np.float64)  # brightness per segment
    if not os.path.exists(seg_tif):
        print(f"generating {seg_tif} ...", flush=True)
        dataset = create_raster(seg_tif, size, size, 1, np.uint32, options=options)
        for row0 in range(0, size, STRIP):
            grid = segment_rows(np.arange(row0, min(size, row0 + STRIP)))
            dataset.GetRasterBand(1).WriteArray(ids[grid], 0, int(row0))
        dataset = None
    if not os.path.exists(seg_img):
        print(f"generating {seg_img} ...", flush=True)
        gdal.Translate(seg_img, seg_tif, format="HFA", creationOptions=["COMPRESSED=YES"])
        counts = np.zeros(count + 1, np.float64)
        dataset = gdal.Open(seg_tif)
        for row0 in range(0, size, STRIP):
            tile = dataset.ReadAsArray(0, row0, size, min(STRIP, size - row0))
            counts += np.bincount(tile.ravel(), minlength=count + 1)
        dataset = gdal.Open(seg_img, gdal.GA_Update)
        rat = dataset.GetRasterBand(1).GetDefaultRAT()
        rat.SetRowCount(count + 1)
        rat.CreateColumn("Histogram", gdal.GFT_Real, gdal.GFU_PixelCount)
        rat.WriteArray(counts, rat.GetColumnCount() - 1)
        rat = dataset = None
    if not os.path.exists(image_path):
        print(f"generating {image_path} ...", flush=True)
        dataset = create_raster(image_path, size, size, bands, dtype, nodata=0,
                                options=options + ["INTERLEAVE=PIXEL"])
        noise = np.random.default_rng(7)
        for row0 in range(0, size, STRIP):
            rows = np.arange(row0, min(size, row0 + STRIP))
            grid = segment_rows(rows)
            for band in range(bands):
                values = level[grid] * (1 + 0.1 * band) + noise.normal(0, 40, grid.shape)
                if dtype == np.uint16:
                    values = np.clip(values, 1, 65535).astype(np.uint16)
                else:  # to 2 decimals, as a calibrated product: ties as well as spread
                    values = np.round(np.clip(values, 1, 65535) / 100, 2).astype(dtype)
                dataset.GetRasterBand(band + 1).WriteArray(values, 0, int(row0))
        dataset = None
    return seg_tif, seg_img, image_path


def segment_grid(size):
    """The segmentation of the case: (the random generator, to draw on from, the id of
    every grid cell — random order, none missing —, ``segment_rows(rows)`` giving the
    grid cell of every pixel of those rows)."""
    rng = np.random.default_rng(42)
    block = 10
    wander_r = np.cumsum(rng.integers(-1, 2, size)) % block   # ragged segment edges
    wander_c = np.cumsum(rng.integers(-1, 2, size)) % block
    per_row = size // block + 2

    def segment_rows(rows):
        return _grid(rows, size, wander_r, wander_c, block, per_row)

    used = np.zeros(per_row * per_row, bool)
    for row0 in range(0, size, STRIP):
        used[segment_rows(np.arange(row0, min(size, row0 + STRIP)))] = True
    ids = np.zeros(len(used), np.uint32)
    ids[used] = rng.permutation(int(used.sum())) + 1
    return rng, ids, segment_rows


def _grid(rows, size, wander_r, wander_c, block, per_row):
    cols = np.arange(size)
    grid_r = (rows[:, None] + wander_r[None, :]) // block
    grid_c = (cols[None, :] + wander_c[rows][:, None]) // block
    return grid_r * per_row + grid_c


def run_child(command):
    """Run a Python ``-c`` script (PRINT_PEAK appended); return (output, peak RSS bytes)."""
    done = subprocess.run(command[:-1] + [command[-1] + "\n" + PRINT_PEAK],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed:\n{done.stderr[-2000:]}")
    return done.stdout, printed_peak_mb(done.stdout) * 2**20


def raw_read(*paths):
    """Read every band of every raster window by window (one thread), dropping GDAL's
    cached blocks after each window as Tessera's reader does."""
    started = time.perf_counter()
    total = 0
    for path in paths:
        dataset = gdal.Open(path)
        for row0 in range(0, dataset.RasterYSize, STRIP):
            rows = min(STRIP, dataset.RasterYSize - row0)
            data = dataset.ReadAsArray(0, row0, dataset.RasterXSize, rows)
            dataset.FlushCache()
            total += int(data.size)
    return time.perf_counter() - started, total


def run_tessera(seg_path, image_path, folder, tiny, statistics=STATISTICS,
                percentiles=PERCENTILES):
    """In one fresh interpreter: a first call on the ``tiny`` case (numba's cache
    loaded outside the timings), a raw read of both rasters, then segment_stats
    into a separate RAT file (the inputs stay as they are). Returns (raw read
    seconds, Tessera seconds, peak RSS from the Tessera call on, segment count)."""
    rat = os.path.join(folder, "bench_rat.img")
    for path in (rat, os.path.join(folder, "tiny_rat.img")):
        if os.path.exists(path):
            os.remove(path)
    call = (f"statistics={statistics!r}, percentiles={tuple(percentiles)!r}")
    script = (
        "import sys, time; "
        f"sys.path.insert(0, {HERE!r}); "
        "from bench_segment_stats import raw_read; "
        "from tessera.engine import segment_stats; "
        f"segment_stats({tiny[0]!r}, {tiny[1]!r}, {call}, "
        f"output_rat={os.path.join(folder, 'tiny_rat.img')!r}); "
        f"raw, _ = raw_read({seg_path!r}, {image_path!r}); "
        "from peak_memory import reset_peak; reset_peak(); t = time.perf_counter(); "
        f"r = segment_stats({seg_path!r}, {image_path!r}, {call}, output_rat={rat!r}); "
        "import resource; u = resource.getrusage(resource.RUSAGE_SELF); "
        "c = u.ru_utime + u.ru_stime; "
        "print('RESULT', raw, time.perf_counter() - t, r.segment_count, c - c0)"
    )
    # CPU seconds of the Tessera call (c0 taken when the timing starts)
    script = script.replace("t = time.perf_counter(); ",
                            "import resource; u0 = resource.getrusage(resource.RUSAGE_SELF); "
                            "c0 = u0.ru_utime + u0.ru_stime; t = time.perf_counter(); ")
    output, peak = run_child([sys.executable, "-c", script])
    raw, seconds, count, cpu = output.split("RESULT")[1].split()[:4]
    return float(raw), float(seconds), peak, int(count), float(cpu)


PYSHEPSEG_RUN = """
import sys, time
sys.path.insert(0, {folder!r})
import peer_compat  # the peer folder's shim (see its README)
from pyshepseg import tilingstats
from osgeo import gdal
selection = {selection!r}
tilingstats.calcPerSegmentStatsTiled({tiny_image!r}, 1, {tiny_seg!r}, selection)  # compile
started = time.perf_counter()
tilingstats.calcPerSegmentStatsTiled({image!r}, 1, {seg!r}, selection)
print("SECONDS", time.perf_counter() - started)
"""


def run_pyshepseg(python, folder, seg_img, image_path, workdir):
    """pyshepseg's calcPerSegmentStatsTiled in its own interpreter (it needs scikit-learn),
    on a fresh copy of the HFA segmentation (it writes into the segment file's RAT)."""
    seg_copy = os.path.join(workdir, "segments_pyshepseg.img")
    gdal.GetDriverByName("HFA").CopyFiles(seg_copy, seg_img)
    tiny_seg = os.path.join(workdir, "tiny_pyshepseg.img")
    # -norat: GDAL 3.6 crashes copying the million-row RAT into the HFA copy
    gdal.Translate(tiny_seg, seg_img, options="-of HFA -norat -srcwin 0 0 200 200")
    _histogram(tiny_seg)
    tiny_image = os.path.join(workdir, "tiny_pyshepseg_image.tif")
    gdal.Translate(tiny_image, image_path, srcWin=[0, 0, 200, 200])
    selection = [("b1_" + s, s) for s in STATISTICS] + [
        (f"b1_p{p}", "percentile", p) for p in PERCENTILES]
    script = PYSHEPSEG_RUN.format(folder=folder, selection=selection, tiny_image=tiny_image,
                                  tiny_seg=tiny_seg, image=image_path, seg=seg_copy)
    output, peak = run_child([python, "-c", script])
    return float(output.split("SECONDS")[1].split()[0]), peak


def _histogram(path):
    """A Histogram column with every id of a small HFA file, ids made dense from 1."""
    dataset = gdal.Open(path, gdal.GA_Update)
    band = dataset.GetRasterBand(1)
    data = band.ReadAsArray()
    _, dense = np.unique(data, return_inverse=True)
    band.WriteArray((dense.reshape(data.shape) + 1).astype(np.uint32))
    counts = np.bincount(dense + 1).astype(np.float64)
    rat = gdal.RasterAttributeTable()
    rat.SetRowCount(len(counts))
    rat.CreateColumn("Histogram", gdal.GFT_Real, gdal.GFU_PixelCount)
    rat.WriteArray(counts, 0)
    band.SetDefaultRAT(rat)
    rat = band = dataset = None


def jit_start(cache_dir, seg_path, image_path):
    """Seconds for import + first call on a tiny case in a fresh interpreter."""
    script = (
        "import sys, time; t = time.perf_counter(); "
        f"sys.path.insert(0, {PLUGINS!r}); "
        "from tessera.engine import segment_stats; "
        f"segment_stats({seg_path!r}, {image_path!r}, statistics={STATISTICS!r}, "
        f"percentiles={PERCENTILES!r}, output_rat={os.path.join(cache_dir, 'r.img')!r}, "
        "overwrite=True); "
        "print(time.perf_counter() - t)"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def tiny_case(folder, dtype=np.uint16):
    from tessera.engine.io.raster_io import write_array

    seg = (np.arange(400).reshape(20, 20) // 7 + 1).astype(np.uint32)
    image = np.arange(400).reshape(20, 20).astype(dtype)
    return (write_array(os.path.join(folder, "tiny_seg.tif"), seg),
            write_array(os.path.join(folder, f"tiny_img_{np.dtype(dtype).name}.tif"), image))


def _best(runs):
    """(fastest raw read, fastest Tessera run, largest peak RSS, segment count, CPU seconds
    of the fastest run) of a case's runs (timeit's rule: the fastest run is the one least
    disturbed by the machine)."""
    fastest = min(runs, key=lambda r: r[1])
    return (min(r[0] for r in runs), fastest[1], max(r[2] for r in runs), runs[0][3],
            fastest[4])


def _spread(runs):
    """The range of a case's Tessera times, when it ran more than once."""
    if len(runs) < 2:
        return ""
    times = sorted(r[1] for r in runs)
    return f"  (runs {times[0]:.2f}-{times[-1]:.2f} s)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--uncompressed", action="store_true")
    parser.add_argument("--pyshepseg", nargs=2, metavar=("PYTHON", "FOLDER"),
                        help="a Python and the folder holding the pyshepseg package (peer)")
    parser.add_argument("--output", default=os.path.join(HERE, "output"))
    parser.add_argument("--cases", default="hfa,tif,4b",
                        help="cases to run, of hfa, tif, 4b, f32, f32-order")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh interpreters per case; the fastest run of each is reported")
    args = parser.parse_args()
    compressed = not args.uncompressed
    chosen = args.cases.split(",")
    seg_tif, seg_img, image_path = generate(args.output, args.size, 1, compressed)
    image4_path = image32_path = None
    if "4b" in chosen:
        _, _, image4_path = generate(args.output, args.size, 4, compressed)
    if "f32" in chosen or "f32-order" in chosen:
        _, _, image32_path = generate(args.output, args.size, 1, compressed, np.float32)
    work = tempfile.mkdtemp(prefix="tessera-bench-")
    try:
        print(f"\n{args.size} x {args.size} uint16 image ({'DEFLATE' if compressed else 'plain'}"
              f" tiled GeoTIFF), uint32 segments; {os.cpu_count()} CPUs")
        tiny = tiny_case(work)
        tiny32 = tiny_case(work, np.float32)
        # the files in the page cache
        raw_read(*[p for p in (seg_img, seg_tif, image_path, image4_path, image32_path) if p])
        cases = {"hfa": (seg_img, image_path, STATISTICS, PERCENTILES),
                 "tif": (seg_tif, image_path, STATISTICS, PERCENTILES),
                 "4b": (seg_img, image4_path, STATISTICS, PERCENTILES),
                 "f32": (seg_img, image32_path, *FLOAT_BASIC),
                 "f32-order": (seg_img, image32_path, *FLOAT_ORDER)}
        cases = {name: case for name, case in cases.items() if name in chosen}
        runs = {name: [] for name in cases}
        for _ in range(args.repeat):  # the cases take turns: a slow spell hits them alike
            for name, (seg, image, statistics, percentiles) in cases.items():
                first = tiny32 if name.startswith("f32") else tiny  # numba's cache, same type
                runs[name].append(run_tessera(seg, image, work, first, statistics, percentiles))
        for name in ("f32", "f32-order"):
            if name in runs:
                raw, seconds, peak, count, cpu = _best(runs[name])
                print(f"float32 image, {name:9}: raw read {raw:5.2f} s, Tessera {seconds:5.2f} s "
                      f"(CPU {cpu:5.2f} s), ratio {seconds / raw:5.2f}, peak RSS "
                      f"{peak / 2**20:5.0f} MB{_spread(runs[name])}")
        if "f32" in runs and "f32-order" in runs:
            basic, order = _best(runs["f32"]), _best(runs["f32-order"])
            print(f"float32: + median, p10, p90 / basic = {order[1] / basic[1]:.2f} "
                  f"(CPU {order[4] / basic[4]:.2f})")
        if not {"hfa", "tif", "4b"} <= set(runs):
            return
        raw, seconds, peak, count, _ = _best(runs["hfa"])
        print(f"raw GDAL read: HFA segments + image       {raw:7.2f} s")
        print(f"Tessera, histogram in the RAT ({count} segments)"
              f"\n                                           {seconds:7.2f} s  ratio "
              f"{seconds / raw:5.2f}  peak RSS {peak / 2**20:5.0f} MB{_spread(runs['hfa'])}")
        raw_tif, seconds_tif, peak_tif, _, _ = _best(runs["tif"])
        print(f"raw GDAL read: GeoTIFF segments + image   {raw_tif:7.2f} s")
        print(f"Tessera, no histogram (counting pass)     {seconds_tif:7.2f} s  ratio "
              f"{seconds_tif / raw_tif:5.2f}  peak RSS {peak_tif / 2**20:5.0f} MB"
              f"{_spread(runs['tif'])}")
        raw4, seconds4, peak4, _, _ = _best(runs["4b"])
        print(f"raw GDAL read: segments + 4-band image    {raw4:7.2f} s")
        print(f"Tessera, 4 bands                          {seconds4:7.2f} s  ratio "
              f"{seconds4 / raw4:5.2f}  peak RSS {peak4 / 2**20:5.0f} MB  "
              f"4 bands / 1 band {seconds4 / seconds:4.2f}{_spread(runs['4b'])}")
        if args.pyshepseg:
            peer, peer_peak = run_pyshepseg(*args.pyshepseg, seg_img, image_path, work)
            print(f"pyshepseg calcPerSegmentStatsTiled        {peer:7.2f} s  ratio "
                  f"{peer / raw:5.2f}  peak RSS {peer_peak / 2**20:5.0f} MB  "
                  f"(Tessera {peer / seconds:4.1f}x faster)")
        cache = os.path.join(work, "numba-cache")
        os.makedirs(cache)
        cold = jit_start(cache, *tiny)
        warm = min(jit_start(cache, *tiny) for _ in range(args.repeat))
        print(f"import + first call, cold numba cache     {cold:7.2f} s")
        print(f"import + first call, warm numba cache     {warm:7.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
