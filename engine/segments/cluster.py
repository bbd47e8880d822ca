"""Per-segment statistics on a Dask cluster (``scheduler=`` of :func:`segment_stats` and
:func:`segment_spatial_stats`).

The raster is cut into *parts*: runs of consecutive windows of the very window list the
threaded path reads (:func:`~tessera.engine.io.raster_io.plan_windows`), one task each.

- Statistics: a part's task runs a :class:`SegmentCollector` with the global pixel counts,
  so a segment wholly inside the part completes there and its statistics are computed on
  the worker. The segments still open at the part's end hand on their pixel values (the
  order statistics' exact input) in reading order; a merge keyed by segment id joins the
  pieces in part order and computes them. Every segment's pixels thus reach the kernel in
  the order of the threaded run: the columns are bit-identical.
- Spatial statistics: a part's task returns its running sums for the ids it saw; the
  client adds them up (min / max for the bounding box). Integer sums are exact; the
  variogram sums of a segment crossing parts are float sums added in another grouping:
  bit-identical for integer images (their squared differences are whole numbers, summed
  exactly below 2**53); for float images the two sums of N positive terms differ by at
  most 2·N·ε relative (ε = 2**-53), in practice below :data:`SPATIAL_FLOAT_TOLERANCE`.

Workers open the inputs themselves: paths on a shared file system, ``/vsis3/``,
``/vsicurl/`` (``s3://`` is read as ``/vsis3/``). A Zarr target without CSV is written by
the workers (:func:`write_block`, into the staged columns the client's
:class:`~tessera.engine.rat.output.RatOutput` created and publishes); other targets by the
client from the gathered rows. A failed or cancelled run publishes nothing.
"""

import math
import time

import numpy as np

from ..distributed import worker_threads
from ..errors import TesseraError
from ..io.raster_io import gdal_path

#: Pixels per part (task) at most; more parts than workers keep every worker busy.
PART_PIXELS = 1 << 24
#: Parts per worker at least, when the raster has windows enough.
PARTS_PER_WORKER = 2
#: Relative difference allowed between a variogram of the threaded run and of a cluster
#: run for float images (its float sums of a segment crossing parts are grouped otherwise).
SPATIAL_FLOAT_TOLERANCE = 1e-12


def group_windows(windows, workers, part_pixels=PART_PIXELS):
    """Consecutive runs of ``windows`` (lists), each about the same number of pixels."""
    pixels = [w.xsize * w.ysize for w in windows]
    total = sum(pixels)
    parts = max(math.ceil(total / part_pixels), PARTS_PER_WORKER * workers)
    parts = max(1, min(parts, len(windows)))
    bounds = np.searchsorted(np.cumsum(pixels), np.arange(1, parts) * total / parts)
    groups, first = [], 0
    for end in list(bounds + 1) + [len(windows)]:
        end = max(int(end), first + 1) if first < len(windows) else first
        if end > first:
            groups.append(list(windows[first:end]))
        first = end
    return groups


def shared_path(source, role):
    """A name every worker can open for ``source`` (a path or an open dataset)."""
    from osgeo import gdal

    name = source.GetDescription() if isinstance(source, gdal.Dataset) else str(source)
    if isinstance(source, gdal.Dataset):
        driver = source.GetDriver()
        if not name or driver is None or driver.ShortName == "MEM":
            raise TesseraError(
                f"The {role} is an in-memory dataset: Dask workers cannot read it. Give a "
                "path on a shared file system, a /vsis3/ or /vsicurl/ URL, or run without "
                "a scheduler.")
    return gdal_path(name)


# ---------------------------------------------------------------- pixel counts


def count_part(segments, band, null_id, windows):
    """Pixels per segment id of ``windows`` (index = id)."""
    from ..io.raster_io import open_raster
    from .pipeline import count_ids_in_windows

    return count_ids_in_windows(open_raster(segments), band, null_id, windows, read_threads=1)


