"""Benchmark: per-segment statistics against a raw GDAL read of the same rasters.

Generates (once, under bench/output/) a 10000 x 10000 uint16 image (1 and 4 bands) and a
uint32 segmentation with about 1,000,000 segments numbered in random order, as tiled
GeoTIFFs (DEFLATE by default, `--uncompressed` for plain tiles), then times in this process:

1. a raw GDAL read of both rasters, window by window, in one thread;
2. Tessera's segment_stats with pixcount, min, max, mean, stddev, median, mode, p25, p75
   (one band, then four bands), writing a RAT file;
3. optionally pyshepseg's calcPerSegmentStatsTiled on the same files (`--pyshepseg DIR`,
   a folder holding the pyshepseg package; not part of Tessera);

and prints the ratios to the raw read, the peak RSS of each phase, and the first-call cost
of numba with a cold and a warm cache (fresh interpreters).

    .venv/bin/python bench/bench_segment_stats.py [--size 10000] [--uncompressed]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from osgeo import gdal

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "demo"))
from qgis_cli import plugin_folder  # noqa: E402

PLUGINS = plugin_folder()
sys.path.insert(0, PLUGINS)
from tessera.engine import segment_stats  # noqa: E402
from tessera.engine.raster_io import create_raster  # noqa: E402

STATISTICS = ["pixcount", "min", "max", "mean", "stddev", "median", "mode"]
PERCENTILES = (25, 75)
STRIP = 512


def generate(folder, size, bands, compressed):
    """Write the segmentation and the image (if missing); return their paths."""
    os.makedirs(folder, exist_ok=True)
    tag = f"{size}_{'deflate' if compressed else 'raw'}"
    seg_path = os.path.join(folder, f"segments_{tag}.tif")
    image_path = os.path.join(folder, f"image_{tag}_{bands}b.tif")
    options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=YES"]
    if compressed:
        options += ["COMPRESS=DEFLATE", "PREDICTOR=2"]
    rng = np.random.default_rng(42)
    block = 10
    wander_r = np.cumsum(rng.integers(-1, 2, size)) % block   # ragged segment edges
    wander_c = np.cumsum(rng.integers(-1, 2, size)) % block
    per_row = size // block + 2
    count = (size // block + 2) * per_row
    ids = (rng.permutation(count) + 1).astype(np.uint32)       # random order
    level = rng.integers(200, 60000, count).astype(np.float64)  # one brightness per segment
    if not os.path.exists(seg_path):
        print(f"generating {seg_path} ...", flush=True)
        dataset = create_raster(seg_path, size, size, 1, np.uint32, options=options)
        for row0 in range(0, size, STRIP):
            rows = np.arange(row0, min(size, row0 + STRIP))
            grid = _grid(rows, size, wander_r, wander_c, block, per_row)
            dataset.GetRasterBand(1).WriteArray(ids[grid], 0, int(row0))
        dataset = None
    if not os.path.exists(image_path):
        print(f"generating {image_path} ...", flush=True)
        dataset = create_raster(image_path, size, size, bands, np.uint16, nodata=0,
                                options=options + ["INTERLEAVE=PIXEL"])
        noise = np.random.default_rng(7)
        for row0 in range(0, size, STRIP):
            rows = np.arange(row0, min(size, row0 + STRIP))
            grid = _grid(rows, size, wander_r, wander_c, block, per_row)
            for band in range(bands):
                values = level[grid] * (1 + 0.1 * band) + noise.normal(0, 40, grid.shape)
                values = np.clip(values, 1, 65535).astype(np.uint16)
                dataset.GetRasterBand(band + 1).WriteArray(values, 0, int(row0))
        dataset = None
    return seg_path, image_path


def _grid(rows, size, wander_r, wander_c, block, per_row):
    cols = np.arange(size)
    grid_r = (rows[:, None] + wander_r[None, :]) // block
    grid_c = (cols[None, :] + wander_c[rows][:, None]) // block
    return grid_r * per_row + grid_c


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled)."""

    def __enter__(self):
        self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss():
    with open("/proc/self/statm") as stream:
        return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def raw_read(*paths):
    """Read every band of every raster window by window (one thread)."""
    started = time.perf_counter()
    total = 0
    for path in paths:
        dataset = gdal.Open(path)
        for row0 in range(0, dataset.RasterYSize, STRIP):
            rows = min(STRIP, dataset.RasterYSize - row0)
            data = dataset.ReadAsArray(0, row0, dataset.RasterXSize, rows)
            total += int(data.size)
    return time.perf_counter() - started, total


def run_tessera(seg_path, image_path, folder, bands=None):
    rat = os.path.join(folder, "bench_rat.img")
    if os.path.exists(rat):
        os.remove(rat)
    started = time.perf_counter()
    with PeakRss() as peak:
        result = segment_stats(seg_path, image_path, statistics=STATISTICS, bands=bands,
                               percentiles=PERCENTILES, output_rat=rat)
    return time.perf_counter() - started, peak.peak, result


