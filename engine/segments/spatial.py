"""Per-segment spatial statistics (centroid, bounding box, area, perimeter,
edge pixels, variograms) written to a raster attribute table.

    from tessera.engine import segment_spatial_stats
    result = segment_spatial_stats("segments.tif", "image.tif",
                                   statistics=("centroid", "area", "variogram"), max_lag=5)

The statistics are defined in :mod:`tessera.engine.segments.spatial_catalogue`. They are
*streamed*: the rasters are read tile by tile, each tile with a halo of
neighbouring pixels (one row above; ``max_lag`` pixels left, right and below
for the variograms), and every segment keeps only a few running sums, so a
segment covering the whole raster costs no more memory than a small one.
Memory is the tiles plus a few numbers per segment id (like the output
columns). Nothing is written until every check has passed and every value
is computed.
"""

import time

import numpy as np

from ..dependencies import require
from ..distributed import check_scheduler, cluster_client
from ..errors import TesseraError
from ..io.raster_io import TileReader, Window, plan_windows
from ..progress import Progress
from ..rat.output import RatOutput
from .inputs import open_segment_inputs
from .pipeline import (
    MAX_SEGMENT_ID,
    check_segment_ids,
    present_ids,
    write_segment_results,
)
from .spatial_catalogue import (
    DEFAULT_SPATIAL_STATISTICS,
    PixelGeometry,
    SpatialPlan,
    diagonal_rms_offsets,
    variogram_offsets,
)

_INT64_MAX = np.iinfo(np.int64).max


def segment_spatial_stats(segments, image=None, statistics=DEFAULT_SPATIAL_STATISTICS, band=1,
                          max_lag=5, connectivity=8, missing_value=-9999, output_rat=None,
                          overwrite=False, progress=None, cancelled=None, segment_band=1,
                          column_prefix="", output_table=None, window_size=None,
                          read_threads=2, scheduler=None):
    """Compute spatial statistics of every segment of ``segments``.

    ``statistics`` are names of
    :data:`~tessera.engine.segments.spatial_catalogue.SPATIAL_STATISTICS`:
    ``centroid``, ``bbox``, ``area``, ``perimeter``, ``edgepixels``
    (with ``connectivity`` 4 or 8) need only the segment raster;
    ``variogram`` and ``diagonalrms`` (lags 1..``max_lag`` pixels) read band
    ``band`` of ``image``, which must be on the same grid. Columns are
    ``centroid_x, centroid_y, xmin, ymin, xmax, ymax, area, perimeter,
    edge_pixels, gamma_<k>, drms_<k>`` with an optional ``column_prefix``.
    ``output_rat``, ``overwrite``, ``output_table``, ``progress`` and
    ``cancelled`` and ``scheduler`` (a Dask cluster) work as in
    :func:`~tessera.engine.segment_stats`.
    Returns a :class:`~tessera.engine.SegmentStatsResult`.
    """
    require("numba", purpose="Per-segment spatial statistics")
    check_scheduler(scheduler, "Per-segment spatial statistics on a Dask cluster")
    started = time.perf_counter()
    reporter = Progress(progress, cancelled)
    plan = SpatialPlan(statistics, max_lag, connectivity, column_prefix)
    missing = plan.check_missing_value(missing_value)
    if plan.needs_values and image is None:
        raise TesseraError("The variogram statistics read image values: give an image.")
    inputs = open_segment_inputs(segments, image, segment_band, band)
    geometry = PixelGeometry(inputs.geotransform)
    columns = [(c.name, c.kind) for c in plan.columns]
    output = RatOutput(output_rat, inputs.segments, segment_band, columns, overwrite, output_table,
                       inputs=[(inputs.image, "image")])
    output.check()

    sums = SegmentSums(plan, geometry, inputs.null_id, inputs.image_nodata)
    seg_ds = inputs.segments
    width, height = seg_ds.RasterXSize, seg_ds.RasterYSize
    cores = plan_windows(seg_ds, segment_band, window_size=window_size)
    reads = [_with_halo(core, sums.halo, width, height) for core in cores]
    sources = [(seg_ds, [segment_band], None)]
    if plan.needs_values:
        sources.append((inputs.image, [inputs.image_band], None))
    null_id = inputs.null_id
    reporter.phase(0.0, 0.95, "Computing per-segment spatial statistics")
    compute_started = time.perf_counter()
    timings = {}
    with cluster_client(scheduler, "Per-segment spatial statistics on a Dask cluster",
                        reporter) as cluster:
        if cluster is None:
            _threaded_sums(sums, sources, cores, reads, seg_ds, read_threads, reporter)
        else:
            from .cluster import cluster_spatial_sums, shared_path

            spec = {"segments": shared_path(segments, "segment raster"),
                    "segment_band": segment_band, "image_band": inputs.image_band,
                    "image": shared_path(image, "image") if plan.needs_values else None,
                    "image_nodata": inputs.image_nodata, "null_id": null_id,
                    "statistics": statistics, "max_lag": max_lag,
                    "connectivity": connectivity, "column_prefix": column_prefix,
                    "read_threads": 1}
            timings["part_count"] = cluster_spatial_sums(cluster, spec, sums, cores, reads,
                                                         reporter)
    timings["statistics"] = time.perf_counter() - compute_started
    reporter.check()

    row_count = max(sums.size, output.existing_rows)
    results = sums.results(row_count, missing)
    present = present_ids(sums.shape_acc[0, :sums.size], null_id)
    seg_ds = inputs = None  # release read handles before writing the segment file
    return write_segment_results(output, results, columns, present, null_id, row_count,
                                 output_table, reporter, timings, started)


