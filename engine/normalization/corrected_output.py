"""Writing corrected images: windowed, parallel over images and windows.

:func:`write_corrected_images` reads every image window by window (all bands at
once), lets a correction store its results in the output type as
:func:`~.normalization_kernels.store_output` does (rounding, clamping, nodata
kept; clamped values counted) and writes them to the paths it is given: the
temporary names of a :class:`~.output_safety.Publication`, renamed over the
targets with the run's other outputs only when every one was written and read
back. A failed or cancelled run removes what it wrote.
"""

import itertools
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..errors import CancelledError, TesseraError
from ..io.output_safety import remove_quietly, temporary_path
from ..io.raster_io import (
    TileReader,
    as_stored,
    create_raster,
    gdal_failures,
    gdal_quiet,
    open_raster,
    plan_windows,
)
from ..parallel import run_in_threads, split_evenly

#: Bytes of one window of the corrections (all bands of the input or of the output
#: type, the larger): each thread holds a few (read ahead, written) at a time.
CORRECTION_WINDOW_BYTES = 4 << 20
#: Pieces of work per thread in the correction pass (consecutive windows of one image).
PIECES_PER_THREAD = 8
#: GDAL's block cache during a normalization run, at most: windows are read once and
#: written tiles flushed, so the cache needs to hold a few windows, not the scenes.
NORMALIZATION_CACHE_BYTES = 24 << 20