def cluster_totals(client, segments, band, null_id, groups, reporter):
    """Pixels per segment id, counted by one task per part and summed."""
    from ..distributed import run_tasks

    parts = run_tasks(client, [(count_part, segments, band, null_id, g) for g in groups],
                      reporter, [sum(w.xsize * w.ysize for w in g) for g in groups],
                      "tessera-count")
    totals = np.zeros(max([len(p) for p in parts] + [0]), np.int64)
    for part in parts:
        totals[: len(part)] += part
    return totals


# ---------------------------------------------------------------- statistics


def _stat_runner(spec, results):
    from ..statistics.catalogue import StatPlan
    from ..statistics.kernels import ZoneStatsRunner

    plan = StatPlan(spec["statistics"], spec["bands"], spec["dtype"], spec["percentiles"],
                    spec["method"])
    return plan, ZoneStatsRunner(plan, spec["nodata"], results, spec["missing"], threads=0)


def _zone_rows(spec, ids, starts, lengths, values):
    """Statistics rows (zones x kernel columns: one row per zone, as the client's table
    lays them out) and class shares (rows of zone id, band index, class, share) of zones
    ``ids``."""
    table = np.empty((len(ids), spec["columns"]), np.float64)
    results = table.T  # the kernels write [column, zone]
    _, runner = _stat_runner(spec, results)
    with runner:
        runner.add(np.arange(len(ids), dtype=np.int64), np.asarray(starts, np.int64),
                   np.asarray(lengths, np.int64), values)
    pairs = runner.class_shares.parts
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 4), np.float64)
    pairs[:, 0] = np.asarray(ids)[pairs[:, 0].astype(np.int64)]
    return table, pairs


def stats_part(spec, totals, windows):
    """The statistics of the segments complete in ``windows`` and the pixels so far of the
    others: a dict of ``ids``, ``rows`` (ids x columns), ``pairs`` (class shares), and
    ``open_ids``, ``open_lengths``, ``open_values`` ((pixels, bands), in reading order)."""
    from ..io.raster_io import TileReader, open_raster
    from .collector import SegmentCollector

    started = time.perf_counter()
    dtype = np.dtype(spec["dtype"])
    seg_ds = open_raster(spec["segments"])
    img_ds = open_raster(spec["image"])
    sources = [(seg_ds, [spec["segment_band"]], None),
               (img_ds, spec["bands"], dtype, "pixel")]
    collector = SegmentCollector(totals, spec["null_id"], len(spec["bands"]), dtype)
    ids, rows, pairs = [], [], []
    with TileReader(sources, windows, threads=spec["read_threads"]) as reader:
        for window, (seg_tile, img_tile) in reader:
            for batch in collector.add_tile(seg_tile[0], img_tile, window.yoff, window.xoff):
                part_rows, part_pairs = _zone_rows(spec, batch.ids, batch.starts,
                                                   batch.lengths, batch.values)
                ids.append(batch.ids)
                rows.append(part_rows)
                pairs.append(part_pairs)
    open_ids, starts, lengths = collector.open_segments()
    pieces = [collector.arena_vals[s:s + n] for s, n in zip(starts, lengths, strict=True)]
    open_values = (np.concatenate(pieces) if pieces
                   else np.empty((0, len(spec["bands"])), dtype))
    return {
        **packed_rows(np.concatenate(ids) if ids else np.zeros(0, np.int64),
                      np.concatenate(rows) if rows
                      else np.zeros((0, spec["columns"]), np.float64)),
        "pairs": np.concatenate(pairs) if pairs else np.zeros((0, 4), np.float64),
        "open_ids": open_ids, "open_lengths": lengths.astype(np.int64),
        "open_values": open_values, "seconds": time.perf_counter() - started,
    }


def stats_merge(spec, ids, lengths, values):
    """Statistics of the segments ``ids`` whose joined pixels (``lengths`` each) lie one
    after another in ``values`` ((pixels, bands))."""
    started = time.perf_counter()
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows, pairs = _zone_rows(spec, ids, starts, lengths, values.T)
    return {**packed_rows(ids, rows), "pairs": pairs, "seconds": time.perf_counter() - started}


