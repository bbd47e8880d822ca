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

import numpy as np

from ..dependencies import require
from ..distributed import check_scheduler, cluster_client
from ..errors import TesseraError
from ..io.raster_io import (
    band_dtype,
    band_nodata,
    check_same_grid,
    get_band,
    open_raster,
    plan_windows,
    raster_name,
)
from ..progress import Progress
from ..rat.output import RatOutput, allocate_results
from ..statistics.catalogue import (
    DEFAULT_STATISTICS,
    StatPlan,
    default_column_name,
    with_class_columns,
)
from .pipeline import (
    COLLECTOR_BYTES_PER_ID,
    check_segment_ids,
    collect_segments,
    fill_absent_rows,
    present_ids,
    segment_null_id,
    segment_totals,
    write_segment_results,
)


def segment_stats(segments, image, statistics=DEFAULT_STATISTICS, bands=None, percentiles=(),
                  percentile_method="inverted_cdf", missing_value=-9999, output_rat=None,
                  overwrite=False, progress=None, cancelled=None, segment_band=1,
                  column_prefix="", column_names=None, output_table=None, window_size=None,
                  read_threads=2, scheduler=None):
    """Compute statistics of ``image`` for every segment of ``segments``.

    ``segments`` and ``image`` are paths or open GDAL datasets on the same
    grid. ``statistics`` are names of :data:`tessera.engine.statistics.catalogue.STATISTICS`;
    ``percentiles`` values in 0..100 computed with ``percentile_method``
    (``"inverted_cdf"``: an actual pixel value, or numpy's ``"linear"``).
    ``bands`` lists 1-based image bands (default all). Columns are named
    ``<prefix>b<band>_<stat>`` / ``<prefix>b<band>_p<p>``; ``column_names``
    maps such default names to others. ``output_rat`` None writes the RAT of
    the segment file; a path ending ``.zarr`` (or ``s3://``) a Zarr RAT
    store; another path a GDAL file (``.img`` or ``.tif``). ``output_table``
    optionally writes a CSV with one row per segment. ``progress(fraction,
    message)`` and ``cancelled()`` report and stop the work.

    ``scheduler`` None (the default) uses this process's threads; ``"local"``, a Dask
    scheduler address or a ``distributed.Client`` run the work as tasks on a Dask
    cluster (see :mod:`tessera.engine.distributed`), with the same results.
    """
    require("numba", purpose="Per-segment statistics")
    check_scheduler(scheduler, "Per-segment statistics on a Dask cluster")
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
    null_id = segment_null_id(seg_band)
    columns = [(c.name, c.kind) for c in plan.columns]
    output = RatOutput(output_rat, seg_ds, segment_band, columns, overwrite, output_table,
                       inputs=[(img_ds, "image")])
    output.check()

    nodata = [band_nodata(b) for b in image_bands]
    # the callee releases the read handles before writing the segment file
    opened = {"segments": seg_ds, "image": img_ds}
    seg_ds = img_ds = seg_band = image_bands = None
    with cluster_client(scheduler, "Per-segment statistics on a Dask cluster", reporter) as cluster:
        return _compute_and_write(
            cluster, opened, segments, image, segment_band, bands, nodata, dtype, plan,
            percentiles, missing, null_id, output, output_table, window_size, read_threads,
            reporter, timings, started)


def _compute_and_write(cluster, opened, segments, image, segment_band, bands, nodata, dtype,
                       plan, percentiles, missing, null_id, output, output_table, window_size,
                       read_threads, reporter, timings, started):
    """The statistics of every segment, here or on ``cluster``, written to ``output``."""
    columns = output.columns
    seg_ds, img_ds = opened.pop("segments"), opened.pop("image")
    windows = plan_windows(seg_ds, segment_band, window_size=window_size,
                           also=[(img_ds, b) for b in bands[:1]])
    if cluster is None:
        totals, compute_span = segment_totals(seg_ds, segment_band, null_id, reporter,
                                              read_threads, timings, started)
    else:
        from .cluster import shared_path

        paths = (shared_path(segments, "segment raster"), shared_path(image, "image"))
        totals, compute_span = _cluster_totals(cluster, paths[0], seg_ds, segment_band,
                                               null_id, windows, reporter, timings, started)
    check_segment_ids(0, len(totals) - 1, seg_ds, COLLECTOR_BYTES_PER_ID + 8 * len(columns))
    row_count = max(len(totals), output.existing_rows)
    results = allocate_results(row_count, len(plan.columns))  # every present row is computed

    compute_started = time.perf_counter()
    if cluster is None:
        reporter.phase(*compute_span, "Computing per-segment statistics")
        class_shares = _threaded_statistics(plan, nodata, results, missing, totals, null_id,
                                            windows, (seg_ds, segment_band, img_ds, bands),
                                            read_threads, reporter)
    else:
        from .cluster import cluster_segment_stats

        spec = {"segments": paths[0], "image": paths[1], "segment_band": segment_band,
                "bands": bands, "dtype": dtype.str, "statistics": list(plan.statistics),
                "percentiles": percentiles, "method": plan.method,
                "nodata": nodata, "missing": missing, "null_id": null_id,
                "columns": len(plan.columns), "read_threads": 1}
        if output.is_zarr and not output_table:  # the workers write their rows
            return _written_by_workers(cluster, spec, plan, totals, windows, output,
                                       row_count, reporter, compute_span, timings, started)
        class_shares = cluster_segment_stats(cluster, spec, totals, windows, results,
                                             reporter, compute_span, timings)
    present = present_ids(totals, null_id)
    # class columns (frac) are known now: checked against the target when it is written
    all_columns, results = with_class_columns(plan, results, class_shares, missing,
                                              lambda n: allocate_results(row_count, n))
    columns = output.columns = [(c.name, c.kind) for c in all_columns]
    fill_absent_rows(results, present, [0.0 if c.stat == "pixcount" else missing
                                        for c in all_columns])
    timings["statistics"] = time.perf_counter() - compute_started
    seg_ds = img_ds = None  # release read handles before writing the segment file
    return write_segment_results(output, results, columns, present, null_id, row_count,
                                 output_table, reporter, timings, started)


