"""Zonal statistics: statistics of a raster for every polygon of a layer.

    from tessera.engine import zonal_stats
    result = zonal_stats("fields.gpkg", "image.tif", statistics=("pixcount", "mean", "median"),
                         pixel_rule="fraction")
    result.values[result.names.index("_mean")]     # one value per feature, in input order

How it works, in bounded memory:

1. Polygons are read in chunks (transformed to the raster's CRS, repaired when
   invalid) into flat pixel-space ring arrays (:mod:`tessera.engine.io.polygon_source`), each
   with its pixel window (bounding box on the raster).
2. The raster is read tile by tile (:class:`.raster_io.TileReader`, only the
   tiles some polygon touches). For each tile, every polygon whose window
   meets it is rasterized on its own window clipped to the tile
   (:mod:`tessera.engine.zonal.polygon_raster`), so overlapping polygons each keep all their
   pixels, and its pixel values (all bands) and weights are gathered
   contiguously.
3. A polygon inside one tile is finished at once; a polygon over several tiles
   keeps its gathered pixels until its last tile (the tile of the bottom-right
   corner of its window, tiles being read row by row), then is finished and
   its pixels freed. Memory holds a few tiles and the open polygons' pixels.
4. Statistics come from the per-segment kernels (:func:`.stat_kernels.zone_statistics`)
   for the ``centre`` and ``all_touched`` rules and from
   :func:`.weighted_kernels.weighted_zone_statistics` for ``fraction``.

Pixel rules: ``centre`` (a pixel belongs to a polygon when its centre is inside;
holes excluded), ``all_touched`` (every pixel the polygon covers with a
non-zero area), ``fraction`` (every such pixel weighted by its exactly
computed covered fraction, as exactextract). A polygon without any pixel
(outside the raster, empty, smaller than a pixel and missing every pixel centre
under ``centre``) gets pixcount 0 and the missing value (NULL / NaN by
default) in every other column: Tessera never switches rules silently (QGIS's
zonal statistics falls back to fractional weights for such polygons).
"""

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..dependencies import require
from ..distributed import cluster_client
from ..errors import TesseraError
from ..io.output_safety import Publication, check_targets
from ..io.raster_io import TileReader, band_dtype, band_nodata, get_band, open_raster, plan_windows
from ..progress import Progress
from ..rat.output import write_table
from ..statistics.catalogue import (
    DEFAULT_STATISTICS,
    FRACTION,
    PIXEL_RULES,
    WEIGHTED,
    ZONES,
    ClassShares,
    StatPlan,
    column_label,
    with_class_columns,
)

DEFAULT_PREFIX = "_"


@dataclass
class ZonalStatsResult:
    """Statistics per feature: ``values[c, i]`` is column ``columns[c]`` of feature ``fids[i]``."""

    fids: np.ndarray
    columns: list            # [(name, kind)], kind "integer" or "real"
    values: np.ndarray       # float64 (columns, features); missing value where no pixel
    pixel_rule: str
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def names(self):
        return [name for name, _ in self.columns]

    @property
    def feature_count(self):
        return int(len(self.fids))

    def column(self, name):
        """The values of one column, one per feature."""
        return self.values[self.names.index(name)]


def zonal_column_namer(prefix, several_bands):
    """``<prefix><stat>`` / ``<prefix>p25`` for one band, ``<prefix>b<band>_<stat>`` for several."""
    prefix = prefix or ""

    def name_for(band, stat, parameter):
        label = column_label(stat, parameter)
        return f"{prefix}b{band}_{label}" if several_bands else f"{prefix}{label}"

    return name_for