def _threaded_sums(sums, sources, cores, reads, seg_ds, read_threads, reporter):
    """Add every window to ``sums``, read here."""
    width, height = seg_ds.RasterXSize, seg_ds.RasterYSize
    done = 0
    with TileReader(sources, reads, threads=read_threads) as reader:
        for core, (read, tiles) in zip(cores, reader, strict=False):
            reporter.check()
            image_tile = tiles[1][0] if sums.plan.needs_values else None
            sums.add_tile(tiles[0][0], image_tile, core, read, seg_ds)
            done += core.xsize * core.ysize
            reporter.update(done / (width * height))


def _with_halo(core, halo, width, height):
    """The window read for ``core``: one row above, ``halo`` pixels left, right and below."""
    x0, y0 = max(0, core.xoff - halo), max(0, core.yoff - 1)
    x1 = min(width, core.xoff + core.xsize + halo)
    y1 = min(height, core.yoff + core.ysize + halo)
    return Window(x0, y0, x1 - x0, y1 - y0)


class SegmentSums:
    """Running sums per segment id of the chosen statistics, grown as larger ids appear.

    ``shape_acc`` (int64, fields x ids) holds the rows :mod:`.spatial_kernels`
    names (pixel count always; the others only when a statistic needs them,
    ``fields`` maps each to its row or -1); ``pairs[name]`` holds (sums,
    counts), each (lags x ids), of a variogram, with its pixel offsets in
    ``offsets[name]``.
    """

    def __init__(self, plan, geometry, null_id, nodata):
        from . import spatial_kernels as k

        self.plan = plan
        self.geometry = geometry
        self.null_id = null_id
        self.has_nodata = nodata is not None
        self.nodata = np.float64(nodata if self.has_nodata else np.nan)
        wanted = [k.COUNT]
        if plan.wants("centroid"):
            wanted += [k.SUM_COL, k.SUM_ROW]
        if plan.wants("bbox"):
            wanted += [k.MIN_COL, k.MAX_COL, k.MIN_ROW, k.MAX_ROW]
        if plan.wants("edgepixels"):
            wanted += [k.EDGE_PIXELS]
        if plan.wants("perimeter"):
            wanted += [k.COL_SIDES, k.ROW_SIDES]
        self.fields = np.full(k.SHAPE_FIELDS, -1, np.int64)
        self.fields[wanted] = np.arange(len(wanted))
        self._initial = np.zeros(len(wanted), np.int64)
        for field in (k.MIN_COL, k.MIN_ROW):
            if self.fields[field] >= 0:
                self._initial[self.fields[field]] = _INT64_MAX
        for field in (k.MAX_COL, k.MAX_ROW):
            if self.fields[field] >= 0:
                self._initial[self.fields[field]] = -1
        self.offsets = {}
        if plan.wants("variogram"):
            self.offsets["variogram"] = variogram_offsets(geometry, plan.max_lag)
        if plan.wants("diagonalrms"):
            self.offsets["diagonalrms"] = diagonal_rms_offsets(plan.max_lag)
        #: Pixels read around a tile: every offset, and the 8 neighbours.
        self.halo = max([1] + [int(max(abs(dy).max(), abs(dx).max()))
                               for dy, dx, _ in self.offsets.values()])
        self.lags = plan.max_lag
        self.size = 0       # ids in use: the largest seen + 1
        self.capacity = 0   # ids the arrays have room for
        self.shape_acc = np.zeros((len(wanted), 0), np.int64)
        self.pairs = {name: (np.zeros((self.lags, 0)), np.zeros((self.lags, 0), np.int64))
                      for name in self.offsets}
        self._pid = np.empty((0, 0), np.int32)
        self._values = np.empty((0, 0), np.float64)
        #: Memory per id up to the largest: the running sums, the variogram sums and
        #: counts, and the result columns written from them.
        self.bytes_per_id = 8 * (len(wanted) + 2 * self.lags * len(self.offsets)
                                 + len(plan.columns))

    def add_tile(self, seg, image, core, read, dataset):
        """Add the pixels of window ``core`` from tiles ``seg`` and ``image`` (None without
        variograms) read over window ``read`` (the core with its halo)."""
        from .spatial_kernels import accumulate_pairs, accumulate_shape, id_range, pair_ids

        r0, c0 = core.yoff - read.yoff, core.xoff - read.xoff
        r1, c1 = r0 + core.ysize, c0 + core.xsize
        smallest, largest = id_range(seg, r0, r1, c0, c1, self.null_id)
        if largest < 0 and smallest >= 0:
            return  # only null ids
        check_segment_ids(smallest, largest, dataset, self.bytes_per_id)
        self.grow(int(largest) + 1)
        accumulate_shape(seg, r0, r1, c0, c1, read.yoff, read.xoff, self.null_id,
                         self.plan.connectivity == 8, self.fields, self.shape_acc)
        if self.offsets:
            pid, values = self._pair_buffers(seg.shape)
            pair_ids(seg, image, self.null_id, self.nodata, self.has_nodata, pid, values)
            for name, (off_dy, off_dx, off_bin) in self.offsets.items():
                accumulate_pairs(pid, values, r0, r1, c0, c1, off_dy, off_dx, off_bin,
                                 *self.pairs[name])

    def _pair_buffers(self, shape):
        """Pair ids (int32) and float64 values of a tile, reused from tile to tile."""
        rows, cols = shape
        if rows > self._pid.shape[0] or cols > self._pid.shape[1]:
            size = (max(rows, self._pid.shape[0]), max(cols, self._pid.shape[1]))
            self._pid = np.empty(size, np.int32)
            self._values = np.empty(size, np.float64)
        return self._pid[:rows, :cols], self._values[:rows, :cols]

    def grow(self, ids):
        """Make room for ids below ``ids``."""
        if ids > self.capacity:
            capacity = max(ids, min(2 * self.capacity, MAX_SEGMENT_ID + 1), 1024)
            grown = np.empty((self.shape_acc.shape[0], capacity), np.int64)
            grown[:] = self._initial[:, None]
            grown[:, : self.capacity] = self.shape_acc
            self.shape_acc = grown
            for name, (sums, counts) in self.pairs.items():
                new_sums = np.zeros((self.lags, capacity))
                new_counts = np.zeros((self.lags, capacity), np.int64)
                new_sums[:, : self.capacity] = sums
                new_counts[:, : self.capacity] = counts
                self.pairs[name] = (new_sums, new_counts)
            self.capacity = capacity
        self.size = max(self.size, ids)

    def results(self, rows, missing):
        """The output columns (columns x ``rows``, float64)."""
        from . import spatial_kernels as k

        plan, geometry = self.plan, self.geometry
        n = self.size
        field = {f: self.shape_acc[self.fields[f], :n] for f in range(k.SHAPE_FIELDS)
                 if self.fields[f] >= 0}
        count = field[k.COUNT]
        present = count > 0
        safe = np.where(present, count, 1)
        values = {}
        if plan.wants("centroid"):
            cols = field[k.SUM_COL] / safe + 0.5
            rows_ = field[k.SUM_ROW] / safe + 0.5
            values["centroid_x"], values["centroid_y"] = geometry.to_map(cols, rows_)
        if plan.wants("bbox"):
            xs, ys = [], []
            for col in (field[k.MIN_COL], field[k.MAX_COL] + 1):
                for row in (field[k.MIN_ROW], field[k.MAX_ROW] + 1):
                    x, y = geometry.to_map(col.astype(np.float64), row.astype(np.float64))
                    xs.append(x)
                    ys.append(y)
            values["xmin"], values["xmax"] = np.min(xs, axis=0), np.max(xs, axis=0)
            values["ymin"], values["ymax"] = np.min(ys, axis=0), np.max(ys, axis=0)
        if plan.wants("area"):
            values["area"] = count * geometry.area
        if plan.wants("perimeter"):
            values["perimeter"] = (field[k.COL_SIDES] * geometry.height
                                   + field[k.ROW_SIDES] * geometry.width)
        if plan.wants("edgepixels"):
            values["edge_pixels"] = field[k.EDGE_PIXELS].astype(np.float64)
        zero_when_absent = {"area", "perimeter", "edge_pixels"}
        results = np.empty((len(plan.columns), rows), np.float64)
        for index, column in enumerate(plan.columns):
            results[index] = 0.0 if column.part in zero_when_absent else missing
            if column.lag:
                sums, counts = (a[column.lag - 1, :n] for a in self.pairs[column.stat])
                has = counts > 0
                mean = sums[has] / counts[has]
                target = results[index, :n]
                target[has] = mean / 2 if column.stat == "variogram" else np.sqrt(mean)
            else:
                target = results[index, :n]
                if column.part in zero_when_absent:
                    target[:] = values[column.part]
                else:
                    target[present] = values[column.part][present]
        return results
