"""numba kernels of the streamed spatial statistics (see :mod:`.segment_spatial`).

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
def accumulate_pairs(seg, values, r0, r1, c0, c1, null_id, off_dy, off_dx, off_bin, sums,
                     counts):
    """Add the squared differences of same-segment pixel pairs to ``sums``/``counts``.

    For every offset k, pixel p in the core and q = p + (off_dy[k], off_dx[k])
    in the same segment with both values valid (``values`` holds NaN where a
    pixel is invalid), ``(v(p) - v(q))²`` goes to bin ``off_bin[k]`` of p's
    segment. Offsets have dy >= 0, so q is never above p.
    """
    rows, cols = seg.shape
    for k in range(off_dy.shape[0]):
        dy = off_dy[k]
        dx = off_dx[k]
        b = off_bin[k]
        lo = max(c0, -dx)
        hi = min(c1, cols - dx)
        for r in range(r0, min(r1, rows - dy)):
            r2 = r + dy
            run_id = np.int64(-1)
            run_sum = 0.0
            run_n = 0
            for c in range(lo, hi):
                sid = np.int64(seg[r, c])
                if sid == null_id or np.int64(seg[r2, c + dx]) != sid:
                    continue
                d = values[r, c] - values[r2, c + dx]
                if d != d:  # NaN: one of the two pixels is invalid
                    continue
                if sid != run_id:
                    if run_n:
                        sums[b, run_id] += run_sum
                        counts[b, run_id] += run_n
                    run_id = sid
                    run_sum = 0.0
                    run_n = 0
                run_sum += d * d
                run_n += 1
            if run_n:
                sums[b, run_id] += run_sum
                counts[b, run_id] += run_n
