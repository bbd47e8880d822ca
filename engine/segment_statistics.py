"""Per-segment statistics of an image, written to a raster attribute table.

    from tessera.engine import segment_stats
    result = segment_stats("segments.img", "image.tif",
                           statistics=("pixcount", "mean", "median"), percentiles=(25, 75))

Both rasters are read tile by tile (with read-ahead threads); each segment's
statistics are computed as soon as its last pixel has been read, so memory
holds only the segments still open. Nothing is written until every check
has passed and every statistic is computed.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .dependencies import require
from .errors import TesseraError
from .memory import available_memory, gibibytes
from .progress import Progress
from .raster_io import (
    TileReader,
    band_dtype,
    band_nodata,
    check_same_grid,
    get_band,
    open_raster,
    plan_windows,
    raster_name,
)
from .rat import GdalRat
from .rat_output import RatOutput, allocate_results, write_table
from .statistics import DEFAULT_STATISTICS, StatPlan, default_column_name, with_class_columns

#: Largest segment id Tessera accepts (GDAL RAT row counts are 32-bit).
MAX_SEGMENT_ID = 2**31 - 2
#: Bytes per segment id (up to the largest) of the pixel counts, and of the collector's
#: per-id offsets; each result column adds 8 more.
COUNT_BYTES_PER_ID = 8
COLLECTOR_BYTES_PER_ID = 24


def check_segment_ids(smallest, largest, dataset, bytes_per_id):
    """Refuse ids Tessera cannot hold: negative, beyond a RAT's rows, or so large that the
    per-id tables (``bytes_per_id`` for every id up to ``largest``) exceed free memory."""
    name = raster_name(dataset)
    if smallest < 0:
        raise TesseraError(f"The segment raster {name} holds the negative id {smallest}; "
                           "segment ids must be >= 0.")
    if largest > MAX_SEGMENT_ID:
        raise TesseraError(f"The segment raster {name} holds id {largest}; a raster "
                           f"attribute table cannot have more than {MAX_SEGMENT_ID + 1} rows.")
    needed, free = (int(largest) + 1) * bytes_per_id, available_memory()
    if free is not None and needed > free:
        raise TesseraError(
            f"The segment raster {name} holds id {largest}: Tessera keeps a table row for "
            f"every id up to the largest, {gibibytes(needed)} here, but only {gibibytes(free)} "
            "of memory is free. Number the segments consecutively from 1 (e.g. renumber them "
            "by their rank), or free memory.")


@dataclass
class SegmentStatsResult:
    """What :func:`segment_stats` wrote."""

    target: str
    columns: list
    segment_count: int
    row_count: int
    timings: dict = field(default_factory=dict)


def segment_stats(segments, image, statistics=DEFAULT_STATISTICS, bands=None, percentiles=(),
                  percentile_method="inverted_cdf", missing_value=-9999, output_rat=None,
                  overwrite=False, progress=None, cancelled=None, segment_band=1,
                  column_prefix="", column_names=None, output_table=None, window_size=None,
                  read_threads=2):
    """Compute statistics of ``image`` for every segment of ``segments``.

    ``segments`` and ``image`` are paths or open GDAL datasets on the same
    grid. ``statistics`` are names of :data:`tessera.engine.statistics.STATISTICS`;
    ``percentiles`` values in 0..100 computed with ``percentile_method``
    (``"inverted_cdf"``: an actual pixel value, or numpy's ``"linear"``).
    ``bands`` lists 1-based image bands (default all). Columns are named
    ``<prefix>b<band>_<stat>`` / ``<prefix>b<band>_p<p>``; ``column_names``
    maps such default names to others. ``output_rat`` None writes the RAT of
    the segment file; a path ending ``.zarr`` (or ``s3://``) a Zarr RAT
    store; another path a GDAL file (``.img`` or ``.tif``). ``output_table``
    optionally writes a CSV with one row per segment. ``progress(fraction,
    message)`` and ``cancelled()`` report and stop the work.
    """
    require("numba", purpose="Per-segment statistics")
    from .segment_collector import SegmentCollector
    from .stat_kernels import ZoneStatsRunner

    timings = {}
    started = time.perf_counter()
    reporter = Progress(progress, cancelled)
    seg_ds = open_raster(segments)
    img_ds = open_raster(image)
    seg_band = get_band(seg_ds, segment_band, "segment raster")
    seg_dtype = band_dtype(seg_band)
    if seg_dtype.kind not in "iu":
        raise TesseraError(
            f"The segment raster {raster_name(seg_ds)} holds {seg_dtype} values; segment ids "
            "must be integers."
        )
    bands = list(range(1, img_ds.RasterCount + 1)) if not bands else [int(b) for b in bands]
    image_bands = [get_band(img_ds, b, "image") for b in bands]
    check_same_grid(seg_ds, img_ds, "segment raster", "image")
    dtype = np.result_type(*[band_dtype(b) for b in image_bands])
    plan = StatPlan(statistics, bands, dtype, percentiles, percentile_method,
                    _namer(column_prefix, column_names))
    missing = plan.check_missing_value(missing_value)
    null_id = _null_id(seg_band)
    columns = [(c.name, c.kind) for c in plan.columns]
    output = RatOutput(output_rat, seg_ds, segment_band, columns, overwrite, output_table,
                       inputs=[(img_ds, "image")])
    output.check()

    totals, compute_span = segment_totals(seg_ds, segment_band, null_id, reporter, read_threads,
                                          timings, started)
    check_segment_ids(0, len(totals) - 1, seg_ds, COLLECTOR_BYTES_PER_ID + 8 * len(columns))
    row_count = max(len(totals), output.existing_rows)
    results = allocate_results(row_count, len(plan.columns))  # every present row is computed

    reporter.phase(*compute_span, "Computing per-segment statistics")
    windows = plan_windows(seg_ds, segment_band, window_size=window_size,
                           also=[(img_ds, b) for b in bands[:1]])
    # the bands of a pixel side by side: the collector copies a run of pixels at once
    sources = [(seg_ds, [segment_band], None), (img_ds, bands, dtype, "pixel")]
    nodata = [band_nodata(b) for b in image_bands]
    compute_started = time.perf_counter()
    with ZoneStatsRunner(plan, nodata, results, missing) as stats:
        collector = SegmentCollector(totals, null_id, len(bands), dtype,
                                     before_compaction=stats.wait)
        collect_segments(collector, sources, windows, read_threads, reporter,
                         lambda batch: stats.add(batch.ids, batch.starts, batch.lengths,
                                                 batch.values))
        stats.wait()
    collector = None  # its arena is not needed for writing
    present = present_ids(totals, null_id)
    # class columns (frac) are known now: checked against the target when it is written
    all_columns, results = with_class_columns(plan, results, stats.class_shares, missing,
                                              lambda n: allocate_results(row_count, n))
    columns = output.columns = [(c.name, c.kind) for c in all_columns]
    fill_absent_rows(results, present, [0.0 if c.stat == "pixcount" else missing
                                        for c in all_columns])
    timings["statistics"] = time.perf_counter() - compute_started
    seg_ds = img_ds = None  # release read handles before writing the segment file
    return write_segment_results(output, results, columns, present, null_id, row_count,
                                 output_table, reporter, timings, started)


def segment_totals(dataset, band, null_id, reporter, read_threads, timings, started):
    """Pixels per segment id from the segment band's histogram, else from a counting pass
    (the first 20 % of the progress, timed as ``timings["count"]``); returns (totals,
    progress span left for the work)."""
    totals = read_histogram(dataset, band)
    if totals is not None:
        return totals, (0.0, 0.95)
    reporter.phase(0.0, 0.2, "Counting the pixels of every segment")
    totals = count_segment_pixels(dataset, band, null_id, reporter, read_threads)
    timings["count"] = time.perf_counter() - started
    return totals, (0.2, 0.95)


def collect_segments(collector, sources, windows, read_threads, reporter, on_batch):
    """Read ``sources`` (the segment band, then the image) window by window through the
    :class:`~.segment_collector.SegmentCollector`, handing every batch of completed
    segments to ``on_batch``; check that every segment was complete. Returns the seconds."""
    started = time.perf_counter()
    total = sum(window.xsize * window.ysize for window in windows)
    done = 0
    with TileReader(sources, windows, threads=read_threads) as reader:
        for window, (seg_tile, img_tile) in reader:
            reporter.check()
            for batch in collector.add_tile(seg_tile[0], img_tile, window.yoff, window.xoff):
                on_batch(batch)
            done += window.xsize * window.ysize
            reporter.update(done / total)
    collector.check_complete()
    reporter.check()
    return time.perf_counter() - started


def fill_absent_rows(results, present, fill):
    """Give the rows of ``results`` (columns x rows) but ``present`` the values ``fill``
    (one per column): ids without pixels, and the null id."""
    absent = np.ones(results.shape[1], np.bool_)
    absent[present] = False
    results.T[absent] = np.asarray(fill, np.float64)


def present_ids(totals, null_id):
    """The segment ids with pixels, but the null id."""
    present = np.flatnonzero(totals)
    return present[present != null_id]


def write_segment_results(output, results, columns, present, null_id, row_count, output_table,
                          reporter, timings, started):
    """Write the per-segment ``results`` to the RAT target (and the optional CSV, rows
    ``present``); the run's :class:`SegmentStatsResult`."""
    write_started = time.perf_counter()
    reporter.phase(0.95, 1.0, f"Writing {len(columns)} column(s) to {output.name}")
    output.write(results, null_id, reporter,
                 lambda path: write_table(path, present, columns, results))
    timings["write"] = time.perf_counter() - write_started
    timings["total"] = time.perf_counter() - started
    return SegmentStatsResult(output.name, [name for name, _ in columns], int(present.size),
                              int(row_count), timings)


def _namer(prefix, names):
    names = dict(names or {})

    def name_for(band, stat, parameter):
        default = default_column_name(band, stat, parameter)
        return names.get(default, f"{prefix or ''}{default}")

    return name_for


def _null_id(band):
    """The segment band's nodata value, or 0."""
    value = band_nodata(band)
    return 0 if value is None else int(value)


def read_histogram(dataset, band=1):
    """The segment band's pixel counts per id from its RAT, or None when absent or unusable."""
    rat = GdalRat(dataset, band)
    try:
        names = rat.column_names()
        if not names or rat.row_count() == 0:
            return None
        import osgeo.gdal as gdal

        chosen = next((n for n in names if rat.column_usage(n) == gdal.GFU_PixelCount), None)
        chosen = chosen or next((n for n in names if n.lower() == "histogram"), None)
        if chosen is None or rat.column_kind(chosen) == "string":
            return None
        counts = np.asarray(rat.read(chosen), np.float64)
    finally:
        rat.discard()
    if not counts.size or (counts < 0).any() or not np.array_equal(counts, np.round(counts)):
        return None
    if counts.sum() == 0:
        return None
    return counts.astype(np.int64)


def count_segment_pixels(dataset, band, null_id, reporter=None, read_threads=2):
    """Pixels per segment id (index = id), by one pass over the segment band."""
    from .segment_collector import count_ids

    dtype = band_dtype(dataset.GetRasterBand(band))
    counts = np.zeros(1 << 16 if dtype.itemsize <= 2 else 1 << 20, np.int64)
    largest_seen = -1
    windows = plan_windows(dataset, band)
    total = dataset.RasterXSize * dataset.RasterYSize
    done = 0
    with TileReader([(dataset, [band], None)], windows, threads=read_threads) as reader:
        for window, (tile,) in reader:
            if reporter is not None:
                reporter.check()
            largest, smallest = count_ids(tile[0], null_id, counts)
            check_segment_ids(smallest, largest, dataset, COUNT_BYTES_PER_ID)
            if largest >= len(counts):
                grown = np.zeros(max(2 * len(counts), largest + 1), np.int64)
                grown[: len(counts)] = counts
                counts = grown
                count_ids(tile[0], null_id, counts)
            largest_seen = max(largest_seen, largest)
            done += window.xsize * window.ysize
            if reporter is not None:
                reporter.update(done / total)
    return counts[: largest_seen + 1]