def _written_by_workers(client, spec, plan, totals, windows, output, row_count, reporter,
                        span, timings, started):
    """Statistics on the cluster, written by the workers into the staged columns of the
    Zarr target in chunk-aligned row blocks; published here once all are written."""
    from ..statistics.catalogue import CLASS_STATISTICS
    from .cluster import cluster_segment_stats_to_store
    from .pipeline import SegmentStatsResult

    compute_started = time.perf_counter()
    classes, write = cluster_segment_stats_to_store(client, spec, totals, windows, reporter,
                                                    span, timings)
    all_columns = plan.output_columns(classes)
    output.columns = [(c.name, c.kind) for c in all_columns]
    timings["statistics"] = time.perf_counter() - compute_started
    kernel_row = {c.name: row for row, c in enumerate(plan.columns)}
    missing, null_id = spec["missing"], spec["null_id"]

    def write_blocks(store, hidden, kept):
        write(store, [(c.name, c.kind,
                       ("class", c.band_index, c.class_value) if c.stat in CLASS_STATISTICS
                       else ("kernel", kernel_row[c.name]),
                       0.0 if c.stat == "pixcount" else missing, hidden[c.name], kept[c.name])
                      for c in all_columns], row_count)

    write_started = time.perf_counter()
    reporter.phase(0.95, 1.0, f"Workers writing {len(all_columns)} column(s) to "
                   f"{output.name}")
    output.write_by(row_count, null_id, reporter, write_blocks)
    timings["write"] = time.perf_counter() - write_started
    timings["total"] = time.perf_counter() - started
    present = present_ids(totals, null_id)
    return SegmentStatsResult(output.name, [c.name for c in all_columns], int(present.size),
                              int(row_count), timings)


def _cluster_totals(client, segments, seg_ds, band, null_id, windows, reporter, timings,
                    started):
    """Pixels per id: the histogram, else counted by tasks on the cluster."""
    from ..distributed import worker_threads
    from .cluster import cluster_totals, group_windows
    from .pipeline import read_histogram

    totals = read_histogram(seg_ds, band)
    if totals is not None:
        return totals, (0.0, 0.95)
    reporter.phase(0.0, 0.2, "Counting the pixels of every segment on the Dask cluster")
    totals = cluster_totals(client, segments, band, null_id,
                            group_windows(windows, worker_threads(client)), reporter)
    timings["count"] = time.perf_counter() - started
    return totals, (0.2, 0.95)


def _threaded_statistics(plan, nodata, results, missing, totals, null_id, windows, rasters,
                         read_threads, reporter):
    """Fill ``results`` reading the windows here; returns the class shares."""
    from ..statistics.kernels import ZoneStatsRunner
    from .collector import SegmentCollector

    seg_ds, segment_band, img_ds, bands = rasters
    # the bands of a pixel side by side: the collector copies a run of pixels at once
    sources = [(seg_ds, [segment_band], None), (img_ds, bands, plan.image_dtype, "pixel")]
    with ZoneStatsRunner(plan, nodata, results, missing) as stats:
        collector = SegmentCollector(totals, null_id, len(bands), plan.image_dtype,
                                     before_compaction=stats.wait)
        collect_segments(collector, sources, windows, read_threads, reporter,
                         lambda batch: stats.add(batch.ids, batch.starts, batch.lengths,
                                                 batch.values))
        stats.wait()
    return stats.class_shares


def _namer(prefix, names):
    names = dict(names or {})

    def name_for(band, stat, parameter):
        default = default_column_name(band, stat, parameter)
        return names.get(default, f"{prefix or ''}{default}")

    return name_for