def packed_rows(ids, rows):
    """Rows of the zones ``ids`` (zones x kernel columns) as sent between processes: one
    array per column (``columns``), float32 where every value of the column comes back
    from float32 with the same bits (counts, minima, medians of ≤ 16-bit images...): a
    third less to send, the same numbers."""
    columns = []
    for column in rows.T:
        narrow = column.astype(np.float32)
        same = np.array_equal(narrow.astype(np.float64).view(np.int64), column.view(np.int64))
        columns.append(narrow if same else np.ascontiguousarray(column))
    return {"ids": np.asarray(ids), "columns": columns}


def row_block(piece):
    """A piece's rows as one float64 table (zones x kernel columns)."""
    block = np.empty((len(piece["ids"]), len(piece["columns"])), np.float64)
    for index, column in enumerate(piece["columns"]):
        block[:, index] = column
    return block


def packed_bytes(piece):
    """Bytes of a piece's ids, columns and class shares."""
    return piece["ids"].nbytes + piece["pairs"].nbytes + sum(c.nbytes for c in piece["columns"])


def join_open_segments(parts):
    """The pieces of the segments open at the parts' ends joined by id, in part order:
    (ids, lengths, values)."""
    ids = np.concatenate([p["open_ids"] for p in parts])
    lengths = np.concatenate([p["open_lengths"] for p in parts])
    values = np.concatenate([p["open_values"] for p in parts])
    if not len(ids):
        return ids, lengths, values
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(ids, kind="stable")  # part order kept within an id
    ids, lengths, offsets = ids[order], lengths[order], offsets[order]
    placed = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pixel = np.repeat(offsets - placed, lengths) + np.arange(int(lengths.sum()))
    unique, firsts = np.unique(ids, return_index=True)
    return unique, np.add.reduceat(lengths, firsts), values[pixel]


def merge_calls(spec, ids, lengths, values, workers):
    """Merge tasks over consecutive ids, about the same pixels each."""
    if not len(ids):
        return []
    count = max(1, min(workers, len(ids)))
    ends = np.cumsum(lengths)
    cuts = np.searchsorted(ends, np.arange(1, count) * ends[-1] / count, side="right")
    cuts = np.unique(np.concatenate([[0], cuts, [len(ids)]]))
    calls = []
    for first, last in zip(cuts[:-1], cuts[1:], strict=True):
        pixels = slice(int(ends[first - 1]) if first else 0, int(ends[last - 1]))
        calls.append((stats_merge, spec, ids[first:last], lengths[first:last],
                      np.ascontiguousarray(values[pixels])))
    return calls


def check_parts(done_ids, merged_ids, merged_lengths, totals, null_id):
    """Every segment with pixels was computed once, from all its pixels."""
    message = ("The segment file's Histogram column disagrees with the raster: segment "
               "{sid} has {seen} pixels, not {total}.")
    short = np.flatnonzero(merged_lengths != totals[merged_ids])
    if short.size:
        sid = int(merged_ids[short[0]])
        raise TesseraError(message.format(sid=sid, seen=int(merged_lengths[short[0]]),
                                          total=int(totals[sid])))
    computed = np.concatenate([done_ids, merged_ids])
    seen = np.zeros(len(totals), np.int64)
    np.add.at(seen, computed, 1)
    if (seen > 1).any():
        sid = int(np.flatnonzero(seen > 1)[0])
        raise TesseraError(f"Segment {sid} has more pixels than the {totals[sid]} its "
                           "histogram count says: the segment file's Histogram column "
                           "disagrees with the raster.")
    expected = totals > 0
    if 0 <= null_id < len(expected):
        expected[null_id] = False
    missing = np.flatnonzero(expected & (seen == 0))
    if missing.size:
        sid = int(missing[0])
        raise TesseraError(message.format(sid=sid, seen=0, total=int(totals[sid])))


