"""Benchmark: global regression and local block adjustment, parallel against serial,
and against the I/O floor.

Generates (once, under bench/output/) overlapping uint16 scenes of --size x --size
pixels and 4 bands, each with its own gain and offset, as tiled uncompressed GeoTIFFs:
``--layout grid`` (default) four scenes in a 2 x 2 layout overlapping by a quarter of a
scene each way, ``--layout chain`` three scenes in a row overlapping by half. Then runs
each algorithm's engine function in a fresh interpreter with 1 thread (serial) and with
--threads threads (parallel), and prints wall time, peak RSS of that interpreter
(VmHWM) and the ratio serial / parallel. Outputs are compressed tiled GeoTIFFs under
bench/output/.

The I/O floor (also a fresh interpreter, --threads threads over the images) reads every
input window by window, all bands at once, and writes it back unchanged to as many
outputs with the engine's creation options (tiled ZSTD with a predictor): no
normalization can take less. Each algorithm's parallel wall time is printed as a
multiple of it (``--runs`` runs of each, best kept: the machine may be shared), with
the CPU seconds (user + system) of its process, which a busy machine disturbs less.
``--warm`` times each algorithm's second run in its process instead (numba imported and
the kernels loaded, as in a QGIS session after the first run; CPU seconds of that run).

The kernels are also timed alone on one window in memory (CPU seconds per value); the
arithmetic each algorithm must do (every value through its statistics and correction
kernels, overlaps through the pair kernel) scaled to the scenes and divided by the
threads, added to the I/O floor, is a second yardstick: I/O floor + arithmetic.

With ``--baseline CHECKOUT`` (another Tessera checkout, e.g. ``git worktree add
/tmp/before <commit>``) that checkout's engine runs in turn with this one's on the same
scenes, so both see the same load: before/after figures from one command; every value
of the outputs is then compared with the baseline's (how many differ).

With ``--spectralmatch PYTHON`` (an interpreter that can ``import spectralmatch``: the peer,
not part of Tessera), each algorithm is then also run by spectralmatch in that interpreter,
in its own process, with equivalent settings (SPECTRALMATCH_OPTIONS) and --threads image
threads; the script prints its wall time and peak RSS, the ratios spectralmatch / Tessera
(parallel) and how close the two tools' outputs are (compare_outputs, compare_adjustments).
Tessera's global regression then weights overlaps by 1, as spectralmatch 1.6 does.

With ``--dask`` (needs dask[distributed]) each algorithm runs instead with the threaded
default (--threads threads), then with ``scheduler=`` a LocalCluster of 1 and of 2
single-threaded worker processes (and of 2 workers whose corrections are forced into
stripes assembled by a last task per image), each in a fresh interpreter with the same
pieces (threads=--threads) (``--setups`` picks among them; the cluster's workers have
loaded the kernels beforehand, the threaded process too with ``--warm``): wall time, its
ratio to the threaded run, the CPU seconds of the whole process tree (start-up, imports and the
cluster's warm-up included) and of the timed run alone ("run CPU": the threaded process;
the client, scheduler, workers and nannies), the pickled bytes
of every task's arguments and result (per task boundary: the statistics, correction and
assembly tasks), the tasks' compute times (Dask's task stream), a check that the outputs'
pixels equal the threaded run's, and a projection for N machines of 2 cores from the
measured per-task times.

    .venv/bin/python bench/bench_normalization.py [global|local|both] [--size 8000]
        [--layout grid|chain] [--threads 2] [--runs 1] [--no-serial] [--warm]
        [--baseline CHECKOUT] [--spectralmatch /work/peers/spectralmatch-env/bin/python]
        [--dask [--setups 1w,2w,stripes]]
"""

import argparse
import functools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
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


