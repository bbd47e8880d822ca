"""Which pixels of a raster a polygon covers, and how much: numba kernels.

Polygons arrive in *pixel space* (x = column, y = row, rows growing
downwards) as flat ring arrays: vertices ``xs``/``ys``, ring ``r`` spanning
``ring_start[r]:ring_start[r + 1]`` (closed: last vertex = first), polygon
``p`` owning rings ``poly_ring[p]:poly_ring[p + 1]``, and ``ring_sign[r]``
(+1 or -1) that makes every exterior ring wind one way and every hole the
other, whatever the input's orientation.

Each polygon is rasterized on its own *window* (its bounding box clipped to
the tile being read), so overlapping polygons each keep all their pixels.
Both rules are accumulation passes over the polygon's edges followed by one
running sum along each window row (no sorting, holes and parts handled by
the winding signs):

- ``centre``: each edge crossing the horizontal line through pixel centres
  adds its winding (+-1) at the first centre at or right of the crossing;
  the running sum is the winding number at every pixel centre. A centre
  exactly on an edge belongs to the pixel run on the edge's right (half-open
  rule, ties being measure-zero for real data).
- ``fraction`` / ``all_touched``: each edge adds, per pixel row it crosses,
  the signed area it leaves to its right in each cell (the exact
  trapezoid/triangle areas of the accumulation rasterizers used for fonts);
  the running sum is the exact area of the polygon inside every cell, holes
  subtracted. Fractions within 1e-9 of 0 or 1 are snapped (float64 noise).
  ``fraction`` weights a pixel with its covered fraction rounded to float32,
  as exactextract and GDAL store it (for a polygon with holes or several
  parts: ring by ring, combined in float32, as exactextract does), so
  weighted results equal theirs;
  ``all_touched`` keeps every pixel with a covered area > 0 at weight 1
  (exactextract's ``coverage_weight=none``).

Why a numba scanline rather than GDAL's RasterizeLayer: see bench/RESULTS.md
(zonal statistics): burning ids needs one pass per group of non-overlapping
polygons plus an id raster per tile, and GDAL has no exact coverage fraction.
"""

import math

import numpy as np
from numba import njit

from ..statistics.catalogue import ALL_TOUCHED, CENTRE, FRACTION  # the pixel rules (one catalogue)

#: Covered fractions closer than this to 0 or 1 are taken as 0 or 1.
SNAP = 1e-9


@njit(cache=True, nogil=True)
def ring_signs(xs, ys, ring_start, poly_ring, signs):
    """Fill ``signs`` so exterior rings wind +1 and holes -1 (first ring of a part
    is its exterior; ``poly_ring`` here lists parts). Degenerate rings get 0."""
    for part in range(poly_ring.shape[0] - 1):
        for ring in range(poly_ring[part], poly_ring[part + 1]):
            start, stop = ring_start[ring], ring_start[ring + 1]
            area = 0.0
            x0, y0 = xs[start], ys[start]
            for i in range(start + 1, stop - 1):
                area += (xs[i] - x0) * (ys[i + 1] - y0) - (xs[i + 1] - x0) * (ys[i] - y0)
            orientation = 1.0 if area > 0 else (-1.0 if area < 0 else 0.0)
            signs[ring] = orientation if ring == poly_ring[part] else -orientation


@njit(cache=True, nogil=True)
def polygon_bounds(xs, ys, ring_start, poly_ring, height, width, bounds):
    """Pixel window (row0, row1, col0, col1; ends exclusive) of every polygon,
    clipped to the raster; an empty window when it has no area on the raster."""
    for p in range(poly_ring.shape[0] - 1):
        first, last = ring_start[poly_ring[p]], ring_start[poly_ring[p + 1]]
        if last <= first:
            bounds[p, 0] = bounds[p, 1] = bounds[p, 2] = bounds[p, 3] = 0
            continue
        xmin = xmax = xs[first]
        ymin = ymax = ys[first]
        for i in range(first, last):
            xmin = min(xmin, xs[i])
            xmax = max(xmax, xs[i])
            ymin = min(ymin, ys[i])
            ymax = max(ymax, ys[i])
        row0 = max(0.0, math.floor(ymin))
        row1 = min(float(height), math.ceil(ymax))
        col0 = max(0.0, math.floor(xmin))
        col1 = min(float(width), math.ceil(xmax))
        if row1 <= row0 or col1 <= col0:
            row0 = row1 = col0 = col1 = 0.0
        bounds[p, 0] = int(row0)
        bounds[p, 1] = int(row1)
        bounds[p, 2] = int(col0)
        bounds[p, 3] = int(col1)