def zonal_stats(polygons, raster, statistics=DEFAULT_STATISTICS, bands=(1,), percentiles=(),
                percentile_method="inverted_cdf", pixel_rule="centre",
                column_prefix=DEFAULT_PREFIX, missing_value=None, polygons_crs=None,
                layer=None, output_table=None, progress=None, cancelled=None,
                window_size=None, read_threads=2, compute_threads=2, overwrite=False,
                polygons_name=None, scheduler=None):
    """Compute statistics of ``raster`` for every polygon of ``polygons``.

    ``polygons`` is a vector file path (``layer`` or ``path|layername=x`` picks a
    layer) or an iterable of ``(feature id, geometry)`` with geometries as WKB,
    shapely or OGR objects in ``polygons_crs`` (WKT, ``"EPSG:n"``; None: the
    raster's CRS). ``statistics`` and ``percentiles`` are those of
    :func:`tessera.engine.segment_stats`; ``pixel_rule`` is ``"centre"``,
    ``"all_touched"`` or ``"fraction"`` (weighted statistics, see
    :mod:`..statistics.weighted_kernels`; percentiles then follow exactextract's weighted
    definition whatever ``percentile_method``). ``missing_value`` (None: NaN)
    fills the columns of features without a valid pixel (pixcount 0).
    ``output_table`` optionally writes a CSV keyed by feature id (an existing file
    only with ``overwrite``). ``polygons_name`` names an iterable of polygons in messages.
    ``progress(fraction, message)`` and ``cancelled()`` report and stop the work;
    ``read_threads`` decode tiles ahead, ``compute_threads`` share each tile's polygons.
    ``scheduler`` (:mod:`tessera.engine.distributed`): None runs on this machine's threads;
    ``"local"``, a scheduler address or a ``distributed.Client`` compute groups of tiles as
    Dask tasks (the raster a path every worker reads); the values are the same bits.
    """
    require("numba", "shapely", purpose="Zonal statistics")
    from ..io.polygon_source import layer_features, open_layer, read_polygons
    from .polygon_raster import polygon_bounds

    if pixel_rule not in PIXEL_RULES:
        raise TesseraError(f"Unknown pixel rule '{pixel_rule}'; use "
                           f"{', '.join(PIXEL_RULES)}.")
    started = time.perf_counter()
    timings = {}
    reporter = Progress(progress, cancelled)
    raster_ds = open_raster(raster)
    bands = [int(b) for b in (bands or [1])]
    raster_bands = [get_band(raster_ds, b, "raster") for b in bands]
    dtype = np.result_type(*[band_dtype(b) for b in raster_bands])
    plan = StatPlan(statistics, bands, dtype, percentiles, percentile_method,
                    zonal_column_namer(column_prefix, len(bands) > 1),
                    where=WEIGHTED if pixel_rule == "fraction" else ZONES)
    if missing_value is None or (isinstance(missing_value, float) and math.isnan(missing_value)):
        missing = math.nan
    else:
        missing = plan.check_missing_value(missing_value)
    polygon_file = polygons if isinstance(polygons, (str, os.PathLike)) else None
    check_targets([(output_table, "output table")],
                  [(polygon_file, "polygon layer"), (raster_ds, "raster")], overwrite)

    reporter.phase(0.0, 0.1, "Reading the polygons")
    holder = None
    if isinstance(polygons, (str, os.PathLike)):
        holder, ogr_layer = open_layer(polygons, layer)
        if polygons_crs is None and ogr_layer.GetSpatialRef() is not None:
            polygons_crs = ogr_layer.GetSpatialRef().ExportToWkt()
        features = layer_features(ogr_layer)
        name = f"The polygon layer {os.fspath(polygons)}"
    else:
        features = polygons
        name = f"The polygon layer {polygons_name}" if polygons_name else "The polygon layer"
    shapes = read_polygons(features, polygons_crs, raster_ds, name, check=reporter.check)
    del holder  # the OGR dataset (if any) is released once read
    try:
        for note in shapes.notes:
            if progress is not None:
                progress(0.1, note)
        timings["read polygons"] = time.perf_counter() - started
        n_features = len(shapes)
        values = np.empty((len(plan.columns), n_features), np.float64)
        for index, column in enumerate(plan.columns):
            values[index] = 0.0 if column.stat == "pixcount" else missing
        bounds = np.zeros((n_features, 4), np.int64)
        polygon_bounds(shapes.xs, shapes.ys, shapes.ring_start, shapes.poly_ring,
                       raster_ds.RasterYSize, raster_ds.RasterXSize, bounds)
        reporter.phase(0.1, 1.0 if not output_table else 0.97,
                       f"Computing zonal statistics of {n_features} polygon(s) "
                       f"({pixel_rule} rule)")
        compute_started = time.perf_counter()
        with cluster_client(scheduler, "Zonal statistics on a Dask cluster", reporter) as client:
            class_shares = _compute(shapes, bounds, raster_ds, bands, dtype, plan,
                                    PIXEL_RULES[pixel_rule], values, missing, reporter,
                                    window_size, read_threads, compute_threads, client)
        all_columns, values = with_class_columns(plan, values, class_shares, missing)
        columns = [(c.name, c.kind) for c in all_columns]
        timings["statistics"] = time.perf_counter() - compute_started
        if output_table:
            with Publication() as table:
                write_table(table.add(output_table), np.arange(n_features), columns, values,
                            keys=shapes.fids, key_name="fid", missing_as_empty=True)
        fids = shapes.fids
        notes = list(shapes.notes)
    finally:
        shapes.close()
    timings["total"] = time.perf_counter() - started
    return ZonalStatsResult(fids, columns, values, pixel_rule, notes, timings)