def cluster_segment_stats(client, spec, totals, windows, results, reporter, span, timings):
    """Fill ``results`` (kernel columns x rows) on the cluster; returns the class shares
    (a list of arrays of zone, band index, class, share)."""
    pairs = []

    def place(piece):
        results.T[piece["ids"]] = row_block(piece)  # whole rows: the table is row-major
        pairs.append(piece["pairs"])

    _, _, merged = _parts_and_merge(client, spec, totals, windows, reporter, span, timings,
                                    take_rows=place)
    for piece in merged:
        place(piece)
    return pairs


def _parts_and_merge(client, spec, totals, windows, reporter, span, timings, take_rows=None):
    """Run the parts and the merge: ((part futures, the shared totals they read: both
    held while the parts' results may be needed again), the parts' results without their
    rows, the merged results). ``take_rows(part)`` receives each part's result, rows
    included, as soon as the part is finished (its rows placed while the other parts
    still run); without it the rows stay on the workers."""
    from ..distributed import run_tasks, share, submit, wait_tasks

    start, end = span
    middle = start + 0.85 * (end - start)
    groups = group_windows(windows, worker_threads(client))
    reporter.phase(start, middle, f"Computing per-segment statistics ({len(groups)} parts "
                   "on the Dask cluster)")
    started = time.perf_counter()
    shared_totals = share(client, totals)
    futures = submit(client, [(stats_part, spec, shared_totals, g) for g in groups],
                     "tessera-segments")
    parts = [None] * len(futures)
    gathered = [0]

    def fetch(index):
        part = futures[index].result()
        gathered[0] += packed_bytes(part)
        take_rows(part)
        parts[index] = part_summary(part)

    wait_tasks(client, futures, reporter, [sum(w.xsize * w.ysize for w in g) for g in groups],
               "tessera-segments", on_finished=None if take_rows is None else fetch)
    if take_rows is None:
        parts = client.gather(submit(client, [(part_summary, f) for f in futures],
                                     "tessera-segments-summary"))
        gathered[0] = sum(packed_bytes(p) for p in parts)
    timings["parts"] = time.perf_counter() - started
    timings["part_seconds"] = [p["seconds"] for p in parts]
    timings["part_pixels"] = [sum(w.xsize * w.ysize for w in g) for g in groups]
    timings["gathered_bytes"] = int(gathered[0])
    reporter.phase(middle, end, "Merging the segments that cross parts")
    started = time.perf_counter()
    ids, lengths, values = join_open_segments(parts)
    done_ids = np.concatenate([p["ids"] for p in parts])
    check_parts(done_ids, ids, lengths, totals, spec["null_id"])
    timings["exchanged_bytes"] = int(values.nbytes + ids.nbytes + lengths.nbytes)
    timings["crossing_segments"] = int(len(ids))
    timings["part_count"] = len(groups)
    merged = run_tasks(client, merge_calls(spec, ids, lengths, values, worker_threads(client)),
                       reporter, name="tessera-segments-merge")
    timings["merge"] = time.perf_counter() - started
    timings["merge_seconds"] = [m["seconds"] for m in merged]
    return (futures, shared_totals), parts, merged


def part_summary(part):
    """A part's result without its rows (they stay on the worker): ids, class shares and
    the open segments' pixels."""
    return {**part, "columns": []}


def select_rows(piece, first, stop):
    """The rows (and class shares) of ``piece`` for the ids ``first`` ≤ id < ``stop``."""
    ids = piece["ids"]
    chosen = (ids >= first) & (ids < stop)
    zones = piece["pairs"][:, 0]
    return {"ids": ids[chosen], "columns": [c[chosen] for c in piece["columns"]],
            "pairs": piece["pairs"][(zones >= first) & (zones < stop)]}