def correction_window_pixels(bands, *dtypes):
    """Pixels per correction window for ``bands`` bands of the largest of ``dtypes``."""
    largest = max(np.dtype(dtype).itemsize for dtype in dtypes)
    return max(1 << 16, CORRECTION_WINDOW_BYTES // (bands * largest))


def compression_options(dtype, driver="GTiff"):
    """Fast lossless compression for large outputs: ZSTD level 1 with a predictor
    (several times faster than DEFLATE at the same size), DEFLATE where this GDAL
    has no ZSTD."""
    options = gdal.GetDriverByName(driver).GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    floating = np.dtype(dtype).kind == "f"
    if driver == "COG":
        codec = ["COMPRESS=ZSTD", "LEVEL=1"] if "ZSTD" in options else ["COMPRESS=DEFLATE"]
        return codec + ["PREDICTOR=YES", "BIGTIFF=IF_SAFER"]
    codec = ["COMPRESS=ZSTD", "ZSTD_LEVEL=1"] if "ZSTD" in options else ["COMPRESS=DEFLATE"]
    return ["TILED=YES", *codec, f"PREDICTOR={3 if floating else 2}", "BIGTIFF=IF_SAFER"]


@dataclass(frozen=True)
class OutputRange:
    """How float results become pixels of the output type."""

    dtype: np.dtype
    lo: float
    hi: float
    is_int: bool
    nodata: float
    has_nodata: bool
    nodata_up: float
    nodata_down: float

    @property
    def store(self):
        """The arguments of the correction kernels' ``store``: ``(lo, hi, is_int, nodata,
        has_nodata, nodata_up, nodata_down)``."""
        return (self.lo, self.hi, self.is_int, self.nodata, self.has_nodata, self.nodata_up,
                self.nodata_down)


def output_range(dtype, nodata):
    """The :class:`OutputRange` of ``dtype`` with ``nodata`` (None: no nodata)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi, is_int = float(info.min), float(info.max), True
    else:
        info = np.finfo(dtype)
        lo, hi, is_int = float(info.min), float(info.max), False
    if nodata is None or nodata != nodata:
        value = float("nan") if nodata is not None else 0.0
        return OutputRange(dtype, lo, hi, is_int, value, nodata is not None, value, value)
    nodata = float(nodata)
    if is_int:
        up, down = nodata + 1, nodata - 1
    else:
        typed = dtype.type(nodata)
        up = float(np.nextafter(typed, dtype.type(np.inf)))
        down = float(np.nextafter(typed, dtype.type(-np.inf)))
    up = up if up <= hi else down
    down = down if down >= lo else up
    return OutputRange(dtype, lo, hi, is_int, nodata, True, up, down)


@dataclass
class CorrectionJob:
    """One image to correct: ``correct(window, tile, out, store, totals)`` fills ``out``
    (the output type, shape (bands, rows, cols)) with the corrected ``tile`` stored as
    :func:`~.normalization_kernels.store_output` stores results (``store``: the
    :class:`OutputRange` as its arguments, see :meth:`OutputRange.store`) and adds to the
    rows of ``totals`` (bands columns) each band's valid input values, valid output
    values, valid pixel count and clamped values."""

    image: object
    output_path: str
    correct: object


@dataclass
class CorrectedImage:
    """A written output: per band the mean of its valid pixels before and after, how
    many valid pixels it has and how many of them were clamped to the output type."""

    path: str
    means_before: list
    means_after: list
    valid_counts: list
    clamped_counts: list

    @property
    def clamped_share(self):
        """The share of the valid pixel values (all bands) clamped to the output type."""
        total = sum(self.valid_counts)
        return sum(self.clamped_counts) / total if total else 0.0


class OutputRaster:
    """A GeoTIFF written to ``path`` (a temporary name given by the caller's
    :class:`~.output_safety.Publication`); a Cloud-Optimized GeoTIFF is first written
    as a tiled GeoTIFF beside it and converted by :meth:`finish`. ``options``: GDAL
    creation options to use instead of :func:`compression_options` (e.g. uncompressed)."""

    def __init__(self, path, image, value_range, cog, options=None):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.temporary = temporary_path(self.path) if cog else self.path
        self.shape = (image.width, image.height, image.bands)
        self.cog = cog
        self.dtype = value_range.dtype
        self.lock = threading.Lock()
        nodata = value_range.nodata if value_range.has_nodata else None
        with gdal_failures(f"Creating {self.path}"):
            self.dataset = create_raster(self.temporary, image.width, image.height,
                                         image.bands, value_range.dtype, image.geotransform,
                                         image.crs_wkt, nodata,
                                         options=options or compression_options(
                                             value_range.dtype))
        self.block_size = self.dataset.GetRasterBand(1).GetBlockSize()

    def write(self, window, array):
        with self.lock, gdal_failures(f"Writing {self.path}"):
            # all bands at once: pixel-interleaved tiles are written whole
            if self.dataset.WriteArray(as_stored(array), window.xoff, window.yoff) != 0:
                raise TesseraError(f"Writing {self.path} failed: {gdal.GetLastErrorMsg()}")
            if self._whole_tiles(window):
                # its tiles are complete: compress and write them now, so that GDAL's block
                # cache holds a few windows, not gigabytes of finished tiles
                self.dataset.FlushCache()

    def _whole_tiles(self, window):
        width, height = self.dataset.RasterXSize, self.dataset.RasterYSize
        block_w, block_h = self.block_size
        return (window.xoff % block_w == 0 and window.yoff % block_h == 0
                and (window.xsize % block_w == 0 or window.xoff + window.xsize == width)
                and (window.ysize % block_h == 0 or window.yoff + window.ysize == height))

    def finish(self, threads=1, cancelled=None):
        """Flush and close the file (a COG: convert it); then read it back."""
        with gdal_failures(f"Writing {self.path}"):
            self.dataset.FlushCache()
            self.dataset = None  # closing writes the last tiles and the header
        if self.cog:
            self._convert_to_cog(threads, cancelled)
        verify_raster(self.path, *self.shape, self.dtype)
        return self.path

    def _convert_to_cog(self, threads, cancelled):
        def callback(_fraction, _message, _data):
            return 0 if cancelled is not None and cancelled() else 1

        with gdal_quiet():
            gdal.ErrorReset()
            options = compression_options(self.dtype, "COG")
            made = gdal.Translate(self.path, self.temporary, format="COG",
                                  creationOptions=options + [f"NUM_THREADS={max(1, threads)}"],
                                  callback=callback)
            written = made is not None
            made = None  # closing writes the file
            failed = gdal.GetLastErrorType() >= gdal.CE_Failure
            failure = gdal.GetLastErrorMsg() if failed else ""
        remove_quietly(self.temporary)
        if not written or failed:
            remove_quietly(self.path)
            if cancelled is not None and cancelled():
                raise CancelledError()
            raise TesseraError(f"Cannot write the Cloud-Optimized GeoTIFF {self.path}: "
                               f"{failure or 'GDAL could not convert it'}")

    def discard(self):
        self.dataset = None
        for path in {self.temporary, self.path}:
            remove_quietly(path)
            remove_quietly(path + ".aux.xml")


def verify_raster(path, width, height, bands, dtype):
    """Read back a written raster: its size, bands and type, and the last pixel of every
    band (the end of the file); raise a :class:`TesseraError` naming it otherwise."""
    from ..io.raster_io import band_dtype, open_raster

    with gdal_failures(f"Reading back {path}"):
        dataset = open_raster(path)
        found = (dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount)
        if found != (width, height, bands) or any(
                band_dtype(dataset.GetRasterBand(b)) != np.dtype(dtype)
                for b in range(1, bands + 1)):
            raise TesseraError(f"Reading back {path} failed: it is {found[0]} x {found[1]} "
                               f"pixels, {found[2]} band(s), not the {width} x {height} "
                               f"pixels, {bands} band(s) of {np.dtype(dtype)} written.")
        for band in range(1, bands + 1):
            if dataset.GetRasterBand(band).ReadAsArray(width - 1, height - 1, 1, 1) is None:
                raise TesseraError(f"Reading back {path} failed: {gdal.GetLastErrorMsg()}")
        dataset = None


def write_corrected_images(jobs, dtype, nodata, reporter, threads=2, cog=False,
                           window_size=None):
    """Correct every job's image into its output path; returns :class:`CorrectedImage` list.

    Work is cut into pieces of consecutive windows of one image (about
    :data:`PIECES_PER_THREAD` per thread in all) run on ``threads`` threads. Each
    output is read back once written; on any error every output is removed.
    """
    value_range = output_range(dtype, nodata)
    outputs = []
    try:
        for job in jobs:
            outputs.append(OutputRaster(job.output_path, job.image, value_range, cog))
        # several pieces per thread, so that threads finish together (3 images on 2
        # threads: 6 pieces each, not 1 image left to one thread at the end), taken
        # image after image so that threads write different files (each output is
        # compressed under its lock)
        parts = 1 if threads <= 1 else math.ceil(PIECES_PER_THREAD * threads / len(jobs))
        pieces = []
        for index, (job, output) in enumerate(zip(jobs, outputs, strict=True)):
            pixels = correction_window_pixels(job.image.bands, job.image.dtype, dtype)
            # windows follow the input's blocks too where they can (a striped input)
            source = open_raster(job.image.path)
            windows = plan_windows(output.dataset, 1, pixels, window_size, also=[(source, 1)])
            source = None
            pieces.append([(index, _correction_task(job, output, run, value_range),
                            sum(w.xsize * w.ysize for w in run))
                           for run in split_evenly(windows, parts)])
        ordered = [piece for turn in itertools.zip_longest(*pieces) for piece in turn
                   if piece is not None]
        owners = [index for index, _, _ in ordered]
        tasks = [(task, weight) for _, task, weight in ordered]
        totals = run_in_threads(tasks, threads, reporter)
        reporter.check()
        results = [corrected_image(job.output_path, job.image.bands,
                                   [t for t, owner in zip(totals, owners, strict=True)
                                    if owner == index])
                   for index, job in enumerate(jobs)]
        finish_tasks = [(lambda tick, out=out: out.finish(1, reporter.is_cancelled), 1)
                        for out in outputs]
        run_in_threads(finish_tasks, threads, reporter)
        return results
    except BaseException:
        for output in outputs:
            output.discard()
        raise


def corrected_image(path, bands, totals):
    """The :class:`CorrectedImage` of ``path`` from its pieces' ``totals`` (rows: input
    sums, output sums, valid counts, clamped counts; summed in the order given)."""
    summed = np.sum(totals, axis=0) if totals else np.zeros((4, bands))
    with np.errstate(invalid="ignore", divide="ignore"):
        before = summed[0] / summed[2]
        after = summed[1] / summed[2]
    return CorrectedImage(path, [float(v) for v in before], [float(v) for v in after],
                          [int(v) for v in summed[2]], [int(v) for v in summed[3]])


@dataclass(frozen=True)
class OutputOptions:
    """How a normalization writes its images: type, nodata, COG, threads, window size
    and the optional profile plot."""

    dtype: np.dtype
    nodata: object
    cog: bool = False
    threads: int = 1
    window_size: int = None
    profile_plot: str = None


@dataclass
class NormalizedImages:
    """A run's corrected images, written under their temporary names."""

    corrected: list  # CorrectedImage per image
    means_before: dict
    means_after: dict
    profile_plot: str  # the plot's target, None when none was asked for
    clamped: dict  # name -> share of the valid values clamped
    seconds: float


