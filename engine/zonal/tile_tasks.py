"""Zonal statistics as Dask tasks: groups of consecutive tiles (``scheduler=``).

The polygons (pixel-space rings), their windows and the tile grid are sent once to every
worker. A task reads its group's tiles (in the order of the threaded run) and gathers each
polygon's pixels there as the threads do (:class:`.statistics._Gatherer`):

- a polygon whose tiles all lie in the group is finished in the task (its pieces joined in
  tile order, as :func:`.statistics._finish_open` joins them); the task returns its
  statistics columns and class shares;
- a polygon reaching beyond the group is handed back as its pieces (pixel values and
  weights) in tile order; the client joins them group after group — tile order again —
  and finishes it when its last tile's group is in.

Every polygon's pixels thus reach the same kernel in the same order as on threads: the
values are the same bits.
"""

import numpy as np

from ..distributed import run_tasks, share, worker_threads
from ..errors import TesseraError
from ..io.polygon_source import PolygonSet
from ..io.raster_io import TileReader, raster_name
from ..parallel import split_evenly

#: Tasks per worker thread (finer progress, and workers finish together).
GROUPS_PER_THREAD = 4


def compute_on_cluster(client, shapes, bounds, grid, work, raster_ds, bands, dtype, rule,
                       kernel, values, class_shares, reporter):
    """Fill ``values`` (columns, polygons) and ``class_shares`` from the tiles ``work``
    (``(window, tile index, polygons)`` of :meth:`._TileGrid.tiles`) on ``client``."""
    from .statistics import _finish_open

    path = raster_name(raster_ds)
    if not path or path.startswith("/vsimem/") or raster_ds.GetDriver().ShortName == "MEM":
        raise TesseraError("Zonal statistics on a Dask cluster read the raster on the "
                           "workers: give it as a file path or URL they can open, not an "
                           "in-memory dataset.")
    plain = PolygonSet(shapes.fids, np.asarray(shapes.xs), np.asarray(shapes.ys),
                       shapes.ring_start, shapes.ring_sign, shapes.poly_ring)
    layout = share(client, (plain, bounds, grid))
    groups = split_evenly(range(len(work)), GROUPS_PER_THREAD * worker_threads(client))
    defaults = values[:, :1].copy() if values.shape[1] else np.zeros((values.shape[0], 1))
    calls, weights = [], []
    for group in groups:
        items = [(work[k][0], work[k][1], work[k][2]) for k in group]
        calls.append((gather_tile_group, layout, items, path, bands, dtype, rule, kernel,
                      defaults))
        weights.append(sum(len(polygons) for _, _, polygons in items) + len(items))
    parts = {}
    for finished, open_pieces in run_tasks(client, calls, reporter, weights,
                                           "tessera-zonal"):
        for ids, columns, pairs in finished:
            values[:, ids] = columns
            class_shares.add(pairs)
        closing = []
        for polygon, pieces, last in open_pieces:
            parts.setdefault(polygon, []).extend(pieces)
            if last:
                closing.append(polygon)
        if closing:
            _finish_open(closing, parts, len(bands), dtype,
                         lambda ids, starts, lengths, pixel_values, weights: class_shares.add(
                             kernel(ids, starts, lengths, pixel_values, weights, values)))
    if parts:
        raise TesseraError("Internal error: some polygons spanning tile groups were never "
                           "finished.")


def gather_tile_group(layout, items, path, bands, dtype, rule, kernel, defaults):
    """One task: the tiles ``items`` ((window, tile index, polygons), consecutive in the
    run's order) of the raster ``path``. Returns (finished: [(polygon ids, their columns,
    their class shares)], open: [(polygon, its pieces here, whether its last tile is here)])."""
    from .statistics import _finish_open, _Gatherer

    shapes, bounds, grid = layout
    first_tile, last_tile = items[0][1], items[-1][1]
    finished = []

    def finish(ids, starts, lengths, pixel_values, weights):
        columns = np.repeat(defaults, len(ids), axis=1)
        pairs = kernel(np.arange(len(ids), dtype=np.int64), starts, lengths, pixel_values,
                       weights, columns)
        if len(pairs):
            pairs = pairs.copy()
            pairs[:, 0] = ids[pairs[:, 0].astype(np.int64)]
        finished.append((np.array(ids, np.int64), columns, pairs))

    gatherer = _Gatherer(shapes, bounds, grid, len(bands), dtype, rule, finish)
    parts, leaving = {}, {}
    windows = [window for window, _, _ in items]
    with TileReader([(path, bands, dtype)], windows, threads=1, depth=2) as reader:
        for (window, (tile,)), (_, tile_index, polygons) in zip(reader, items, strict=True):
            closing = []
            for p, piece in gatherer.gather(np.asarray(polygons, np.int64), window, tile):
                starts_here = grid.first_row[p] * grid.n_cols + grid.first_col[p] >= first_tile
                ends_here = grid.last_tile[p] <= last_tile
                kept = (parts if starts_here and ends_here else leaving).setdefault(p, [])
                if piece is not None:
                    kept.append(piece)
                if starts_here and ends_here and grid.last_tile[p] == tile_index:
                    closing.append(p)
            if closing:
                _finish_open(closing, parts, len(bands), dtype, finish)
    open_pieces = [(p, pieces, bool(grid.last_tile[p] <= last_tile))
                   for p, pieces in leaving.items()]
    return finished, open_pieces
