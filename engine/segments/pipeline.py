"""The segment pipeline every per-segment computation shares: the segment ids and what
they cost, pixel counts per segment (histogram or counting pass), reading the segments and
image tile by tile through the collector, and writing the per-segment results to the RAT
target (and CSV).

Per-segment statistics, spatial statistics, user functions and segment polygons build on
these; each adds only what it computes per segment.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import TesseraError
from ..io.raster_io import TileReader, band_dtype, band_nodata, plan_windows, raster_name
from ..memory import available_memory, gibibytes
from ..rat.output import write_table
from ..rat.tables import GdalRat

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


def segment_null_id(band):
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
    windows = plan_windows(dataset, band)
    total = dataset.RasterXSize * dataset.RasterYSize
    done = [0]

    def counted(window):
        done[0] += window.xsize * window.ysize
        if reporter is not None:
            reporter.check()
            reporter.update(done[0] / total)

    return count_ids_in_windows(dataset, band, null_id, windows, read_threads, counted)


def count_ids_in_windows(dataset, band, null_id, windows, read_threads=2, counted=None):
    """Pixels per segment id (index = id) in ``windows`` of the segment band;
    ``counted(window)`` is called after each window."""
    from .collector import count_ids

    dtype = band_dtype(dataset.GetRasterBand(band))
    counts = np.zeros(1 << 16 if dtype.itemsize <= 2 else 1 << 20, np.int64)
    largest_seen = -1
    with TileReader([(dataset, [band], None)], windows, threads=read_threads) as reader:
        for window, (tile,) in reader:
            largest, smallest = count_ids(tile[0], null_id, counts)
            check_segment_ids(smallest, largest, dataset, COUNT_BYTES_PER_ID)
            if largest >= len(counts):
                grown = np.zeros(max(2 * len(counts), largest + 1), np.int64)
                grown[: len(counts)] = counts
                counts = grown
                count_ids(tile[0], null_id, counts)
            largest_seen = max(largest_seen, largest)
            if counted is not None:
                counted(window)
    return counts[: largest_seen + 1]