def write_normalized(run, image_set, targets, corrections, options, reporter, log, title,
                     client=None):
    """Correct every image of ``image_set`` with its ``corrections`` entry (a
    :class:`CorrectionJob` ``correct``) into the temporary name of its target in ``run``
    (a :class:`~.normalization_outputs.RunOutputs`), draw the profile plot, report
    clamping; returns :class:`NormalizedImages`. With a Dask ``client`` the workers write
    the images (:mod:`.distributed_output`; ``corrections`` must then be picklable)."""
    from .spectral_profiles import mean_profiles

    started = time.perf_counter()
    jobs = [CorrectionJob(image, run.temporary(target, (".aux.xml",)), correct)
            for image, target, correct in zip(image_set.images, targets, corrections,
                                               strict=True)]
    if client is None:
        corrected = write_corrected_images(jobs, options.dtype, options.nodata, reporter,
                                           options.threads, options.cog, options.window_size)
    else:
        from .distributed_output import write_corrected_on_cluster

        corrected = write_corrected_on_cluster(client, jobs, options.dtype, options.nodata,
                                               reporter, options.threads, options.cog,
                                               options.window_size)
    seconds = time.perf_counter() - started
    names, plot = image_set.names, options.profile_plot
    before, after, drawn = mean_profiles(names, corrected, plot and run.temporary(plot), title)
    return NormalizedImages(corrected, before, after, os.fspath(plot) if drawn else None,
                            report_clamping(names, corrected, options.dtype, log), seconds)


def report_clamping(names, corrected, dtype, log):
    """Tell ``log`` the share of each image's valid pixel values clamped to the output
    type ``dtype``; returns image name -> that share (0 when none)."""
    shares = {}
    limits = output_range(dtype, None)
    for name, image in zip(names, corrected, strict=True):
        shares[name] = image.clamped_share
        if image.clamped_share > 0:
            log(f"Warning: {name}: {image.clamped_share:.1%} of the valid pixel values fell "
                f"outside the {np.dtype(dtype)} range {limits.lo:g}..{limits.hi:g} and were "
                "clamped to it; choose a wider output data type (e.g. the input's) to keep "
                "them.")
    return shares


def _correction_task(job, output, windows, value_range):
    bands = list(range(1, job.image.bands + 1))
    store = value_range.store

    def task(tick):
        # input sums, output sums, valid counts, clamped counts per band
        totals = np.zeros((4, job.image.bands), np.float64)
        with TileReader([(job.image.path, bands, None)], windows, threads=1, depth=2) as reader:
            for window, (tile,) in reader:
                tick(0)
                out = np.empty(tile.shape, value_range.dtype)
                job.correct(window, tile, out, store, totals)
                output.write(window, out)
                tick(window.xsize * window.ysize)
        return totals

    return task