@njit(cache=True, nogil=True)
def _add_centre_crossings(acc, stride, rows, cols, x1, y1, x2, y2, sign, row_lo, row_hi):
    """Winding contributions of edge (x1, y1)-(x2, y2) at pixel-centre lines."""
    if y1 == y2 or sign == 0.0:
        return
    direction = sign if y2 > y1 else -sign
    ylo, yhi = min(y1, y2), max(y1, y2)
    r_first = max(0, int(math.ceil(ylo - 0.5)))
    r_last = min(rows - 1, int(math.ceil(yhi - 0.5)) - 1)
    slope = (x2 - x1) / (y2 - y1)
    for r in range(r_first, r_last + 1):
        x = x1 + (r + 0.5 - y1) * slope
        c = math.ceil(x - 0.5)
        if c >= cols:
            continue
        column = max(int(c), 0)
        acc[r * stride + column] += direction
        _touch(row_lo, row_hi, r, column, column)


@njit(cache=True, nogil=True)
def _touch(row_lo, row_hi, r, first, last):
    """Widen row ``r``'s range of written accumulator cells to [first, last]."""
    if first < row_lo[r]:
        row_lo[r] = first
    if last > row_hi[r]:
        row_hi[r] = last


@njit(cache=True, nogil=True)
def _add_span(acc, row, lo, hi, dy):
    """Area to the right of a straight piece spanning x in [lo, hi] (0 <= lo <= hi
    <= cols) over signed height ``dy`` within one pixel row; returns the range of
    cells written."""
    x0i = int(math.floor(lo))
    x1i = int(math.ceil(hi))
    if x1i <= x0i + 1:
        middle = 0.5 * (lo + hi) - x0i
        acc[row + x0i] += dy * (1.0 - middle)
        acc[row + x0i + 1] += dy * middle
        return x0i, x0i + 1
    s = 1.0 / (hi - lo)
    x0f = lo - x0i
    a0 = 0.5 * s * (1.0 - x0f) * (1.0 - x0f)
    x1f = hi - x1i + 1.0
    am = 0.5 * s * x1f * x1f
    acc[row + x0i] += dy * a0
    if x1i == x0i + 2:
        acc[row + x0i + 1] += dy * (1.0 - a0 - am)
    else:
        a1 = s * (1.5 - x0f)
        acc[row + x0i + 1] += dy * (a1 - a0)
        for xi in range(x0i + 2, x1i - 1):
            acc[row + xi] += dy * s
        a2 = a1 + (x1i - x0i - 3) * s
        acc[row + x1i - 1] += dy * (1.0 - a2 - am)
    acc[row + x1i] += dy * am
    return x0i, x1i


@njit(cache=True, nogil=True)
def _add_edge_area(acc, stride, rows, cols, x1, y1, x2, y2, sign, row_lo, row_hi):
    """Signed-area contributions of edge (x1, y1)-(x2, y2), clipped to the window."""
    if y1 == y2 or sign == 0.0:
        return
    d = sign
    if y1 > y2:
        x1, y1, x2, y2 = x2, y2, x1, y1
        d = -sign
    slope = (x2 - x1) / (y2 - y1)
    r_first = max(0, int(math.floor(y1)))
    r_last = min(rows - 1, int(math.ceil(y2)) - 1)
    for r in range(r_first, r_last + 1):
        ya = max(y1, float(r))
        yb = min(y2, float(r + 1))
        if yb <= ya:
            continue
        xa = x1 if ya == y1 else x1 + (ya - y1) * slope
        xb = x2 if yb == y2 else x1 + (yb - y1) * slope
        dy = (yb - ya) * d
        lo, hi = min(xa, xb), max(xa, xb)
        row = r * stride
        if hi <= 0.0:
            acc[row] += dy
            _touch(row_lo, row_hi, r, 0, 0)
            continue
        if lo >= cols:
            continue
        if lo >= 0.0 and hi <= cols:
            first, last = _add_span(acc, row, lo, hi, dy)
            _touch(row_lo, row_hi, r, first, last)
            continue
        width = hi - lo
        if lo < 0.0:  # the part left of the window covers its whole row piece
            acc[row] += dy * (-lo / width)
            _touch(row_lo, row_hi, r, 0, 0)
        inside_lo, inside_hi = max(lo, 0.0), min(hi, float(cols))
        if inside_hi > inside_lo:
            first, last = _add_span(acc, row, inside_lo, inside_hi,
                                    dy * ((inside_hi - inside_lo) / width))
            _touch(row_lo, row_hi, r, first, last)