class _TileGrid:
    """The tiling of :func:`plan_windows` and each polygon's range of tiles."""

    def __init__(self, raster_ds, band, bounds, window_size):
        windows = plan_windows(raster_ds, band, window_size=window_size)
        self.tile_rows = windows[0].ysize
        self.tile_cols = windows[0].xsize
        self.n_cols = -(-raster_ds.RasterXSize // self.tile_cols)
        self.windows = windows
        self.has_pixels = (bounds[:, 1] > bounds[:, 0]) & (bounds[:, 3] > bounds[:, 2])
        self.first_row = bounds[:, 0] // self.tile_rows
        self.last_row = np.maximum(bounds[:, 1] - 1, 0) // self.tile_rows
        self.first_col = bounds[:, 2] // self.tile_cols
        self.last_col = np.maximum(bounds[:, 3] - 1, 0) // self.tile_cols
        self.last_tile = self.last_row * self.n_cols + self.last_col
        self.multi_tile = (self.first_row != self.last_row) | (self.first_col != self.last_col)

    def tiles(self):
        """Yield (window, tile index, polygons touching it), tiles without polygons skipped."""
        candidates = np.flatnonzero(self.has_pixels)
        order = candidates[np.argsort(self.first_row[candidates], kind="stable")]
        starts = self.first_row[order]
        open_ = np.zeros(0, np.int64)
        taken = 0
        by_row = {}
        for window in self.windows:
            by_row.setdefault(window.yoff // self.tile_rows, []).append(window)
        for tile_row in sorted(by_row):
            end = int(np.searchsorted(starts, tile_row, side="right"))
            open_ = np.concatenate([open_[self.last_row[open_] >= tile_row], order[taken:end]])
            taken = end
            if not open_.size:
                continue
            for window in by_row[tile_row]:
                tile_col = window.xoff // self.tile_cols
                meets = (self.first_col[open_] <= tile_col) & (self.last_col[open_] >= tile_col)
                here = open_[meets]
                here = here[np.argsort(self.first_col[here], kind="stable")]  # cache locality
                if here.size:
                    yield window, tile_row * self.n_cols + tile_col, here


def _compute(shapes, bounds, raster_ds, bands, dtype, plan, rule, values, missing, reporter,
             window_size, read_threads, compute_threads, client=None):
    """Gather every polygon's pixels tile by tile and fill ``values``; returns the class
    shares (``frac``) found, a :class:`.statistics.ClassShares`. With a Dask ``client``
    groups of tiles are tasks on its workers (:mod:`.tile_tasks`)."""
    grid = _TileGrid(raster_ds, bands[0], bounds, window_size)
    work = list(grid.tiles())
    class_shares = ClassShares(plan)
    if not work:
        return class_shares
    kernel = ZoneKernel.of(raster_ds, bands, dtype, plan, rule, missing)
    if client is not None:
        from .tile_tasks import compute_on_cluster

        compute_on_cluster(client, shapes, bounds, grid, work, raster_ds, bands, dtype, rule,
                           kernel, values, class_shares, reporter)
        return class_shares

    def finish(ids, starts, lengths, pixel_values, weights):
        class_shares.add(kernel(ids, starts, lengths, pixel_values, weights, values))

    gatherers = [_Gatherer(shapes, bounds, grid, len(bands), dtype, rule, finish)
                 for _ in range(max(1, int(compute_threads)))]
    parts = {}  # open multi-tile polygon -> [(values, weights)] gathered so far
    windows = [window for window, _, _ in work]
    with ThreadPoolExecutor(len(gatherers)) as pool, \
            TileReader([(raster_ds, bands, dtype)], windows, threads=read_threads) as reader:
        for done, ((window, (tile,)), (_, tile_index, polygons)) in enumerate(
                zip(reader, work, strict=True)):
            reporter.check()
            shares = np.array_split(polygons.astype(np.int64), len(gatherers))
            jobs = [pool.submit(g.gather, share, window, tile)
                    for g, share in zip(gatherers, shares, strict=True) if share.size]
            closing = []
            for job in jobs:  # pieces of multi-tile polygons, in tile order per polygon
                for p, piece in job.result():
                    kept = parts.setdefault(p, [])
                    if piece is not None:
                        kept.append(piece)
                    if grid.last_tile[p] == tile_index:
                        closing.append(p)
            if closing:
                _finish_open(closing, parts, len(bands), dtype, finish)
            reporter.update((done + 1) / len(work))
    if parts:
        raise TesseraError("Internal error: some polygons spanning tiles were never finished.")
    return class_shares


@dataclass
class ZoneKernel:
    """The statistics of zones from their gathered pixels: the kernel of the pixel rule
    and its constant arguments (picklable: Dask tasks carry it)."""

    nodata_values: np.ndarray
    has_nodata: np.ndarray
    is_int: bool
    table: np.ndarray
    quantiles: np.ndarray
    linear: bool
    needs: np.ndarray
    weighted: bool
    missing: float

    @classmethod
    def of(cls, raster_ds, bands, dtype, plan, rule, missing):
        nodata = [band_nodata(b) for b in (raster_ds.GetRasterBand(n) for n in bands)]
        return cls(np.array([np.nan if v is None else v for v in nodata], np.float64),
                   np.array([v is not None for v in nodata], np.bool_),
                   np.dtype(dtype).kind in "iu", plan.kernel_table(),
                   np.true_divide(np.array(plan.percentiles, np.float64), 100),
                   plan.method == "linear", plan.band_needs(), rule == FRACTION, missing)

    def __call__(self, ids, starts, lengths, pixel_values, weights, values):
        """Fill the columns ``values[:, ids]`` of the zones; returns their class shares."""
        from ..statistics.kernels import zone_statistics
        from ..statistics.weighted_kernels import weighted_zone_statistics

        if self.weighted:
            return weighted_zone_statistics(ids, starts, lengths, pixel_values, weights,
                                            self.nodata_values, self.has_nodata, self.table,
                                            self.quantiles, self.needs, values, self.missing)
        return zone_statistics(ids, starts, lengths, pixel_values, self.nodata_values,
                               self.has_nodata, self.is_int, self.table, self.quantiles,
                               self.linear, self.needs, values, self.missing)


class _Gatherer:
    """One compute thread's buffers: gathers a share of a tile's polygons, finishes
    those inside the tile and returns copies of the other polygons' pixels."""

    def __init__(self, shapes, bounds, grid, n_bands, dtype, rule, finish):
        self.shapes, self.bounds, self.grid, self.rule, self.finish = (
            shapes, bounds, grid, rule, finish)
        capacity = 2 * grid.tile_rows * grid.tile_cols
        self.values = np.empty((n_bands, capacity), dtype)
        self.weights = np.empty(capacity, np.float32)
        self.acc = np.zeros(grid.tile_rows * (grid.tile_cols + 1) + 1, np.float64)

    def gather(self, polygons, window, tile):
        from .polygon_raster import gather_polygons

        shapes = self.shapes
        starts = np.zeros(len(polygons), np.int64)
        lengths = np.zeros(len(polygons), np.int64)
        pieces = []
        k = 0
        while k < len(polygons):
            k_next, _ = gather_polygons(
                polygons, k, shapes.xs, shapes.ys, shapes.ring_start, shapes.ring_sign,
                shapes.poly_ring, self.bounds, window.yoff, window.xoff, tile, self.rule,
                self.acc, self.values, self.weights, starts, lengths)
            if k_next < 0:
                raise TesseraError("Internal error: a polygon window exceeds the tile.")
            ids = polygons[k:k_next]
            first, size = starts[k:k_next], lengths[k:k_next]
            multi = self.grid.multi_tile[ids]
            if not multi.all():
                single = ~multi
                self.finish(ids[single], first[single], size[single], self.values, self.weights)
            for position in np.flatnonzero(multi):
                start, stop = int(first[position]), int(first[position] + size[position])
                piece = None if stop == start else (self.values[:, start:stop].copy(),
                                                    self.weights[start:stop].copy())
                pieces.append((int(ids[position]), piece))
            k = k_next
        return pieces


def _finish_open(closing, parts, n_bands, dtype, finish):
    """Concatenate the pieces of polygons whose last tile was read; compute them."""
    pieces = [parts.pop(p) for p in closing]
    lengths = np.array([sum(v.shape[1] for v, _ in chunk) for chunk in pieces], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    pixel_values = np.empty((n_bands, total), dtype)
    weights = np.empty(total, np.float32)
    position = 0
    for chunk in pieces:
        for chunk_values, chunk_weights in chunk:
            size = chunk_weights.shape[0]
            pixel_values[:, position:position + size] = chunk_values
            weights[position:position + size] = chunk_weights
            position += size
    finish(np.array(closing, np.int64), starts, lengths, pixel_values, weights)