def run_pyshepseg(folder, seg_path, image_path, workdir):
    """pyshepseg needs an HFA/KEA segment file with a Histogram: convert once."""
    sys.path.insert(0, folder)
    from pyshepseg import tilingstats

    seg_img = os.path.join(workdir, "segments_pyshepseg.img")
    if not os.path.exists(seg_img):
        gdal.Translate(seg_img, seg_path, format="HFA")
        dataset = gdal.Open(seg_img, gdal.GA_Update)
        band = dataset.GetRasterBand(1)
        counts = np.zeros(1, np.int64)
        for row0 in range(0, dataset.RasterYSize, STRIP):
            data = band.ReadAsArray(0, row0, dataset.RasterXSize,
                                    min(STRIP, dataset.RasterYSize - row0)).ravel()
            part = np.bincount(data)
            if len(part) > len(counts):
                part[: len(counts)] += counts
                counts = part
            else:
                counts[: len(part)] += part
        rat = band.GetDefaultRAT()
        rat.SetRowCount(len(counts))
        rat.CreateColumn("Histogram", gdal.GFT_Real, gdal.GFU_PixelCount)
        rat.WriteArray(counts.astype(np.float64), rat.GetColumnCount() - 1)
        rat = band = dataset = None
    selection = [("b1_" + s, s) for s in STATISTICS] + [
        (f"b1_p{p}", "percentile", p) for p in PERCENTILES]
    out = os.path.join(workdir, "pyshepseg_rat.img")
    started = time.perf_counter()
    with PeakRss() as peak:
        tilingstats.calcPerSegmentStatsTiled(image_path, 1, seg_img, selection)
    return time.perf_counter() - started, peak.peak, out


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


def tiny_case(folder):
    from tessera.engine.raster_io import write_array

    seg = (np.arange(400).reshape(20, 20) // 7 + 1).astype(np.uint32)
    image = np.arange(400).reshape(20, 20).astype(np.uint16)
    return (write_array(os.path.join(folder, "tiny_seg.tif"), seg),
            write_array(os.path.join(folder, "tiny_img.tif"), image))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--uncompressed", action="store_true")
    parser.add_argument("--pyshepseg", help="folder holding the pyshepseg package (peer)")
    parser.add_argument("--output", default=os.path.join(HERE, "output"))
    args = parser.parse_args()
    compressed = not args.uncompressed
    seg_path, image_path = generate(args.output, args.size, 1, compressed)
    _, image4_path = generate(args.output, args.size, 4, compressed)
    work = tempfile.mkdtemp(prefix="tessera-bench-")
    try:
        print(f"\n{args.size} x {args.size}, {'DEFLATE' if compressed else 'uncompressed'} "
              f"tiled GeoTIFFs, {os.cpu_count()} CPUs")
        segment_stats(*tiny_case(work), statistics=STATISTICS, percentiles=PERCENTILES,
                      output_rat=os.path.join(work, "warm.img"))  # compile outside timings
        raw, _ = raw_read(seg_path, image_path)
        print(f"raw GDAL read, segments + 1-band image : {raw:7.2f} s")
        seconds, peak, result = run_tessera(seg_path, image_path, work)
        print(f"Tessera, 1 band ({result.segment_count} segments) : {seconds:7.2f} s  "
              f"ratio {seconds / raw:5.2f}  peak RSS {peak / 2**20:6.0f} MB  "
              f"(phases {', '.join(f'{k} {v:.2f}' for k, v in result.timings.items())})")
        raw4, _ = raw_read(seg_path, image4_path)
        seconds4, peak4, _ = run_tessera(seg_path, image4_path, work)
        print(f"raw GDAL read, segments + 4-band image : {raw4:7.2f} s")
        print(f"Tessera, 4 bands                        : {seconds4:7.2f} s  "
              f"ratio {seconds4 / raw4:5.2f}  4 bands / 1 band {seconds4 / seconds:4.2f}  "
              f"peak RSS {peak4 / 2**20:6.0f} MB")
        if args.pyshepseg:
            peer, peer_peak, _ = run_pyshepseg(args.pyshepseg, seg_path, image_path, work)
            print(f"pyshepseg calcPerSegmentStatsTiled      : {peer:7.2f} s  "
                  f"ratio {peer / raw:5.2f}  peak RSS {peer_peak / 2**20:6.0f} MB  "
                  f"Tessera is {peer / seconds:4.1f}x faster")
        cache = os.path.join(work, "numba-cache")
        os.makedirs(cache)
        tiny = tiny_case(work)
        cold = jit_start(cache, *tiny)
        warm = jit_start(cache, *tiny)
        print(f"import + first call, cold numba cache   : {cold:7.2f} s")
        print(f"import + first call, warm numba cache   : {warm:7.2f} s")
        print(f"process peak RSS (ru_maxrss)            : "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:6.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
