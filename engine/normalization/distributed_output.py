"""Corrected images written by the workers of a Dask cluster (``scheduler=``).

The correction is cut exactly as on threads (:func:`~.corrected_output.write_corrected_images`:
the same windows, the same pieces of consecutive windows, each piece's totals kept
apart and summed in piece order), so pixels, means and clamped counts are the same bits.
A task corrects a run of one image's pieces into a file of its own, never a file another
process writes:

- with at least as many images as worker threads, one task per image writes the image's
  output (its temporary name in the run's :class:`~.output_safety.Publication`) directly;
- otherwise each task writes its rows of the image into a stripe GeoTIFF beside the output,
  and one task per image then copies the stripes into the output (and removes them).

The client publishes the outputs together with the run's other files once every task has
finished; a failure or a cancel removes the stripes and temporary outputs and publishes
nothing. The output folder must be one every worker writes to (a shared file system).
"""

import dataclasses
import math
import secrets

import numpy as np

from ..distributed import run_tasks, wait_until_stopped, worker_threads
from ..io.output_safety import remove_quietly
from ..io.raster_io import (
    TileReader,
    Window,
    create_raster,
    gdal_cache_limit,
    open_raster,
    plan_windows,
    read_window,
)
from ..parallel import split_evenly
from .corrected_output import (
    NORMALIZATION_CACHE_BYTES,
    PIECES_PER_THREAD,
    OutputRaster,
    compression_options,
    corrected_image,
    correction_window_pixels,
    output_range,
)

#: Share of a correction task's work that copying its stripe into the output takes (progress).
ASSEMBLY_WEIGHT = 0.4
#: Stripes are tiled like the output but not compressed: the output's compression is paid
#: once, by the task assembling them (sparse: a stripe's rows may start or end mid-row).
STRIPE_OPTIONS = ["TILED=YES", "BIGTIFF=IF_SAFER", "SPARSE_OK=TRUE"]


def tasks_per_image(client, images):
    """Correction tasks per image: enough for every worker thread to have one."""
    return max(1, math.ceil(worker_threads(client) / max(1, images)))


def write_corrected_on_cluster(client, jobs, dtype, nodata, reporter, threads, cog=False,
                               window_size=None):
    """:func:`~.corrected_output.write_corrected_images` on ``client``'s workers; the
    pieces follow ``threads`` as they do there. Returns the :class:`CorrectedImage` list."""
    value_range = output_range(dtype, nodata)
    parts = 1 if threads <= 1 else math.ceil(PIECES_PER_THREAD * threads / len(jobs))
    split = tasks_per_image(client, len(jobs))
    calls, weights, owners, stripes, written = [], [], [], [], []
    for index, job in enumerate(jobs):
        pieces = split_evenly(correction_windows(job.image, dtype, value_range, window_size),
                              parts)
        groups = split_evenly(pieces, split)
        for number, group in enumerate(groups):
            whole = len(groups) == 1
            path = job.output_path if whole else f"{job.output_path}.part{number}.tif"
            calls.append((correct_stripe, job.image, job.correct, group, path, value_range,
                          whole and cog, whole))
            weights.append(sum(w.xsize * w.ysize for run in group for w in run))
            owners.append(index)
            written.append(path)
            if not whole:
                stripes.append((index, path, group))
    run = secrets.token_hex(4)
    try:
        totals = run_tasks(client, calls, _Share(reporter, 0.0, 1.0 - _assembly_share(
            stripes, weights)), weights, f"tessera-correction-{run}")
        if stripes:
            assembly = []
            for index, job in enumerate(jobs):
                mine = [(path, group) for owner, path, group in stripes if owner == index]
                if mine:
                    assembly.append((assemble_stripes, job.image, mine, job.output_path,
                                     value_range, cog))
            run_tasks(client, assembly, _Share(reporter, 1.0 - _assembly_share(stripes, weights),
                                               1.0), None, f"tessera-assembly-{run}")
        reporter.check()
    except BaseException:
        # tasks already running when the run stopped go on: let them end before cleaning up
        for name in ("tessera-correction", "tessera-assembly"):
            wait_until_stopped(client, f"{name}-{run}")
        for path in written + [job.output_path for job in jobs]:
            for name in (path, path + ".aux.xml"):
                remove_quietly(name)
        raise
    results = []
    for index, job in enumerate(jobs):
        mine = [piece for owner, group in zip(owners, totals, strict=True) if owner == index
                for piece in group]
        results.append(corrected_image(job.output_path, job.image.bands, mine))
    return results