def layout_corners(size, layout):
    """(row, col) of each scene's top-left pixel."""
    if layout == "chain":  # three in a row, neighbours overlapping by half
        return [(0, 0), (0, size // 2), (0, size)]
    step = size * 3 // 4  # 2 x 2, neighbours overlap by a quarter of a scene
    return [(0, 0), (0, step), (step, 0), (step, step)]


def scene_paths(size, layout="grid"):
    tag = "" if layout == "grid" else f"{layout}_"
    folder = os.path.join(OUTPUT, f"scenes_{tag}{size}")
    count = len(layout_corners(size, layout))
    return folder, [os.path.join(folder, f"scene_{k + 1}.tif") for k in range(count)]


def write_scenes(size, layout="grid"):
    from osgeo import osr

    sys.path.insert(0, plugin_folder())
    from tessera.engine.io.raster_io import create_raster

    folder, paths = scene_paths(size, layout)
    if all(os.path.exists(p) for p in paths):
        return paths
    os.makedirs(folder, exist_ok=True)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    corners = layout_corners(size, layout)
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
        print(f"  scene {k + 1}/{len(paths)} written ({time.perf_counter() - started:.0f} s)",
              flush=True)
    return paths


CHILD = """
import json, sys, time
sys.path.insert(0, {plugins!r})
from tessera.engine import {function}
paths = {paths!r}
if {warm!r}:  # a run before, as in a QGIS session after its first run: numba loaded
    {function}(paths, {out!r}, threads={threads}, **{options!r})
started, cpu = time.perf_counter(), time.process_time()
{function}(paths, {out!r}, threads={threads}, **{options!r})
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
sys.path.insert(0, {here!r})
from peak_memory import peak_rss_mb
print(json.dumps({{"wall": wall, "peak_mb": peak_rss_mb(), "cpu_run": cpu}}))
"""


# A run on a LocalCluster of {workers} single-threaded worker processes: the cluster is
# started and its workers warmed up on tiny scenes first (not timed, printed: a long-lived
# cluster is the use case); the engine's run_tasks
# is wrapped to weigh what crosses each task boundary (pickled arguments and results).
DASK_CHILD = """
import json, logging, os, pickle, sys, time
sys.path.insert(0, {plugins!r})
import cloudpickle, distributed
from tessera.engine import {function}
from tessera.engine import distributed as engine_distributed
from tessera.engine.normalization import distributed_output
if {stripes!r}:
    distributed_output.tasks_per_image = lambda client, images: {stripes!r}
original, boundaries = engine_distributed.run_tasks, {{}}
PHASES = ("tessera-statistics", "tessera-block-sums", "tessera-correction", "tessera-assembly")

def measured(client, calls, reporter=None, weights=None, name="tessera"):
    results = original(client, calls, reporter, weights, name)
    phase = next((p for p in PHASES if name.startswith(p)), "other")
    seen = boundaries.setdefault(phase, {{"tasks": 0, "arguments": 0, "results": 0}})
    seen["tasks"] += len(calls)
    seen["arguments"] += sum(len(cloudpickle.dumps(call)) for call in calls)
    seen["results"] += sum(len(pickle.dumps(result)) for result in results)
    return results

engine_distributed.run_tasks = distributed_output.run_tasks = measured
paths = {paths!r}
started = time.perf_counter()
with distributed.LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None,
                              silence_logs=logging.ERROR) as cluster, \\
        distributed.Client(cluster) as client:
    # the workers import Tessera and load the numba kernels once, on tiny scenes: a run on
    # the cluster, then one on each worker's own thread (tiny tasks may all go to one
    # worker, which would leave a kernel to load to another in the timed run)
    {function}({warm!r}, {out!r} + "_warm", threads={threads}, scheduler=client, overwrite=True)
    client.run(lambda: {function}({warm!r}, {out!r} + f"_warm{{os.getpid()}}", threads=1,
                                  overwrite=True))
    boundaries.clear()
    cluster_seconds = time.perf_counter() - started

    def cpu_seconds():  # user + system of this process (client and scheduler)
        times = os.times()
        return times.user + times.system

    def tree_cpu():  # this process, the workers and their nannies
        return (cpu_seconds() + sum(client.run(cpu_seconds).values())
                + sum(client.run(cpu_seconds, nanny=True).values()))

    with distributed.get_task_stream(client) as stream:
        cpu = tree_cpu()
        started = time.perf_counter()
        {function}(paths, {out!r}, threads={threads}, scheduler=client, **{options!r})
        wall = time.perf_counter() - started
        cpu_run = tree_cpu() - cpu
    tasks = {{}}
    for record in stream.data:
        key = record["key"] if isinstance(record["key"], str) else "other"
        name = next((p for p in PHASES if key.startswith(p)), "other")
        for step in record["startstops"]:
            if step["action"] == "compute":
                entry = tasks.setdefault(name, {{"computes": [], "first": step["start"],
                                                "last": step["stop"]}})
                entry["computes"].append(step["stop"] - step["start"])
                entry["first"] = min(entry["first"], step["start"])
                entry["last"] = max(entry["last"], step["stop"])
print(json.dumps({{"wall": wall, "cluster": cluster_seconds, "boundaries": boundaries,
                  "tasks": tasks, "cpu_run": cpu_run}}))
"""


#: The --dask set-ups: (label, workers, stripes per image or 0), chosen with --setups.
DASK_SETUPS = (("LocalCluster 1 worker", 1, 0), ("LocalCluster 2 workers", 2, 0),
               ("2 workers, stripes", 2, 2))
SETUP_NAMES = {"1w": "LocalCluster 1 worker", "2w": "LocalCluster 2 workers",
               "stripes": "2 workers, stripes"}


def run_dask(function, paths, threads, out, options, workers, stripes=0):
    """Figures of ``function`` on a fresh LocalCluster of ``workers`` (see DASK_CHILD)."""
    code = DASK_CHILD.format(plugins=plugins_of(), function=function, paths=paths, out=out,
                             threads=threads, options=options, workers=workers,
                             stripes=stripes, warm=write_scenes(256, "grid"))
    cpu = children_cpu()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{function} on Dask failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cpu"] = children_cpu() - cpu  # client, scheduler and workers, start-up included
    return figures


def same_pixels(first_folder, second_folder, suffix):
    """True when every ``*<suffix>.tif`` of the two folders has the same pixels."""
    from osgeo import gdal

    names = sorted(n for n in os.listdir(first_folder) if n.endswith(f"{suffix}.tif"))
    if not names or names != sorted(n for n in os.listdir(second_folder)
                                    if n.endswith(f"{suffix}.tif")):
        return False
    for name in names:
        a = gdal.Open(os.path.join(first_folder, name))
        b = gdal.Open(os.path.join(second_folder, name))
        for y in range(0, a.RasterYSize, 512):
            rows = min(512, a.RasterYSize - y)
            if not np.array_equal(a.ReadAsArray(0, y, a.RasterXSize, rows),
                                  b.ReadAsArray(0, y, b.RasterXSize, rows)):
                return False
    return True


def projection(figures, images, machines, cores=2):
    """Seconds on ``machines`` of ``cores`` single-threaded workers each, from one run's
    per-task compute times: the client's own time (the run's wall time outside the task
    phases) plus, per phase, its summed compute time over the workers (at least its
    longest task); corrections of more workers than images are cut into stripes, which
    adds one assembly task per image (its time from the stripes run)."""
    workers = machines * cores
    tasks = figures["tasks"]
    spans = sum(entry["last"] - entry["first"] for entry in tasks.values())
    total = max(0.0, figures["wall"] - spans)
    for name, entry in tasks.items():
        if name == "tessera-assembly":
            continue
        total += max(sum(entry["computes"]) / workers, max(entry["computes"]) / max(
            1, math.ceil(workers / images)) if name == "tessera-correction" else 0.0)
    if workers > images and "assembly" in figures:
        total += max(figures["assembly"])
    return total


def dask_comparison(args, chosen, functions, suffixes, paths):
    """The --dask figures: threads, LocalCluster of 1 and 2 workers, stripes."""
    tag = "" if args.layout == "grid" else f"{args.layout}_"
    print(f"\n{'algorithm':<24}{'run':<28}{'wall s':>8}{'x threads':>11}{'CPU s':>8}"
          f"{'run CPU s':>11}{'same pixels':>13}")
    for which in chosen:
        function = functions[which]
        warm_up(function, args.layout)
        base = os.path.join(OUTPUT, f"{which}_dask_{tag}{args.size}")
        options = {"overwrite": True}
        threaded = best_of(args.runs, functools.partial(
            run, function, paths, args.threads, base + "_threads", options, warm=args.warm))
        print(f"{function:<24}{f'threads ({args.threads})':<28}{threaded['wall']:>8.1f}"
              f"{1.0:>11.2f}{threaded['cpu']:>8.1f}{threaded['cpu_run']:>11.1f}{'':>13}",
              flush=True)
        runs = {}
        for label, workers, stripes in DASK_SETUPS:
            if label not in args.setups:
                continue
            out = f"{base}_{workers}w{'_stripes' if stripes else ''}"
            figures = min((run_dask(function, paths, args.threads, out, options, workers,
                                    stripes) for _ in range(max(1, args.runs))),
                          key=lambda f: f["wall"])
            runs[label] = figures
            same = same_pixels(base + "_threads", out, suffixes[which])
            print(f"{'':<24}{label:<28}{figures['wall']:>8.1f}"
                  f"{figures['wall'] / threaded['wall']:>11.2f}{figures['cpu']:>8.1f}"
                  f"{figures['cpu_run']:>11.1f}{str(same):>13}"
                  f"   (cluster start and warm-up {figures['cluster']:.1f} s)", flush=True)
        two = runs.get("LocalCluster 2 workers")
        if two is None:
            continue
        print("  bytes per task boundary (2 workers; pickled arguments / results per task):")
        for label in ("LocalCluster 2 workers", "2 workers, stripes"):
            for name, seen in runs.get(label, {}).get("boundaries", {}).items():
                print(f"    {label:<24}{name:<28}{seen['tasks']:>5} tasks "
                      f"{seen['arguments'] / seen['tasks'] / 1024:>9.1f} KiB in "
                      f"{seen['results'] / seen['tasks'] / 1024:>9.1f} KiB out")
        print("  task compute times (2 workers): ")
        for label in ("LocalCluster 2 workers", "2 workers, stripes"):
            for name, entry in runs.get(label, {}).get("tasks", {}).items():
                computes = entry["computes"]
                print(f"    {label:<24}{name:<28}{len(computes):>5} tasks, sum "
                      f"{sum(computes):6.1f} s, longest {max(computes):5.2f} s, phase "
                      f"{entry['last'] - entry['first']:5.1f} s")
        assembly = runs.get("2 workers, stripes", {}).get("tasks", {}).get("tessera-assembly")
        if assembly:
            two = dict(two, assembly=assembly["computes"])
        print("  projection (machines of 2 single-threaded workers, from the 2-worker run): " +
              ", ".join(f"{n}: {projection(two, len(paths), n):.1f} s"
                        for n in (1, 2, 4, 8, 16)), flush=True)


@functools.lru_cache
def plugins_of(repo=None):
    """A folder where the Tessera checkout ``repo`` (default: this one) is ``tessera``."""
    if repo is None:
        return plugin_folder()
    folder = tempfile.mkdtemp(prefix="tessera-baseline-")
    os.symlink(os.path.abspath(repo), os.path.join(folder, "tessera"))
    return folder


def children_cpu():
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(function, paths, threads, out, options, repo=None, warm=False):
    """Wall time, peak RSS and CPU seconds of ``function`` of the Tessera checkout
    ``repo`` (default: this one) in a fresh interpreter; ``warm``: the run timed is the
    second in that interpreter, and its CPU seconds are those of the run alone."""
    code = CHILD.format(plugins=plugins_of(repo), here=HERE, function=function, paths=paths,
                        out=out, threads=threads, options=options, warm=warm)
    cpu = children_cpu()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{function} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cpu"] = figures["cpu_run"] if warm else children_cpu() - cpu
    return figures


# The I/O floor: what any normalization must do at least. Every input is read once, window
# by window (the engine's correction windows, all bands at once), and written unchanged to
# an output with the engine's creation options, in the engine's pieces on `threads`
# threads. GDAL's cache is left at its default: the floor is not held to the memory target.
FLOOR_CHILD = """
import itertools, json, math, os, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, {plugins!r})
from osgeo import gdal
from tessera.engine.normalization.corrected_output import (PIECES_PER_THREAD, compression_options,
                                             correction_window_pixels)
from tessera.engine.parallel import split_evenly
from tessera.engine.io.raster_io import create_raster, plan_windows
gdal.UseExceptions()
paths, out, threads = {paths!r}, {out!r}, {threads}
os.makedirs(out, exist_ok=True)
started = time.perf_counter()
tasks, targets = [], []
for path in paths:
    source = gdal.Open(path)
    band = source.GetRasterBand(1)
    dtype = source.ReadAsArray(0, 0, 1, 1).dtype
    target = create_raster(os.path.join(out, os.path.basename(path)), source.RasterXSize,
                           source.RasterYSize, source.RasterCount, dtype,
                           source.GetGeoTransform(), source.GetProjection(),
                           band.GetNoDataValue(), options=compression_options(dtype))
    lock = threading.Lock()
    targets.append(target)
    windows = plan_windows(target, 1, correction_window_pixels(source.RasterCount, dtype),
                           also=[(source, 1)])
    parts = 1 if threads <= 1 else math.ceil(PIECES_PER_THREAD * threads / len(paths))
    tasks.append([(path, target, lock, run) for run in split_evenly(windows, parts)])
# image after image, as the engine takes them
tasks = [task for turn in itertools.zip_longest(*tasks) for task in turn if task is not None]

def copy(task):  # like the engine: own read handle, writes under the output's lock
    path, target, lock, run = task
    source = gdal.Open(path)
    for w in run:
        block = source.ReadAsArray(w.xoff, w.yoff, w.xsize, w.ysize)
        with lock:
            target.WriteArray(block, w.xoff, w.yoff)
            target.FlushCache()

with ThreadPoolExecutor(threads) as pool:
    list(pool.map(copy, tasks))
tasks = targets = target = None  # closing writes the last tiles and the headers
wall = time.perf_counter() - started
sys.path.insert(0, {here!r})
from peak_memory import peak_rss_mb
print(json.dumps({{"wall": wall, "peak_mb": peak_rss_mb()}}))
"""


def run_floor(paths, threads, out):
    """Wall time and peak RSS of the I/O floor (:data:`FLOOR_CHILD`) in a fresh process."""
    shutil.rmtree(out, ignore_errors=True)
    code = FLOOR_CHILD.format(plugins=plugins_of(), here=HERE, paths=paths, out=out,
                              threads=threads)
    cpu = children_cpu()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"I/O floor failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cpu"] = children_cpu() - cpu
    return figures


# The arithmetic each algorithm must do, timed alone on one window of the first scene held
# in memory (no I/O, one thread): CPU seconds per value of each kernel. Scaled to the scenes'
# values and divided by the threads, it is what the I/O floor leaves out.
KERNELS_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {plugins!r})
from osgeo import gdal
from tessera.engine.normalization import kernels as k
from tessera.engine.normalization.corrected_output import output_range
dataset = gdal.Open({path!r})
tile = dataset.ReadAsArray(0, 0, min(4000, dataset.RasterXSize), min(256, dataset.RasterYSize))
second = tile[:, ::-1].copy()
bands, rows, cols = tile.shape
mask, store = np.ones((1, 1), np.uint8), output_range(tile.dtype, 0).store
out, totals = np.empty_like(tile), np.zeros((4, bands))
grid = np.linspace(800.0, 3000.0, bands * 20 * 30).reshape(bands, 20, 30)
fr = np.linspace(0, 19, 2000)[:rows]  # block rows 0-2 in this window
r0 = np.floor(fr).astype(np.int64)
fc = np.linspace(0, 29, cols)
c0 = np.floor(fc).astype(np.int64)
block_rows, block_cols = r0, (np.arange(cols) // 200).astype(np.int64)
scale, shift = np.full(bands, 1.1), np.zeros(bands)

def moments():
    k.accumulate_moments(tile, 0.0, True, mask, False, np.zeros(bands, np.int64),
                         np.zeros(bands), np.zeros(bands))

def pair():  # per value of one image of the pair
    k.accumulate_pair_moments(tile[:, :, :cols // 2], second[:, :, cols // 2:], 0.0, True,
                              mask, False, np.zeros(bands, np.int64), np.zeros(bands),
                              np.zeros(bands), np.zeros(bands), np.zeros(bands))

def linear():
    k.linear_correction(tile, 0.0, True, scale, shift, out, store, *totals)

def blocks():
    k.accumulate_blocks(tile, 0.0, True, mask, False, block_rows, block_cols,
                        np.zeros((bands, 20, 30)), np.zeros((bands, 20, 30), np.int64),
                        np.full(bands, np.inf))

def gamma():
    k.local_correction(tile, 0.0, True, grid, grid[:, ::-1, :].copy(), r0,
                       np.minimum(r0 + 1, 19), fr - r0, c0, np.minimum(c0 + 1, 29), fc - c0,
                       True, 1.0, shift, out, store, *totals)

seconds = {{}}
for name, kernel, values in (("moments", moments, tile.size), ("pair", pair, tile.size // 2),
                             ("linear", linear, tile.size), ("blocks", blocks, tile.size),
                             ("gamma", gamma, tile.size)):
    kernel()
    started = time.process_time()
    for _ in range(5):
        kernel()
    seconds[name] = (time.process_time() - started) / 5 / values
print(json.dumps(seconds))
"""


def kernel_seconds(paths):
    """CPU seconds per value of each normalization kernel (:data:`KERNELS_CHILD`)."""
    code = KERNELS_CHILD.format(plugins=plugins_of(), path=paths[0])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"kernel timing failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def arithmetic_seconds(which, per_value, paths, threads):
    """Wall seconds of the arithmetic ``which`` must do on ``paths`` with ``threads``
    threads: every value once through the statistics kernel(s) and once through the
    correction (global regression: each overlap's values through the pair kernel too)."""
    from osgeo import gdal

    values = sum(gdal.Open(p).RasterXSize * gdal.Open(p).RasterYSize for p in paths) * BANDS
    if which == "global":
        overlap = sum(cols * rows for *_, cols, rows in window_pairs(paths)) * BANDS
        total = values * (per_value["moments"] + per_value["linear"])
        total += overlap * per_value["pair"]
    else:
        total = values * (per_value["blocks"] + per_value["gamma"])
    return total / threads


def best_of(runs, *measures):
    """For each of ``measures`` (run in turn, ``runs`` times: a shared machine disturbs
    them alike), the run with the smallest wall time, with the largest peak RSS and the
    smallest CPU time seen (the fastest run is the least disturbed; memory does not
    depend on the others)."""
    figures = [[] for _ in measures]
    for _ in range(max(1, runs)):
        for measure, seen in zip(measures, figures, strict=True):
            seen.append(measure())
    bests = []
    for seen in figures:
        best = dict(min(seen, key=lambda f: f["wall"]))
        best["walls"] = [f["wall"] for f in seen]
        best["peak_mb"] = max(f["peak_mb"] for f in seen)
        best["cpu"] = min(f["cpu"] for f in seen)
        bests.append(best)
    return bests if len(measures) > 1 else bests[0]


def figures_row(label, threads, figures, megapixels, floor):
    return (f"{label:<24}{threads:>8}{figures['wall']:>10.1f}{megapixels / figures['wall']:>10.1f}"
            f"{figures['peak_mb']:>14.0f}{figures['cpu']:>8.1f}{figures['wall'] / floor:>10.2f}"
            f"   (runs: {', '.join(f'{w:.1f}' for w in figures['walls'])} s)")


# spectralmatch settings equivalent to Tessera's defaults. Beyond the images, one output
# folder per run and --threads image threads, they differ from spectralmatch 1.6's defaults:
# - global: pif_method "entire" (its default "flood_from_match_points" takes statistics only
#   from pseudo-invariant features found by ORB tie points, a different method) and exact
#   statistics (its default estimate_stats=True lets GDAL sample the pixels); all images are
#   model images (its default).
# - local: "gamma" correction (its default is "offset") with 100 blocks per image (default).
SPECTRALMATCH_OPTIONS = {
    "global_regression": {"pif_method": "entire", "estimate_stats": False},
    "local_block_adjustment": {"number_of_blocks": 100, "correction_method": "gamma"},
}
# Tessera options that reproduce spectralmatch 1.6 where Tessera's default differs.
TESSERA_AS_SPECTRALMATCH = {"global_regression": {"weight_by_overlap_size": False}}

PEER_CHILD = """
import json, sys, time
from importlib.metadata import version
sys.path.insert(0, {here!r})
from peak_memory import peak_rss_mb
import spectralmatch
from osgeo import gdal
imported = peak_rss_mb()
started = time.perf_counter()
getattr(spectralmatch, {function!r})({paths!r}, {out!r}, image_threads={threads}, **{options!r})
wall = time.perf_counter() - started
print(json.dumps({{"wall": wall, "peak_mb": peak_rss_mb(), "import_mb": imported,
                   "version": version("spectralmatch"), "gdal": gdal.__version__}}))
"""


def run_spectralmatch(python, function, paths, threads, out, options):
    """Run spectralmatch's ``function`` in ``python`` (its own process, no
    Tessera import); outputs go to the fresh folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    code = PEER_CHILD.format(here=HERE, function=function, paths=paths, out=out, threads=threads,
                             options=options)
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"spectralmatch {function} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def output_paths(folder, paths, suffix):
    return [os.path.join(folder, os.path.splitext(os.path.basename(p))[0] + suffix + ".tif")
            for p in paths]


def pixel_offset(path_a, path_b):
    """(columns, rows) of ``path_b``'s origin on ``path_a``'s grid (same pixel size)."""
    from osgeo import gdal

    ga = gdal.Open(path_a).GetGeoTransform()
    gb = gdal.Open(path_b).GetGeoTransform()
    return round((gb[0] - ga[0]) / ga[1]), round((gb[3] - ga[3]) / ga[5])


def window_pairs(paths):
    """For each pair of overlapping scenes, their overlap as a window of each:
    (i, j, (col_i, row_i), (col_j, row_j), cols, rows)."""
    from osgeo import gdal

    sizes = [(gdal.Open(p).RasterXSize, gdal.Open(p).RasterYSize) for p in paths]
    pairs = []
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            dx, dy = pixel_offset(paths[i], paths[j])
            col0, row0 = max(0, dx), max(0, dy)
            col1 = min(sizes[i][0], dx + sizes[j][0])
            row1 = min(sizes[i][1], dy + sizes[j][1])
            if col1 > col0 and row1 > row0:
                pairs.append((i, j, (col0, row0), (col0 - dx, row0 - dy),
                              col1 - col0, row1 - row0))
    return pairs


def strips(path, origin, cols, rows):
    """Yield (bands, strip rows, cols) int32 arrays of a window, STRIP rows at a time."""
    from osgeo import gdal

    dataset = gdal.Open(path)
    for y in range(0, rows, STRIP):
        height = min(STRIP, rows - y)
        block = dataset.ReadAsArray(origin[0], origin[1] + y, cols, height)
        yield block.reshape(-1, height, cols).astype(np.int32)


def mean_abs_difference(path_a, origin_a, path_b, origin_b, cols, rows, nodata=0):
    """Sum of |a - b| over pixels valid in both, that count, and how many
    pixels are valid in one only (all bands)."""
    total, count, one_only = 0, 0, 0
    for a, b in zip(strips(path_a, origin_a, cols, rows), strips(path_b, origin_b, cols, rows),
                    strict=True):
        valid_a, valid_b = a != nodata, b != nodata
        both = valid_a & valid_b
        total += int(np.abs(a - b)[both].sum(dtype=np.int64))
        count += int(both.sum())
        one_only += int((valid_a != valid_b).sum())
    return total, count, one_only


@functools.lru_cache
def input_mean(paths, nodata=0):
    """Mean of the valid values of all scenes and bands."""
    from osgeo import gdal

    total, count = 0, 0
    for path in paths:
        dataset = gdal.Open(path)
        for block in strips(path, (0, 0), dataset.RasterXSize, dataset.RasterYSize):
            valid = block != nodata
            total += int(block[valid].sum(dtype=np.int64))
            count += int(valid.sum())
    return total / count


def compare_outputs(inputs, tessera, peer):
    """How close Tessera's and spectralmatch's outputs are, as text lines.

    Agreement: mean |Tessera - spectralmatch| over every pixel and band valid in
    both (co-located pixels of the same scene), relative to the input mean.
    Seams: for each tool, mean |A - B| between overlapping scenes A and B over
    their overlap, relative to the input mean (the mismatch the method reduces).
    """
    from osgeo import gdal

    reference = input_mean(tuple(inputs))
    total, count, one_only, worst = 0, 0, 0, 0.0
    for t, p in zip(tessera, peer, strict=True):
        dataset = gdal.Open(t)
        s, n, o = mean_abs_difference(t, (0, 0), p, (0, 0), dataset.RasterXSize,
                                      dataset.RasterYSize)
        total, count, one_only = total + s, count + n, one_only + o
        worst = max(worst, s / max(n, 1))
    lines = [f"Tessera vs spectralmatch, same pixels: mean |diff| {total / count:.2f} DN = "
             f"{100 * total / count / reference:.3f}% of the input mean ({reference:.0f}); "
             f"worst scene {worst:.2f} DN; {one_only} values valid in one output only"]
    seams = []
    for label, files in (("inputs", inputs), ("Tessera", tessera), ("spectralmatch", peer)):
        total, count = 0, 0
        for i, j, origin_i, origin_j, cols, rows in window_pairs(inputs):
            s, n, _ = mean_abs_difference(files[i], origin_i, files[j], origin_j, cols, rows)
            total, count = total + s, count + n
        seams.append(f"{label} {100 * total / count / reference:.2f}%")
    lines.append("overlap mismatch mean |A - B| / input mean: " + ", ".join(seams))
    return lines


def compare_adjustments(tessera_json, peer_json):
    """Largest differences of the global scales and offsets saved by both tools."""
    with open(tessera_json) as handle:
        ours = json.load(handle)
    with open(peer_json) as handle:
        theirs = json.load(handle)
    scale, offset = 0.0, 0.0
    for name, entry in ours.items():
        for band, values in entry["adjustments"].items():
            other = theirs[name]["adjustments"][band]
            scale = max(scale, abs(values["scale"] - other["scale"]))
            offset = max(offset, abs(values["offset"] - other["offset"]))
    return (f"global adjustments: max |scale difference| {scale:.2e}, "
            f"max |offset difference| {offset:.3f} DN")


def compare_to_baseline(paths, out, baseline_out, suffix):
    """Every value of each output against the baseline's: how many differ (all bands)
    and the largest difference, as a text line."""
    from osgeo import gdal

    values, differ, largest = 0, 0, 0.0
    for ours, theirs in zip(output_paths(out, paths, suffix),
                            output_paths(baseline_out, paths, suffix), strict=True):
        a_set, b_set = gdal.Open(ours), gdal.Open(theirs)
        width, height = a_set.RasterXSize, a_set.RasterYSize
        for y in range(0, height, STRIP):
            rows = min(STRIP, height - y)
            a = a_set.ReadAsArray(0, y, width, rows).astype(np.float64)
            b = b_set.ReadAsArray(0, y, width, rows).astype(np.float64)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            values += a.size
            differ += int((~same).sum())
            if differ:
                largest = max(largest, float(np.nanmax(np.abs(a - b), initial=0.0)))
    verdict = "bit-identical" if differ == 0 else f"{differ} differ (largest {largest:g})"
    return f"outputs against the baseline's: {values} values, {verdict}"


def warm_up(function, layout="grid", repo=None):
    """Compile (and cache) the numba kernels on tiny scenes so timings exclude it."""
    paths = write_scenes(256, layout)
    run(function, paths, 1, os.path.join(OUTPUT, "warm_up"), {"overwrite": True}, repo)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="?", default="both", choices=["global", "local", "both"])
    parser.add_argument("--size", type=int, default=8000)
    parser.add_argument("--layout", default="grid", choices=["grid", "chain"],
                        help="grid: four scenes 2 x 2 overlapping by a quarter; chain: three "
                             "in a row overlapping by half")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", type=int, default=1,
                        help="runs of each measurement, the fastest kept (shared machines)")
    parser.add_argument("--no-serial", dest="serial", action="store_false",
                        help="skip the one-thread runs")
    parser.add_argument("--warm", action="store_true",
                        help="time each algorithm's second run in its interpreter (numba "
                             "imported and its kernels loaded, as in a QGIS session after the "
                             "first run); CPU seconds are then those of that run alone")
    parser.add_argument("--spectralmatch", metavar="PYTHON",
                        help="an interpreter that can import spectralmatch (peer, optional)")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="another Tessera checkout (e.g. a git worktree of an earlier "
                             "commit) whose engine runs in turn with this one's")
    parser.add_argument("--dask", action="store_true",
                        help="threads against a LocalCluster of 1 and 2 workers (only)")
    parser.add_argument("--setups", default="1w,2w,stripes",
                        help="with --dask: which cluster runs, of 1w (1 worker), 2w (2 "
                             "workers), stripes (2 workers, corrections in stripes)")
    args = parser.parse_args()
    unknown = set(args.setups.split(",")) - set(SETUP_NAMES)
    if unknown:
        parser.error(f"--setups: unknown {', '.join(sorted(unknown))}")
    args.setups = [SETUP_NAMES[name] for name in args.setups.split(",")]
    if args.spectralmatch and not os.access(args.spectralmatch, os.X_OK):
        parser.error(f"--spectralmatch {args.spectralmatch}: not an executable interpreter")
    count = len(layout_corners(args.size, args.layout))
    print(f"Generating {count} {args.size} x {args.size} x {BANDS}-band uint16 scenes, "
          f"{args.layout} layout (once, in {OUTPUT})", flush=True)
    paths = write_scenes(args.size, args.layout)
    megapixels = count * args.size * args.size / 1e6
    functions = {"global": "global_regression", "local": "local_block_adjustment"}
    suffixes = {"global": "_Global", "local": "_Local"}
    chosen = ["global", "local"] if args.which == "both" else [args.which]
    if args.spectralmatch:
        print(f"spectralmatch peer: {args.spectralmatch}, options {SPECTRALMATCH_OPTIONS}, "
              f"image_threads={args.threads}; Tessera options {TESSERA_AS_SPECTRALMATCH}")
    if args.dask:
        dask_comparison(args, chosen, functions, suffixes, paths)
        return
    tag = "" if args.layout == "grid" else f"{args.layout}_"
    print(f"\n{'algorithm':<24}{'threads':>8}{'wall s':>10}{'Mpx/s':>10}{'peak RSS MB':>14}"
          f"{'CPU s':>8}{'x floor':>10}")
    floor = best_of(args.runs, lambda: run_floor(
        paths, args.threads, os.path.join(OUTPUT, f"floor_{tag}{args.size}")))
    print(figures_row("I/O floor", args.threads, floor, megapixels, floor["wall"]), flush=True)
    per_value = kernel_seconds(paths)
    print("kernels alone, ns per value: " + ", ".join(f"{name} {1e9 * value:.1f}"
                                                       for name, value in per_value.items()))
    for which in chosen:
        function = functions[which]
        warm_up(function, args.layout)
        if args.baseline:
            warm_up(function, args.layout, args.baseline)
        out = os.path.join(OUTPUT, f"{which}_out_{tag}{args.size}")
        options = {"overwrite": True}
        if args.spectralmatch:
            options.update(TESSERA_AS_SPECTRALMATCH.get(function, {}))
            if which == "global":
                options["save_adjustments"] = os.path.join(out, "adjustments.json")
        timings = {}
        for threads in ((1, args.threads) if args.serial else (args.threads,)):
            measures = [functools.partial(run, function, paths, threads, out, options,
                                          warm=args.warm)]
            if args.baseline:
                measures.append(functools.partial(run, function, paths, threads,
                                                  out + "_baseline", options, args.baseline,
                                                  warm=args.warm))
            figures = best_of(args.runs, *measures)
            figures = figures if args.baseline else [figures]
            timings[threads] = figures[0]
            print(figures_row(function, threads, figures[0], megapixels, floor["wall"]),
                  flush=True)
            arithmetic = arithmetic_seconds(which, per_value, paths, threads)
            method_floor = floor["wall"] + arithmetic
            print(f"  I/O floor + its arithmetic ({arithmetic:.1f} s on {threads} thread(s)) = "
                  f"{method_floor:.1f} s: {function} takes "
                  f"{figures[0]['wall'] / method_floor:.2f} x that", flush=True)
            if args.baseline:
                print(figures_row("  baseline", threads, figures[1], megapixels,
                                  floor["wall"]), flush=True)
                print(f"  {compare_to_baseline(paths, out, out + '_baseline', suffixes[which])}",
                      flush=True)
        if args.serial:
            ratio = timings[1]["wall"] / timings[args.threads]["wall"]
            print(f"{function}: serial / parallel wall time = {ratio:.2f}")
        if args.spectralmatch:
            compare_with_spectralmatch(args, which, function, paths, out, suffixes[which],
                                       timings[args.threads], megapixels)
    print(f"\npeak RSS of this script: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def compare_with_spectralmatch(args, which, function, paths, tessera_out, suffix, tessera,
                               megapixels):
    """Run the peer on the same scenes, print its figures, ratios and agreement."""
    tag = "" if args.layout == "grid" else f"{args.layout}_"
    out = os.path.join(OUTPUT, f"{which}_spectralmatch_{tag}{args.size}")
    options = dict(SPECTRALMATCH_OPTIONS[function])
    if which == "global":
        options["save_adjustments"] = os.path.join(out, "adjustments.json")
    peer = run_spectralmatch(args.spectralmatch, function, paths, args.threads, out, options)
    label = f"spectralmatch {peer['version']}"
    print(f"{label:<24}{args.threads:>8}{peer['wall']:>10.1f}"
          f"{megapixels / peer['wall']:>10.1f}{peer['peak_mb']:>14.0f}", flush=True)
    print(f"{function}: spectralmatch / Tessera ({args.threads} threads): wall time "
          f"{peer['wall'] / tessera['wall']:.2f}, peak RSS "
          f"{peer['peak_mb'] / tessera['peak_mb']:.2f} (spectralmatch: GDAL {peer['gdal']}; "
          f"{peer['import_mb']:.0f} MB of its peak RSS were reached by `import spectralmatch`, "
          f"which loads torch through omnicloudmask)")
    lines = compare_outputs(paths, output_paths(tessera_out, paths, suffix),
                            output_paths(out, paths, suffix))
    if which == "global":
        lines.append(compare_adjustments(os.path.join(tessera_out, "adjustments.json"),
                                         options["save_adjustments"]))
    for line in lines:
        print(f"{function}: {line}", flush=True)


if __name__ == "__main__":
    main()