def write_block(layout, first, stop, totals, *pieces):
    """Build rows ``first`` ≤ row < ``stop`` of every output column from ``pieces`` (see
    :func:`select_rows`) and write them to the staged columns of the Zarr store; read them
    back. ``layout`` names the store, the columns (name, kind, source, fill value, hidden
    name, value kept in the null row), the null id and the missing value."""
    from ..rat.staging import same_values
    from ..rat.tables import ZarrRat

    count = stop - first
    kernel = np.full((count, layout["kernel_columns"]), np.nan)
    for piece in pieces:
        if len(piece["ids"]):
            kernel[piece["ids"] - first] = row_block(piece)
    pairs = np.concatenate([p["pairs"] for p in pieces]) if pieces else np.zeros((0, 4))
    present = np.zeros(count, np.bool_)
    known = np.asarray(totals[first:min(stop, len(totals))])
    present[: len(known)] = known > 0
    null_row = layout["null_id"] - first
    if 0 <= null_row < count:
        present[null_row] = False
    rat = ZarrRat(layout["store"], update=True)
    try:
        rat.store.stage_row_count(layout["rows"])  # the rows the client staged
        for name, kind, source, fill, hidden, kept in layout["columns"]:
            if source[0] == "kernel":
                column = kernel[:, source[1]].copy()
            else:  # a class share: 0 where the zone has valid pixels but not the class
                band, value = source[1], source[2]
                mine = pairs[pairs[:, 1] == band]
                column = np.full(count, layout["missing"], np.float64)
                column[(mine[:, 0] - first).astype(np.int64)] = 0.0
                mine = mine[mine[:, 2] == value]
                column[(mine[:, 0] - first).astype(np.int64)] = mine[:, 3]
            column[~present] = fill
            if 0 <= null_row < count:
                column[null_row] = kept
            block = column.astype(np.int64) if kind == "integer" else column
            rat.write(hidden, block, first)
            if not same_values(rat.read(hidden, first, count), block):
                raise TesseraError(f"Writing column '{name}' to {rat.name} failed: it does "
                                   "not read back as written. Nothing was changed.")
    finally:
        rat.close()
    return count


def block_rows(chunk, rows, workers):
    """Rows per written block: whole chunks, about two blocks per worker."""
    chunks = max(1, math.ceil(rows / chunk))
    return chunk * max(1, math.ceil(chunks / (2 * workers)))


def cluster_segment_stats_to_store(client, spec, totals, windows, reporter, span, timings):
    """The parts and the merge on the cluster, their rows left on the workers: returns
    (class values per band index, ``write(output, columns, row_count, store_columns)``)
    that makes the workers write the staged columns of a Zarr target in row blocks."""
    from ..distributed import submit, wait_tasks
    from ..statistics.catalogue import check_class_count

    (futures, shared_totals), parts, merged = _parts_and_merge(
        client, spec, totals, windows, reporter, span, timings)
    classes = {}
    for index, band in enumerate(spec["bands"]):
        found = [np.unique(p["pairs"][p["pairs"][:, 1] == index, 2]) for p in parts + merged]
        classes[index] = np.unique(np.concatenate(found)) if found else np.zeros(0)
        check_class_count(len(classes[index]), band)

    def write(store, columns, rows):
        started = time.perf_counter()
        from ..rat.tables import ZarrRat

        rat = ZarrRat(store)
        try:
            chunk = rat.store.column_chunk_size(columns[0][4])
        finally:
            rat.close()
        layout = {"store": store, "rows": rows, "columns": columns,
                  "kernel_columns": spec["columns"],
                  "null_id": spec["null_id"], "missing": spec["missing"]}
        size = block_rows(chunk, rows, worker_threads(client))
        calls, selected = [], []  # held until the writes are done: a block written again
        for first in range(0, rows, size):  # (its worker died) selects its rows again
            stop = min(rows, first + size)
            pieces = submit(client, [(select_rows, f, first, stop) for f in futures],
                            "tessera-segments-select")
            selected.extend(pieces)
            calls.append((write_block, layout, first, stop, shared_totals,
                          _select_merged(merged, first, stop), *pieces))
        writes = submit(client, calls, "tessera-segments-write")
        wait_tasks(client, writes, reporter, name="tessera-segments-write")
        del selected
        timings["write_blocks"] = len(calls)
        timings["write_on_workers"] = time.perf_counter() - started

    return classes, write