def _assembly_share(stripes, weights):
    return ASSEMBLY_WEIGHT / (1 + ASSEMBLY_WEIGHT) if stripes else 0.0


def correction_windows(image, dtype, value_range, window_size=None):
    """The windows :func:`~.corrected_output.write_corrected_images` corrects ``image`` in:
    planned on an (empty, in-memory) GeoTIFF made as its output would be."""
    from osgeo import gdal

    pixels = correction_window_pixels(image.bands, image.dtype, dtype)
    path = f"/vsimem/tessera_plan_{id(image)}_{np.random.randint(1 << 30)}.tif"
    try:
        layout = create_raster(path, image.width, image.height, image.bands, value_range.dtype,
                               image.geotransform, image.crs_wkt, None,
                               options=compression_options(value_range.dtype) + ["SPARSE_OK=TRUE"])
        source = open_raster(image.path)
        windows = plan_windows(layout, 1, pixels, window_size, also=[(source, 1)])
        layout = source = None
    finally:
        gdal.Unlink(path)
    return windows


def correct_stripe(image, correct, runs, path, value_range, cog, whole):
    """Correct the pieces ``runs`` (lists of windows) of ``image`` into ``path``: the
    whole image's output when ``whole``, else a stripe covering the pieces' rows.
    Returns each piece's totals (as the threads' pieces return them). One task."""
    windows = [w for run in runs for w in run]
    top = 0 if whole else min(w.yoff for w in windows)
    bottom = image.height if whole else max(w.yoff + w.ysize for w in windows)
    stripe = image if whole else dataclasses.replace(
        image, height=bottom - top, geotransform=image.window_geotransform(0, top))
    with gdal_cache_limit(NORMALIZATION_CACHE_BYTES):
        output = OutputRaster(path, stripe, value_range, cog,
                              None if whole else STRIPE_OPTIONS)
        try:
            totals = [_correct_run(image, correct, run, output, value_range, top)
                      for run in runs]
            output.finish(1)
        except BaseException:
            output.discard()
            raise
    return totals


def _correct_run(image, correct, windows, output, value_range, top):
    """One piece: input sums, output sums, valid counts, clamped counts per band."""
    bands = list(range(1, image.bands + 1))
    store = value_range.store
    totals = np.zeros((4, image.bands), np.float64)
    with TileReader([(image.path, bands, None)], windows, threads=1, depth=2) as reader:
        for window, (tile,) in reader:
            out = np.empty(tile.shape, value_range.dtype)
            correct(window, tile, out, store, totals)
            output.write(Window(window.xoff, window.yoff - top, window.xsize, window.ysize),
                         out)
    return totals


def assemble_stripes(image, stripes, path, value_range, cog):
    """Copy every ``(stripe path, its pieces)`` of ``image`` into the output ``path``, window
    by window as they were written; the stripes are removed once the output is complete.
    One task."""
    bands = list(range(1, image.bands + 1))
    with gdal_cache_limit(NORMALIZATION_CACHE_BYTES):
        output = OutputRaster(path, image, value_range, cog)
        try:
            for stripe, runs in stripes:
                windows = [w for run in runs for w in run]
                top = min(w.yoff for w in windows)
                source = open_raster(stripe)
                for w in windows:
                    output.write(w, read_window(source, bands, Window(w.xoff, w.yoff - top,
                                                                      w.xsize, w.ysize)))
                source = None
            output.finish(1)
        except BaseException:
            output.discard()
            raise
    for stripe, _ in stripes:
        remove_quietly(stripe)
        remove_quietly(stripe + ".aux.xml")
    return path


class _Share:
    """The part ``start .. end`` of a reporter's phase."""

    def __init__(self, reporter, start, end):
        self.reporter, self.start, self.span = reporter, start, end - start

    def update(self, fraction):
        self.reporter.update(self.start + self.span * fraction)

    def is_cancelled(self):
        return self.reporter.is_cancelled()
