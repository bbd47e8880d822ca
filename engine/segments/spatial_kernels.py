"""numba kernels of the streamed spatial statistics (see :mod:`tessera.engine.segments.spatial`).

Each kernel works on one tile read with a halo: ``seg`` (and ``values``)
cover the tile's *core* ``[r0, r1) x [c0, c1)`` plus neighbouring pixels, and
only core pixels are accumulated, so every pixel and every pair is counted
exactly once over the whole raster. A neighbour index outside ``seg`` lies
outside the raster (the halo covers every neighbour inside it).
"""

import numpy as np
from numba import njit

# Rows of the shape accumulator (int64, rows x ids); a row index of -1 means "not tracked".
COUNT, SUM_COL, SUM_ROW, MIN_COL, MAX_COL, MIN_ROW, MAX_ROW, EDGE_PIXELS, COL_SIDES, ROW_SIDES = (
    range(10))
SHAPE_FIELDS = 10


@njit(cache=True, nogil=True)
def id_range(seg, r0, r1, c0, c1, null_id):
    """Smallest and largest id of the core (null id excluded); (0, -1) when there is none."""
    smallest = np.int64(0)
    largest = np.int64(-1)
    first = True
    for r in range(r0, r1):
        for c in range(c0, c1):
            sid = np.int64(seg[r, c])
            if sid == null_id:
                continue
            if first:
                smallest = sid
                largest = sid
                first = False
            elif sid < smallest:
                smallest = sid
            elif sid > largest:
                largest = sid
    return smallest, largest


@njit(cache=True, nogil=True)
def _outside(seg, r, c, sid):
    """True when pixel (r, c) is beyond the raster or not in segment ``sid``."""
    if r < 0 or c < 0 or r >= seg.shape[0] or c >= seg.shape[1]:
        return True
    return np.int64(seg[r, c]) != sid


@njit(cache=True, nogil=True)
def accumulate_shape(seg, r0, r1, c0, c1, row0, col0, null_id, eight_connected, fields, acc):
    """Add the core's pixels to the shape accumulator ``acc`` (rows by ``fields``).

    ``row0``/``col0`` are the whole-raster row and column of ``seg[0, 0]``.
    ``fields[F]`` is the row of ``acc`` holding field F (or -1): pixel count,
    sums and extremes of columns and rows, edge pixels (4- or 8-connected),
    and the pixel sides facing another segment across columns / across rows.
    Runs of one id along a row are added at once.
    """
    f_sum_col, f_sum_row = fields[SUM_COL], fields[SUM_ROW]
    f_min_col, f_max_col = fields[MIN_COL], fields[MAX_COL]
    f_min_row, f_max_row = fields[MIN_ROW], fields[MAX_ROW]
    f_edges, f_col_sides, f_row_sides = fields[EDGE_PIXELS], fields[COL_SIDES], fields[ROW_SIDES]
    neighbours = f_edges >= 0 or f_col_sides >= 0
    for r in range(r0, r1):
        row = row0 + r
        c = c0
        while c < c1:
            sid = np.int64(seg[r, c])
            if sid == null_id:
                c += 1
                continue
            start = c
            edges = 0
            col_sides = 0
            row_sides = 0
            while c < c1 and np.int64(seg[r, c]) == sid:
                if neighbours:
                    left = _outside(seg, r, c - 1, sid)
                    right = _outside(seg, r, c + 1, sid)
                    up = _outside(seg, r - 1, c, sid)
                    down = _outside(seg, r + 1, c, sid)
                    col_sides += left + right
                    row_sides += up + down
                    edge = left or right or up or down
                    if eight_connected and not edge:
                        edge = (_outside(seg, r - 1, c - 1, sid) or _outside(seg, r - 1, c + 1, sid)
                                or _outside(seg, r + 1, c - 1, sid)
                                or _outside(seg, r + 1, c + 1, sid))
                    edges += edge
                c += 1
            n = c - start
            acc[COUNT, sid] += n
            first_col = col0 + start
            last_col = col0 + c - 1
            if f_sum_col >= 0:
                acc[f_sum_col, sid] += n * (first_col + last_col) // 2
                acc[f_sum_row, sid] += n * row
            if f_min_col >= 0:
                acc[f_min_col, sid] = min(acc[f_min_col, sid], first_col)
                acc[f_max_col, sid] = max(acc[f_max_col, sid], last_col)
                acc[f_min_row, sid] = min(acc[f_min_row, sid], row)
                acc[f_max_row, sid] = max(acc[f_max_row, sid], row)
            if f_edges >= 0:
                acc[f_edges, sid] += edges
            if f_col_sides >= 0:
                acc[f_col_sides, sid] += col_sides
                acc[f_row_sides, sid] += row_sides


@njit(cache=True, nogil=True)
def pair_ids(seg, image, null_id, nodata, has_nodata, pid, values):
    """Prepare a tile for :func:`accumulate_pairs`: ``pid`` (int32) gets the segment id of
    pixels that can be in a pair and -1 for null-id and invalid (NaN or nodata) pixels;
    ``values`` (float64) gets the image values, 0 for those pixels."""
    for r in range(seg.shape[0]):
        for c in range(seg.shape[1]):
            v = image[r, c]
            sid = np.int64(seg[r, c])
            if sid == null_id or v != v or (has_nodata and v == nodata):
                pid[r, c] = -1
                values[r, c] = 0.0
            else:
                pid[r, c] = sid
                values[r, c] = v


@njit(cache=True, nogil=True)
def accumulate_pairs(pid, values, r0, r1, c0, c1, off_dy, off_dx, off_bin, sums, counts):
    """Add the squared differences of same-segment pixel pairs to ``sums``/``counts``.

    For every offset k and pixel p in the core, the pixel q = p + (off_dy[k],
    off_dx[k]) pairs with p when ``pid`` gives both the same id >= 0 (see
    :func:`pair_ids`); ``(v(p) - v(q))²`` then goes to bin ``off_bin[k]`` of
    that segment. Offsets have dy >= 0, so q is never above p.

    Row by row, the pairs are first summed per pixel and bin in row buffers
    (a loop without branches, fast on modern CPUs), then added per run of one
    id along the row.
    """
    rows, cols = pid.shape
    n_bins = sums.shape[0]
    row_sum = np.zeros((n_bins, cols))
    row_n = np.zeros((n_bins, cols), np.int32)
    for r in range(r0, r1):
        row_sum[:] = 0.0
        row_n[:] = 0
        for k in range(off_dy.shape[0]):
            r2 = r + off_dy[k]
            if r2 >= rows:
                continue
            dx = off_dx[k]
            lo = max(c0, -dx)
            hi = min(c1, cols - dx)
            p_ids = pid[r, lo:hi]
            q_ids = pid[r2, lo + dx:hi + dx]
            p_values = values[r, lo:hi]
            q_values = values[r2, lo + dx:hi + dx]
            bin_sum = row_sum[off_bin[k], lo:hi]
            bin_n = row_n[off_bin[k], lo:hi]
            for i in range(hi - lo):
                d = p_values[i] - q_values[i]
                same = p_ids[i] == q_ids[i]
                bin_sum[i] += d * d if same else 0.0
                bin_n[i] += same
        for b in range(n_bins):
            c = c0
            while c < c1:
                sid = pid[r, c]
                total = 0.0
                n = 0
                while c < c1 and pid[r, c] == sid:
                    total += row_sum[b, c]
                    n += row_n[b, c]
                    c += 1
                if sid >= 0 and n:
                    sums[b, sid] += total
                    counts[b, sid] += n
