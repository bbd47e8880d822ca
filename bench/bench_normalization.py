"""Benchmark: global regression and local block adjustment, parallel against serial.

Generates (once, under bench/output/) four overlapping uint16 scenes of --size x --size
pixels and 4 bands (a 2 x 2 layout overlapping by a quarter of a scene each way), each with
its own gain and offset, as tiled uncompressed GeoTIFFs. Then runs each algorithm's engine
function in a fresh interpreter with 1 thread (serial) and with --threads threads
(parallel), and prints wall time, peak RSS of that interpreter and the ratio serial /
parallel. Outputs are DEFLATE-compressed tiled GeoTIFFs under bench/output/.

    .venv/bin/python bench/bench_normalization.py [global|local|both] [--size 8000]
        [--threads 2]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUTPUT = os.path.join(HERE, "output", "normalization")
sys.path.insert(0, os.path.join(REPO, "demo"))
from qgis_cli import plugin_folder  # noqa: E402

BANDS = 4
STRIP = 512
GAINS = [1.0, 1.15, 0.9, 1.05]
OFFSETS = [0, 120, -80, 40]


def scene_paths(size):
    folder = os.path.join(OUTPUT, f"scenes_{size}")
    return folder, [os.path.join(folder, f"scene_{k + 1}.tif") for k in range(4)]


def write_scenes(size):
    from osgeo import osr

    sys.path.insert(0, plugin_folder())
    from tessera.engine.raster_io import create_raster

    folder, paths = scene_paths(size)
    if all(os.path.exists(p) for p in paths):
        return paths
    os.makedirs(folder, exist_ok=True)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    step = size * 3 // 4  # neighbours overlap by a quarter of a scene
    corners = [(0, 0), (0, step), (step, 0), (step, step)]
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 60, (BANDS, STRIP, size)).astype(np.float32)
    started = time.perf_counter()
    for k, (row0, col0) in enumerate(corners):
        dataset = create_raster(paths[k], size, size, BANDS, np.uint16,
                                (400000.0 + col0 * 10.0, 10.0, 0.0, 5600000.0 - row0 * 10.0,
                                 0.0, -10.0), srs.ExportToWkt(), nodata=0,
                                options=["TILED=YES", "BIGTIFF=YES"])
        x = (np.arange(size, dtype=np.float32) + col0) / (2 * size)
        for y0 in range(0, size, STRIP):
            rows = min(STRIP, size - y0)
            y = ((np.arange(rows, dtype=np.float32) + row0 + y0) / (2 * size))[:, None]
            for band in range(BANDS):
                field = (np.sin(9 * x[None, :] + band) + np.cos(7 * y - band) + 2.5) * 900
                values = (field + noise[band, :rows]) * GAINS[k] + OFFSETS[k]
                plane = np.clip(values, 1, 65535).astype(np.uint16)
                dataset.GetRasterBand(band + 1).WriteArray(plane, 0, y0)
        dataset = None
        print(f"  scene {k + 1}/4 written ({time.perf_counter() - started:.0f} s)", flush=True)
    return paths


CHILD = """
import json, sys, time
sys.path.insert(0, {plugins!r})
from tessera.engine import {function}
paths = {paths!r}
started = time.perf_counter()
{function}(paths, {out!r}, threads={threads}, **{options!r})
wall = time.perf_counter() - started
peak = [int(line.split()[1]) for line in open("/proc/self/status")
        if line.startswith("VmHWM")][0] / 1024  # this process's own peak RSS
print(json.dumps({{"wall": wall, "peak_mb": peak}}))
"""


def run(function, paths, threads, out, options):
    code = CHILD.format(plugins=plugin_folder(), function=function, paths=paths,
                        out=out, threads=threads, options=options)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{function} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def warm_up(function):
    """Compile (and cache) the numba kernels on tiny scenes so timings exclude it."""
    paths = write_scenes(256)
    run(function, paths, 1, os.path.join(OUTPUT, "warm_up"), {})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="?", default="both", choices=["global", "local", "both"])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(f"Generating four {args.size} x {args.size} x {BANDS}-band uint16 scenes "
          f"(once, in {OUTPUT})", flush=True)
    paths = write_scenes(args.size)
    megapixels = 4 * args.size * args.size / 1e6
    functions = {"global": "global_regression", "local": "local_block_adjustment"}
    chosen = ["global", "local"] if args.which == "both" else [args.which]
    print(f"\n{'algorithm':<24}{'threads':>8}{'wall s':>10}{'Mpx/s':>10}{'peak RSS MB':>14}")
    for which in chosen:
        function = functions[which]
        warm_up(function)
        out = os.path.join(OUTPUT, f"{which}_out_{args.size}")
        timings = {}
        for threads in (1, args.threads):
            figures = run(function, paths, threads, out, {})
            timings[threads] = figures
            print(f"{function:<24}{threads:>8}{figures['wall']:>10.1f}"
                  f"{megapixels / figures['wall']:>10.1f}{figures['peak_mb']:>14.0f}", flush=True)
        ratio = timings[1]["wall"] / timings[args.threads]["wall"]
        print(f"{function}: serial / parallel wall time = {ratio:.2f}")
    print(f"\npeak RSS of this script: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