def _select_merged(merged, first, stop):
    """The merged rows of the ids ``first`` ≤ id < ``stop``, in one piece."""
    pieces = [select_rows(m, first, stop) for m in merged]
    if not pieces:
        return {"ids": np.zeros(0, np.int64), "columns": [], "pairs": np.zeros((0, 4))}
    return {"ids": np.concatenate([p["ids"] for p in pieces]),
            "columns": [np.concatenate(c) for c in zip(*(p["columns"] for p in pieces),
                                                         strict=True)],
            "pairs": np.concatenate([p["pairs"] for p in pieces])}


# ---------------------------------------------------------------- spatial statistics


def spatial_part(spec, cores, reads):
    """The running sums of the ids present in ``cores`` (read as ``reads``): a dict of
    ``ids``, ``shape`` (fields x ids) and ``pairs`` {name: (sums, counts)} (lags x ids)."""
    from ..io.raster_io import TileReader, open_raster
    from .spatial import SegmentSums
    from .spatial_catalogue import PixelGeometry, SpatialPlan

    plan = SpatialPlan(spec["statistics"], spec["max_lag"], spec["connectivity"],
                       spec["column_prefix"])
    seg_ds = open_raster(spec["segments"])
    sums = SegmentSums(plan, PixelGeometry(seg_ds.GetGeoTransform()), spec["null_id"],
                       spec["image_nodata"])
    sources = [(seg_ds, [spec["segment_band"]], None)]
    if plan.needs_values:
        sources.append((open_raster(spec["image"]), [spec["image_band"]], None))
    with TileReader(sources, reads, threads=spec["read_threads"]) as reader:
        for core, (read, tiles) in zip(cores, reader, strict=False):
            image_tile = tiles[1][0] if plan.needs_values else None
            sums.add_tile(tiles[0][0], image_tile, core, read, seg_ds)
    return _present_sums(sums)


def _present_sums(sums):
    from . import spatial_kernels as k

    count = sums.shape_acc[sums.fields[k.COUNT], : sums.size]
    ids = np.flatnonzero(count > 0)
    return {"ids": ids, "shape": sums.shape_acc[:, ids],
            "pairs": {name: (s[:, ids], c[:, ids]) for name, (s, c) in sums.pairs.items()}}


def add_spatial_part(sums, part):
    """Add a part's sums to ``sums`` (a :class:`SegmentSums`)."""
    from . import spatial_kernels as k

    ids = part["ids"]
    if not len(ids):
        return
    sums.grow(int(ids[-1]) + 1)
    for field in range(k.SHAPE_FIELDS):
        row = sums.fields[field]
        if row < 0:
            continue
        combine = {k.MIN_COL: np.minimum, k.MIN_ROW: np.minimum,
                   k.MAX_COL: np.maximum, k.MAX_ROW: np.maximum}.get(field, np.add)
        sums.shape_acc[row, ids] = combine(sums.shape_acc[row, ids], part["shape"][row])
    for name, (part_sums, part_counts) in part["pairs"].items():
        total_sums, total_counts = sums.pairs[name]
        total_sums[:, ids] += part_sums
        total_counts[:, ids] += part_counts


def cluster_spatial_sums(client, spec, sums, cores, reads, reporter):
    """Fill ``sums`` (a :class:`SegmentSums`) from one task per part."""
    from ..distributed import run_tasks

    by_core = dict(zip(cores, reads, strict=True))
    groups = group_windows(cores, worker_threads(client))
    calls = [(spatial_part, spec, g, [by_core[c] for c in g]) for g in groups]
    parts = run_tasks(client, calls, reporter,
                      [sum(w.xsize * w.ysize for w in g) for g in groups], "tessera-spatial")
    for part in parts:  # in part order: the float sums are added in reading order
        add_spatial_part(sums, part)
    return len(groups)