@njit(cache=True, nogil=True)
def accumulate_polygon(p, xs, ys, ring_start, ring_sign, poly_ring, row0, col0, rows, cols,
                       rule, acc, row_lo, row_hi):
    """Add polygon ``p``'s contributions to ``acc`` (zero on entry, ``cols + 1``
    cells per row) over the window whose top-left pixel is (row0, col0); the
    cells written in row ``r`` are ``row_lo[r]..row_hi[r]`` (see the module docstring)."""
    row_lo[:rows] = cols + 1
    row_hi[:rows] = -1
    for ring in range(poly_ring[p], poly_ring[p + 1]):
        accumulate_ring(ring, xs, ys, ring_start, ring_sign, row0, col0, rows, cols, rule, acc,
                        row_lo, row_hi)


@njit(cache=True, nogil=True)
def accumulate_ring(ring, xs, ys, ring_start, ring_sign, row0, col0, rows, cols, rule, acc,
                    row_lo, row_hi):
    """Add one ring's contributions (see :func:`accumulate_polygon`)."""
    stride = cols + 1
    sign = ring_sign[ring]
    for i in range(ring_start[ring], ring_start[ring + 1] - 1):
        x1 = xs[i] - col0
        y1 = ys[i] - row0
        x2 = xs[i + 1] - col0
        y2 = ys[i + 1] - row0
        if rule == CENTRE:
            _add_centre_crossings(acc, stride, rows, cols, x1, y1, x2, y2, sign, row_lo, row_hi)
        else:
            _add_edge_area(acc, stride, rows, cols, x1, y1, x2, y2, sign, row_lo, row_hi)


@njit(cache=True, nogil=True)
def _is_exterior(ring, xs, ys, ring_start, ring_sign):
    """Whether a ring is an exterior ring: with its winding sign applied (see
    :func:`ring_signs`) exterior rings have a positive area, holes a negative one."""
    area = 0.0
    for i in range(ring_start[ring], ring_start[ring + 1] - 1):
        area += xs[i] * ys[i + 1] - xs[i + 1] * ys[i]
    return area * ring_sign[ring] > 0


@njit(cache=True, nogil=True)
def ring_by_ring_fractions(p, xs, ys, ring_start, ring_sign, poly_ring, row0, col0, rows, cols,
                           acc, row_lo, row_hi, weights, combined, used_lo, used_hi):
    """Covered fractions of a polygon with several rings as exactextract forms
    them: each ring's fractions rounded to float32, then added (exterior rings)
    or subtracted (holes) in float32, ring by ring. ``combined`` (rows x cols,
    float32, zero) receives them over cells ``used_lo[r]..used_hi[r] - 1`` of row r."""
    used_lo[:rows] = cols
    used_hi[:rows] = 0
    stride = cols + 1
    for ring in range(poly_ring[p], poly_ring[p + 1]):
        exterior = _is_exterior(ring, xs, ys, ring_start, ring_sign)
        row_lo[:rows] = stride
        row_hi[:rows] = -1
        accumulate_ring(ring, xs, ys, ring_start, ring_sign, row0, col0, rows, cols, FRACTION,
                        acc, row_lo, row_hi)
        for r in range(rows):
            lo = row_lo[r]
            stop = row_weights(acc, r * stride, lo, row_hi[r], cols, FRACTION, weights)
            for c in range(lo, stop):
                part = np.float32(weights[c])
                cell = r * cols + c
                if exterior:
                    combined[cell] = combined[cell] + part
                else:
                    combined[cell] = combined[cell] - part
            if stop > lo:
                used_lo[r] = min(used_lo[r], lo)
                used_hi[r] = max(used_hi[r], stop)


@njit(cache=True, nogil=True)
def row_weights(acc, base, lo, hi, cols, rule, weights):
    """Turn one row of accumulated contributions (cells ``lo..hi`` written) into pixel
    weights ``weights[lo:stop]``, zeroing the accumulator; returns ``stop`` (pixels from
    ``stop`` on are not covered)."""
    if hi < lo:
        return lo
    running = 0.0
    stop = lo
    for c in range(lo, cols):
        if c > hi and abs(running) < SNAP:
            break
        running += acc[base + c]
        acc[base + c] = 0.0
        weights[c] = covered_weight(running, rule)
        stop = c + 1
    for c in range(stop, hi + 1):
        acc[base + c] = 0.0
    return stop


@njit(cache=True, nogil=True)
def covered_weight(running, rule):
    """Weight of a pixel from the running sum (0: not covered)."""
    if rule == CENTRE:
        return 1.0 if abs(running) > 0.5 else 0.0
    cover = abs(running)
    if cover < SNAP:
        return 0.0
    if rule == ALL_TOUCHED or cover > 1.0 - SNAP:
        return 1.0
    return float(np.float32(cover))


@njit(cache=True, nogil=True)
def coverage_grid(p, xs, ys, ring_start, ring_sign, poly_ring, row0, col0, rows, cols, rule):
    """Weights of polygon ``p`` over a window as a (rows, cols) float64 array
    (for tests and callers wanting the coverage itself)."""
    acc = np.zeros(rows * (cols + 1) + 1, np.float64)
    row_lo = np.empty(rows, np.int64)
    row_hi = np.empty(rows, np.int64)
    accumulate_polygon(p, xs, ys, ring_start, ring_sign, poly_ring, row0, col0, rows, cols,
                       rule, acc, row_lo, row_hi)
    out = np.zeros((rows, cols), np.float64)
    weights = np.zeros(cols + 1, np.float64)
    for r in range(rows):
        stop = row_weights(acc, r * (cols + 1), row_lo[r], row_hi[r], cols, rule, weights)
        for c in range(row_lo[r], stop):
            out[r, c] = weights[c]
    return out


@njit(cache=True, nogil=True)
def gather_polygons(polygons, k_first, xs, ys, ring_start, ring_sign, poly_ring, bounds,
                    tile_row0, tile_col0, image, rule, acc, out_values, out_weights, starts,
                    lengths):
    """Copy the pixels of ``polygons[k_first:]`` within this tile (``image`` is
    (bands, rows, cols) at (tile_row0, tile_col0)) to ``out_values[:, n]`` and
    their weights to ``out_weights[n]``, polygon by polygon; ``starts[k]`` and
    ``lengths[k]`` say where polygon ``polygons[k]`` went. ``acc`` (zero, at least
    tile rows x (tile cols + 1) + 1) is left zero.

    Stops before a polygon whose window might not fit the output; returns (the
    next k, pixels written).
    """
    n_bands, tile_rows, tile_cols = image.shape
    capacity = out_weights.shape[0]
    row_lo = np.empty(tile_rows, np.int64)
    row_hi = np.empty(tile_rows, np.int64)
    weights = np.empty(tile_cols + 1, np.float64)
    combined = np.zeros(tile_rows * tile_cols if rule == FRACTION else 0, np.float32)
    used_lo = np.empty(tile_rows, np.int64)
    used_hi = np.empty(tile_rows, np.int64)
    n = 0
    for k in range(k_first, polygons.shape[0]):
        p = polygons[k]
        row0 = max(bounds[p, 0], tile_row0)
        row1 = min(bounds[p, 1], tile_row0 + tile_rows)
        col0 = max(bounds[p, 2], tile_col0)
        col1 = min(bounds[p, 3], tile_col0 + tile_cols)
        starts[k] = n
        lengths[k] = 0
        rows = row1 - row0
        cols = col1 - col0
        if rows <= 0 or cols <= 0:
            continue
        if n + rows * cols > capacity or rows * (cols + 1) + 1 > acc.shape[0]:
            if n == 0 and k == k_first:
                return -1, 0  # the caller must grow the buffers
            return k, n
        by_ring = rule == FRACTION and poly_ring[p + 1] - poly_ring[p] > 1
        if by_ring:
            ring_by_ring_fractions(p, xs, ys, ring_start, ring_sign, poly_ring, row0, col0, rows,
                                   cols, acc, row_lo, row_hi, weights, combined, used_lo,
                                   used_hi)
        else:
            accumulate_polygon(p, xs, ys, ring_start, ring_sign, poly_ring, row0, col0, rows,
                               cols, rule, acc, row_lo, row_hi)
        stride = cols + 1
        for r in range(rows):
            if by_ring:
                lo = used_lo[r]
                stop = used_hi[r]
                for c in range(lo, stop):
                    weights[c] = max(float(combined[r * cols + c]), 0.0)
                    combined[r * cols + c] = 0.0
            else:
                lo = row_lo[r]
                stop = row_weights(acc, r * stride, lo, row_hi[r], cols, rule, weights)
            tr = row0 - tile_row0 + r
            for c in range(lo, stop):
                weight = weights[c]
                if weight == 0.0:
                    continue
                tc = col0 - tile_col0 + c
                for b in range(n_bands):
                    out_values[b, n] = image[b, tr, tc]
                out_weights[n] = weight
                n += 1
        lengths[k] = n - starts[k]
    return polygons.shape[0], n
